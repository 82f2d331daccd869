"""Autosave: after every change the workspace is written, atomically, to the user's data
folder, so a killed terminal or a crashed machine loses nothing.

The files live in platformdirs' user data directory (`TUILAB_DATA_DIR` overrides it, which
tests use). Each session writes its own, ``autosave-<pid>-<start>.toml``, and holds an
exclusive lock on the ``.lock`` file beside it while it lives; the operating system drops the
lock when the process ends, however it ends. So two tuilabs open side by side never overwrite
each other's copy, one quitting never deletes the other's, and a start offers back only a copy
whose session is gone (the newest first). A clean quit (saved, or the user chose to discard)
removes the session's copy. Where `fcntl` is missing (Windows) every other session's copy
counts as left behind.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from tuilab.core.errors import SpecFileError
from tuilab.core.workspace import Workspace, load_workspace, workspace_to_text, write_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

PREFIX = "autosave-"


def data_dir() -> Path:
    override = os.environ.get("TUILAB_DATA_DIR")
    if override:
        return Path(override)
    from platformdirs import user_data_dir

    return Path(user_data_dir("tuilab", appauthor=False))


def _new_token() -> str:
    """Process id and start time: a later process given the same pid gets another name."""
    return f"{os.getpid()}-{time.time_ns()}"


_token = _new_token()
_held: dict[Path, int] = {}
"""Lock files this process holds, and their descriptors."""


def autosave_path() -> Path:
    """This session's autosave file."""
    return data_dir() / f"{PREFIX}{_token}.toml"


def _lock_path(path: Path) -> Path:
    return path.with_suffix(".lock")


def _hold(path: Path) -> None:
    """Take the lock that says `path`'s session is alive; OSError if another process has it."""
    lock = _lock_path(path)
    if lock in _held or fcntl is None:
        return
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    _held[lock] = fd


def _release(lock: Path) -> None:
    fd = _held.pop(lock, None)
    if fd is not None:
        os.close(fd)  # closing drops the flock


def _alive(path: Path) -> bool:
    """Is `path` this session's, or held by a tuilab still running?"""
    lock = _lock_path(path)
    if lock in _held:
        return True
    if fcntl is None:
        return False
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False  # no lock file: its session ended before making one
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


# A temp file this old is what a session killed mid-write left behind, not a write in
# progress (another tuilab's write takes well under a second).
STALE_TEMP_SECONDS = 600


def autosave(workspace: Workspace) -> Path:
    """Write the workspace where a later session will find it; never half a file."""
    path = autosave_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    _hold(path)
    write_atomic(path, workspace_to_text(workspace))
    _remove_stale_temps(path.parent)
    return path


def _remove_stale_temps(folder: Path) -> None:
    """A write killed half way leaves its temp file (the autosave itself is whole): clear
    the old ones, so kills do not pile files up in the data folder."""
    now = time.time()
    for temp in folder.glob(f".{PREFIX}*.tmp"):
        with contextlib.suppress(OSError):
            if now - temp.stat().st_mtime > STALE_TEMP_SECONDS:
                temp.unlink()


@dataclass(frozen=True)
class Leftover:
    """An autosave whose session ended without a clean quit."""

    path: Path
    workspace: Workspace


def pending_restore(skip: Collection[Path] = ()) -> Leftover | None:
    """The newest autosave an ended session left behind that can still be read (not one of
    `skip`: those the user declined but could not be removed)."""
    folder = data_dir()
    if not folder.is_dir():
        return None
    found = []
    for path in folder.glob(f"{PREFIX}*.toml"):
        with contextlib.suppress(OSError):
            found.append((path.stat().st_mtime, path))
    for _, path in sorted(found, reverse=True):
        if path in skip or _alive(path):
            continue
        try:
            return Leftover(path, load_workspace(path))
        except SpecFileError:
            continue  # unreadable: left for the user to look at, never offered
    return None


def adopt(path: Path) -> None:
    """Carry a restored session on in its own file: later autosaves and a clean quit's
    discard go to it. OSError when another tuilab adopted it first."""
    global _token
    _hold(path)
    _release(_lock_path(autosave_path()))
    _token = path.stem.removeprefix(PREFIX)


def discard(path: Path | None = None) -> None:
    """Forget an autosave: this session's (a clean quit), or a leftover the user declined."""
    path = path or autosave_path()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    lock = _lock_path(path)
    _release(lock)
    with contextlib.suppress(FileNotFoundError):
        lock.unlink()


def end_session() -> None:
    """The app closed: let go of the locks, keep the files. A copy not discarded by a clean
    quit is then offered to the next start; this process's next app is a new session."""
    global _token
    for lock in list(_held):
        _release(lock)
    _token = _new_token()
