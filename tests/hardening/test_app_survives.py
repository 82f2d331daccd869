"""The app outlives its errors: a tiny terminal, quitting in the middle of a run (the real
installed command in a real pseudo-terminal), saves that fail (missing folder, no permission,
disk full) and a file another instance changed on disk.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from pathlib import Path

import pytest
from hardening_helpers import folder_listing, lab_of

from tuilab.core import autosave
from tuilab.core.errors import FileChangedError, SpecFileError
from tuilab.core.lab import Lab

pexpect = pytest.importorskip("pexpect")
pyte = pytest.importorskip("pyte")


# --------------------------------------------------------------------------------------------
# a terminal as small as 40×12


async def test_a_40_by_12_terminal_draws_and_takes_keys_without_a_crash() -> None:
    from tuilab.app.app import make_app

    lab = lab_of("lenet")
    app = make_app(lab=lab)
    async with app.run_test(size=(40, 12)) as pilot:
        await pilot.pause()
        for key in ["down", "down", "f", "T", "f", "a", "question_mark", "escape", "e",
                    "escape", "P", "escape", "ctrl+z", "d", "ctrl+z", "b"]:
            await pilot.press(key)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen.size == (40, 12)
        await pilot.resize_terminal(20, 6)  # smaller still, then back
        await pilot.pause()
        await pilot.resize_terminal(40, 12)
        await pilot.press("f")
        await pilot.pause()
        assert "<svg" in app.export_screenshot()  # the whole screen renders at this size
        assert app._exception is None and app.is_running
    assert app.return_value is None


# --------------------------------------------------------------------------------------------
# quitting during a run ends the process (the installed command, in a pseudo-terminal)


def test_quitting_during_a_run_stops_it_and_the_process_exits(tmp_path: Path,
                                                             terminal_factory) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "TUILAB_DATA_DIR": str(data)}
    terminal = terminal_factory(["mlp"], env)
    try:
        terminal.wait_for(lambda s: "→ (2, 10)" in s)  # loaded, shapes shown
        terminal.child.send("t")
        terminal.wait_for(lambda s: "Training run" in s)
        terminal.child.send("9999999\r")  # a run that would take hours
        terminal.wait_for(lambda s: "steps/s" in s)
        terminal.pump(0.5)
        quit_at = time.monotonic()
        terminal.child.send("q")
        end = quit_at + 60  # a wait for the exit, not a speed bound (the box may be busy)
        while terminal.child.isalive() and time.monotonic() < end:
            terminal.pump(0.1)
            if "Discard" in terminal.text():  # unsaved changes: leave without saving
                terminal.child.send("d")
                terminal.pump(0.3)
        took = time.monotonic() - quit_at
        assert not terminal.child.isalive(), (
            f"still running {took:.1f}s after q; the screen shows:\n{terminal.text()}")
        terminal.child.close()
        assert terminal.child.exitstatus == 0 and terminal.child.signalstatus is None
        assert autosave.pending_restore() is None  # a clean quit removed its copy
        assert not list(data.glob("autosave-*"))
    finally:
        if terminal.child.isalive():
            terminal.child.kill(9)


# --------------------------------------------------------------------------------------------
# a failed save keeps the work marked unsaved, and leaves no temp file


def _edited(tmp_path: Path) -> tuple[Lab, Path]:
    lab = lab_of("mlp")
    path = lab.save(tmp_path / "work.toml")
    lab.edit("add", "Tanh", "")
    assert lab.dirty
    return lab, path


def test_saving_into_a_folder_that_is_a_file_fails_cleanly(tmp_path: Path) -> None:
    lab, path = _edited(tmp_path)
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    with pytest.raises(SpecFileError, match=r"folder '.*notes\.txt' is a file, not a folder"):
        lab.save(tmp_path / "notes.txt" / "work.toml")
    assert lab.dirty and lab.path == path
    assert folder_listing(tmp_path) == ["notes.txt", "work.toml"]
    with pytest.raises(SpecFileError, match=r"folder '.*missing' does not exist"):
        lab.save(tmp_path / "missing" / "work.toml")
    assert lab.dirty and folder_listing(tmp_path) == ["notes.txt", "work.toml"]


def test_saving_where_there_is_no_permission_fails_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab, path = _edited(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores the mode: refuse the way the OS would

            def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

            monkeypatch.setattr(tempfile, "mkstemp", refuse)
        with pytest.raises(SpecFileError, match=r"could not save: Permission denied"):
            lab.save(locked / "work.toml")
    finally:
        locked.chmod(0o700)
    assert lab.dirty and lab.path == path and folder_listing(locked) == []


@pytest.mark.parametrize("failing", ["fsync", "replace", "write"])
def test_a_full_disk_keeps_the_old_file_and_the_work_unsaved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    lab, path = _edited(tmp_path)
    old = path.read_bytes()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if failing == "write":
        real_fdopen = os.fdopen

        def fdopen(fd: int, *args: object, **kwargs: object):
            handle = real_fdopen(fd, *args, **kwargs)

            class Half:
                def __enter__(self):
                    return self

                def __exit__(self, *exc: object) -> None:
                    handle.close()

                def write(self, text: str) -> None:
                    handle.write(text[: len(text) // 2])
                    handle.flush()
                    full()

                def __getattr__(self, name: str):
                    return getattr(handle, name)

            return Half()

        monkeypatch.setattr(os, "fdopen", fdopen)
    else:
        monkeypatch.setattr(os, failing, full)
    with pytest.raises(SpecFileError, match=r"could not save: No space left on device"):
        lab.save()
    monkeypatch.undo()
    assert path.read_bytes() == old  # the old file, whole
    assert folder_listing(tmp_path) == ["work.toml"]  # and no temp file beside it
    assert lab.dirty
    lab.save()  # space again: the same lab saves
    assert not lab.dirty and "Tanh" in path.read_text()


def test_a_save_keeps_the_files_permissions(tmp_path: Path) -> None:
    lab, path = _edited(tmp_path)
    path.chmod(0o640)
    lab.save()
    assert path.stat().st_mode & 0o777 == 0o640
    from tuilab.core.workspace import _new_file_mode

    fresh = lab.save(tmp_path / "new.toml")  # a new file: what open(path, "w") would make
    assert fresh.stat().st_mode & 0o777 == _new_file_mode() != 0o600


async def test_a_failed_save_in_the_app_is_a_message_and_the_work_stays_unsaved(
        tmp_path: Path) -> None:
    from tuilab.app.app import make_app

    lab, _ = _edited(tmp_path)
    (tmp_path / "notes.txt").write_text("a file")
    lab.path = tmp_path / "notes.txt" / "work.toml"
    notes: list[str] = []
    app = make_app(lab=lab)
    async with app.run_test(size=(120, 40)) as pilot:
        original = app.notify
        app.notify = lambda message, *a, **k: (notes.append(str(message)),  # type: ignore
                                               original(message, *a, **k))
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert any("is a file, not a folder" in n for n in notes), notes
        assert lab.dirty and app.is_running and app._exception is None


# --------------------------------------------------------------------------------------------
# a file changed on disk by another instance is not overwritten without asking


def test_a_file_another_instance_changed_is_not_overwritten(tmp_path: Path) -> None:
    lab, path = _edited(tmp_path)
    other = Lab.open(path)
    other.edit("add", "ReLU", "")
    other.save()
    theirs = path.read_bytes()
    with pytest.raises(FileChangedError, match=r"changed on disk since tuilab opened it"):
        lab.save()
    assert path.read_bytes() == theirs and lab.dirty
    lab.save(tmp_path / "mine.toml")  # saving under another name is always fine
    assert path.read_bytes() == theirs


def test_a_change_that_kept_the_modification_time_is_still_noticed(tmp_path: Path) -> None:
    """Some filesystems keep times to the second: two saves in one second share an mtime."""
    lab, path = _edited(tmp_path)
    stat = path.stat()
    path.write_text(path.read_text().replace('name = "mlp"', 'name = "theirs"'))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(FileChangedError):
        lab.save()
    assert 'name = "theirs"' in path.read_text()
    lab.save(overwrite=True)  # the user said so
    assert 'name = "mlp"' in path.read_text() and not lab.dirty


async def test_the_app_asks_before_overwriting_a_changed_file(tmp_path: Path) -> None:
    from tuilab.app.app import make_app
    from tuilab.app.screens.dialogs import ConfirmScreen

    lab, path = _edited(tmp_path)
    path.write_text(path.read_text().replace('name = "mlp"', 'name = "theirs"'))
    app = make_app(lab=lab)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "changed on disk" in app.screen.body
        await pilot.press("n")
        await pilot.pause()
        assert 'name = "theirs"' in path.read_text() and lab.dirty
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert 'name = "mlp"' in path.read_text() and not lab.dirty
