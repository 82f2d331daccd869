"""Autosave: after every change the workspace is written, atomically, to the user's data
folder, so a killed terminal or a crashed machine loses nothing.

The file lives in platformdirs' user data directory (`TUILAB_DATA_DIR` overrides it, which
tests use). It is removed when the user quits cleanly (having saved or chosen to discard), so
the next `tuilab` finding one means the last session ended abruptly: the app offers to restore
it, loss histories of finished and stopped runs included.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from tuilab.core.errors import SpecFileError
from tuilab.core.workspace import Workspace, load_workspace, workspace_to_text, write_atomic

AUTOSAVE_NAME = "autosave.toml"


def data_dir() -> Path:
    override = os.environ.get("TUILAB_DATA_DIR")
    if override:
        return Path(override)
    from platformdirs import user_data_dir

    return Path(user_data_dir("tuilab", appauthor=False))


def autosave_path() -> Path:
    return data_dir() / AUTOSAVE_NAME


# A temp file this old is what a session killed mid-write left behind, not a write in
# progress (another tuilab's write takes well under a second).
STALE_TEMP_SECONDS = 600


def autosave(workspace: Workspace) -> Path:
    """Write the workspace where a later session will find it; never half a file."""
    path = autosave_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, workspace_to_text(workspace))
    _remove_stale_temps(path)
    return path


def _remove_stale_temps(path: Path) -> None:
    """A write killed half way leaves its temp file (the autosave itself is whole): clear
    the old ones, so kills do not pile files up in the data folder."""
    now = time.time()
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - temp.stat().st_mtime > STALE_TEMP_SECONDS:
                temp.unlink()


def pending_restore() -> Workspace | None:
    """The workspace an abruptly ended session left behind, if it can still be read."""
    path = autosave_path()
    if not path.is_file():
        return None
    try:
        return load_workspace(path)
    except SpecFileError:
        return None


def discard() -> None:
    """Forget the autosave (a clean quit, or the user declined to restore it)."""
    with contextlib.suppress(FileNotFoundError):
        autosave_path().unlink()
