"""Shared fixtures for the Pilot tests: a private data folder (autosave) for every test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app autosaves after edits: keep that out of the user's real data folder."""
    monkeypatch.setenv("TUILAB_DATA_DIR", str(tmp_path / "data"))
