"""Fixtures for the hardening tests: every test gets a private data folder (autosave)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Autosave writes to TUILAB_DATA_DIR: keep it out of the user's real data folder."""
    folder = tmp_path / "data"
    monkeypatch.setenv("TUILAB_DATA_DIR", str(folder))
    return folder
