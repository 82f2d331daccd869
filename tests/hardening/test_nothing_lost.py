"""Nothing lost: a session SIGKILLed mid-edit or mid-run leaves an autosave the next start
offers back (loss histories of finished and stopped runs included), and a save killed half
way never leaves a half-written file.

The killed sessions are real processes (`kill_driver.py`), killed with SIGKILL: no `finally`,
no atexit, no flush runs in them.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hardening_helpers import REPO, lab_of, select

from tuilab.core import autosave
from tuilab.core.lab import Lab
from tuilab.core.workspace import Workspace, load_workspace

DRIVER = Path(__file__).with_name("kill_driver.py")
KILLS = {"edit": 3, "train": 2, "save": 12}  # what the README's Reliability section counts


class Session:
    """The driver in a subprocess; its lines arrive through a queue (never blocking)."""

    def __init__(self, *args: str, data_dir: Path) -> None:
        env = {**os.environ, "TUILAB_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen([sys.executable, str(DRIVER), *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env, cwd=REPO)
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.endswith("\n"):  # a line cut short by the kill was never fully said
                self.lines.put(line.strip())

    def wait_for(self, word: str, at_least: int = 0, timeout: float = 60) -> list[str]:
        """Lines up to the first `word N` with N >= at_least; returns every line read."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    err = self.process.stderr.read() if self.process.stderr else ""
                    raise AssertionError(f"the driver ended: {err}") from None
                continue
            seen.append(line)
            parts = line.split()
            if parts[0] == word and (len(parts) < 2 or int(parts[1]) >= at_least):
                return seen
        raise AssertionError(f"no {word} {at_least} in time; saw {seen[-5:]}")

    def kill(self) -> list[str]:
        """SIGKILL, then every line it had printed (all of them were autosaved first)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        assert self.process.returncode == -signal.SIGKILL
        self.reader.join(timeout=10)  # every line it printed, up to the end of its output
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        return rest

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("edits", [1, 8, 30])
def test_killed_mid_edit_the_next_start_offers_every_autosaved_edit(
        _private_data_dir: Path, edits: int) -> None:
    session = Session("edit", data_dir=_private_data_dir)
    try:
        seen = session.wait_for("EDIT", edits)
        seen += session.kill()
    finally:
        session.close()
    last = max(int(line.split()[1]) for line in seen if line.startswith("EDIT"))
    leftover = autosave.pending_restore()
    assert leftover is not None, "the killed session left nothing to restore"
    restored = leftover.workspace
    names = [child.name for child in restored.spec.root.children]
    added = [n for n in names if n.startswith("e")]
    # every edit it reported as autosaved is there, in order (a later one may be too: it was
    # written and killed before it could print)
    assert added[: last + 1] == [f"e{i}" for i in range(last + 1)]
    assert len(added) in (last + 1, last + 2)
    assert names[:3] == ["0", "1", "2"]
    lab = Lab.from_workspace(restored)  # and it opens as a lab again
    assert lab.spec.root.children[-1].name == added[-1]


@pytest.mark.parametrize("batches", [2, 6])
def test_killed_mid_run_the_next_start_offers_the_runs_with_their_losses(
        _private_data_dir: Path, batches: int) -> None:
    session = Session("train", data_dir=_private_data_dir)
    try:
        seen = session.wait_for("BATCH", 1, timeout=120)
        for _ in range(batches - 1):
            seen += session.wait_for("BATCH", 1)
        seen += session.kill()
    finally:
        session.close()
    counts = {line.split()[0]: int(line.split()[1]) for line in seen}
    leftover = autosave.pending_restore()
    assert leftover is not None
    lab = Lab.from_workspace(leftover.workspace)
    finished, stopped, cut = lab.runs
    assert (finished.status, stopped.status, cut.status) == ("finished", "stopped", "stopped")
    assert len(finished.losses) == counts["FINISHED"] == 30 and finished.val_losses
    assert len(stopped.losses) == counts["STOPPED"] > 0
    assert len(cut.losses) >= counts["BATCH"] > 0  # every batch it reported is there
    assert cut.steps == list(range(1, len(cut.losses) + 1))
    assert lab.spec.root.children[0].args["out_features"] == 64  # the edits before the runs
    assert not lab.busy_reason  # the cut run is history, not a run still going


def test_a_save_killed_half_way_never_leaves_a_half_written_file(_private_data_dir: Path
                                                                 ) -> None:
    """Each driver restores the copy the one before it left (as a user restoring does) and
    goes on writing that one file, so every kill lands on a file that is being replaced.
    Every other driver stops inside a write (its temp file written, not renamed) and is
    killed there, so kills mid-write happen for certain, not by luck of timing; the others
    are killed at a random moment, wherever that falls."""
    rng = random.Random(6)
    version = 0
    for kill in range(KILLS["save"]):
        inside = kill % 2 == 0
        session = Session("save", str(version), *(["stall"] if inside else []),
                          data_dir=_private_data_dir)
        try:
            seen = session.wait_for("SAVED", version)
            if inside:
                seen += session.wait_for("INSIDE", version + 1)
            else:
                time.sleep(rng.uniform(0.0, 0.12))  # somewhere in the next save
            seen += session.kill()
        finally:
            session.close()
        saved = [int(line.split()[1]) for line in seen if line.startswith("SAVED")]
        [path] = _private_data_dir.glob("autosave-*.toml")  # one file, carried on by each
        workspace = load_workspace(path)  # parses: it is a whole file, old or new
        got = workspace.training["version"]
        assert got in (saved[-1], saved[-1] + 1), (got, saved)
        if inside:  # killed before the rename: the file is the last whole one written
            assert got == saved[-1] == version, (got, saved)
        points = 15_000 + got
        assert all(len(run["losses"]) == points for run in workspace.runs)
        version = got + 1
    leftovers = [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) >= KILLS["save"] // 2  # one temp file per kill inside a write
    # a kill mid-write leaves its temp file; the next autosave clears the stale ones
    for stale in leftovers:
        os.utime(stale, (time.time() - 3600, time.time() - 3600))
    autosave.adopt(path)
    autosave.autosave(load_workspace(path))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.with_suffix(".lock").name,
                                                              path.name]


def test_a_failed_autosave_keeps_the_previous_one_and_says_why(
        _private_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    lab = lab_of("mlp")
    lab.edit("add", "ReLU", "")
    assert lab.autosave() is None
    before = autosave.autosave_path().read_bytes()
    lab.edit("add", "Tanh", "")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    problem = lab.autosave()
    assert problem is not None and "No space left on device" in problem
    assert autosave.autosave_path().read_bytes() == before
    path = autosave.autosave_path()
    assert sorted(p.name for p in _private_data_dir.iterdir()) == [
        path.with_suffix(".lock").name, path.name]
    assert lab.dirty


# --------------------------------------------------------------------------------------------
# the app: it autosaves after a change, and offers the autosave back on the next start


async def test_the_app_autosaves_after_an_edit_and_offers_it_back_on_the_next_start(
        _private_data_dir: Path) -> None:
    from textual.widgets import Tree

    from tuilab.app.app import AUTOSAVE_DELAY, make_app
    from tuilab.app.screens.dialogs import ConfirmScreen

    lab = lab_of("mlp")
    lab.runs.append(_finished_run())
    app = make_app(lab=lab)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await select(pilot, "1")
        await pilot.press("d")  # delete the ReLU
        await pilot.pause()
        assert [c.name for c in lab.spec.root.children] == ["0", "1"]
        deadline = time.monotonic() + AUTOSAVE_DELAY + 10
        while _own_copy() is None and time.monotonic() < deadline:
            await pilot.pause(0.1)
        restored = _own_copy()
        assert restored is not None, "the app did not autosave after the edit"
        assert autosave.pending_restore() is None  # a session still open offers nothing
        assert [c.block for c in restored.spec.root.children] == ["Linear", "Linear"]
        assert restored.runs and restored.runs[0]["losses"] == [3.0, 2.0, 1.0]
    # the app did not quit cleanly (no q), as after a kill: the next start offers it back
    app = make_app("mlp", offer_restore=True)
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 10
        while not isinstance(app.screen, ConfirmScreen) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert isinstance(app.screen, ConfirmScreen), "no offer to restore the autosave"
        await pilot.press("y")
        deadline = time.monotonic() + 60
        while app.lab is None and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert app.lab is not None
        assert [c.block for c in app.lab.spec.root.children] == ["Linear", "Linear"]
        assert app.lab.runs[0].losses == [3.0, 2.0, 1.0] and app.lab.runs[0].status == "finished"
        assert app.lab.dirty  # restored work is unsaved work
        assert isinstance(app.builder, Tree)


def _own_copy() -> Workspace | None:
    """This session's autosave as it is on disk now (None before the first write)."""
    path = autosave.autosave_path()
    return load_workspace(path) if path.exists() else None


def _finished_run():
    from tuilab.core.lab import RunRecord

    return RunRecord(name="run 1", config={"steps": 3}, steps=[1, 2, 3],
                     losses=[3.0, 2.0, 1.0], status="finished")


async def test_the_app_autosaves_a_run_while_it_goes(_private_data_dir: Path) -> None:
    from tuilab.app.app import AUTOSAVE_DELAY, make_app
    from tuilab.app.screens.train_settings import TrainSettingsScreen

    lab = lab_of("mlp")
    lab.train_settings = {"batch_size": 8, "val_every": 0}
    app = make_app(lab=lab)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("t")
        deadline = time.monotonic() + 10
        while not isinstance(app.screen, TrainSettingsScreen) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause()
        await pilot.press(*str(10**7), "enter")
        deadline = time.monotonic() + 20
        while not (lab.runs and len(lab.runs[-1].losses) > 50) and time.monotonic() < deadline:
            await pilot.pause(0.1)
        await pilot.press("p")  # paused: the run is still going, its points so far are real
        deadline = time.monotonic() + AUTOSAVE_DELAY + 1.5
        found = None
        while time.monotonic() < deadline:
            found = _own_copy()
            if found is not None and found.runs and found.runs[-1].get("losses"):
                break
            await pilot.pause(0.2)
        await pilot.press("x")
        assert found is not None and found.runs and found.runs[-1].get("losses"), (
            "a run going for seconds is not in the autosave")


def test_a_slow_autosave_spaces_out_the_next_one_within_a_bound() -> None:
    """A copy holding many runs' histories takes tens of ms to write, holding the GIL a run
    needs: the next write waits in proportion, but never past AUTOSAVE_MAX_DELAY."""
    from tuilab.app.app import AUTOSAVE_BUDGET, AUTOSAVE_DELAY, AUTOSAVE_MAX_DELAY, autosave_delay

    assert autosave_delay(0.0) == AUTOSAVE_DELAY  # an edit on a small workspace: 1 s
    assert autosave_delay(0.02) == pytest.approx(0.02 / AUTOSAVE_BUDGET)  # 4 s at 0.5 %
    assert autosave_delay(0.02) > AUTOSAVE_DELAY
    assert autosave_delay(5.0) == AUTOSAVE_MAX_DELAY


async def test_two_lost_sessions_are_offered_one_after_the_other(_private_data_dir: Path) -> None:
    """Declining the newest leftover offers the next (the declined copy stays until this
    session first autosaves); restoring that one
    opens it as the work, unsaved."""
    from tuilab.app.app import make_app
    from tuilab.app.screens.dialogs import ConfirmScreen
    from tuilab.core.workspace import load_preset, workspace_to_text, write_atomic

    _private_data_dir.mkdir(parents=True)
    older = _private_data_dir / "autosave-111-1.toml"  # no lock file: its session is gone
    newer = _private_data_dir / "autosave-222-2.toml"
    write_atomic(older, workspace_to_text(Workspace(spec=load_preset("lenet"))))
    write_atomic(newer, workspace_to_text(Workspace(spec=load_preset("alexnet"))))
    os.utime(older, (time.time() - 60, time.time() - 60))

    async def offer(pilot) -> ConfirmScreen:
        deadline = time.monotonic() + 10
        while not isinstance(pilot.app.screen, ConfirmScreen) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert isinstance(pilot.app.screen, ConfirmScreen), "no offer to restore"
        return pilot.app.screen

    app = make_app("mlp", offer_restore=True)
    async with app.run_test(size=(120, 40)) as pilot:
        first = await offer(pilot)
        assert "'alexnet'" in first.body and str(newer) in first.body
        await pilot.press("n")  # discard the newest
        second = await offer(pilot)
        assert second is not first and "'lenet'" in second.body
        assert newer.exists()  # kept until this session autosaves (a slip can be undone)
        await pilot.press("y")
        deadline = time.monotonic() + 60
        while app.lab is None and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert app.lab is not None and app.lab.name == "lenet" and app.lab.dirty
        assert autosave.autosave_path() == older  # the restored session goes on in its file


async def test_a_declined_copy_that_cannot_be_removed_is_not_offered_again(
        _private_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuilab.app.app import make_app
    from tuilab.app.screens.dialogs import ConfirmScreen
    from tuilab.core.workspace import load_preset, workspace_to_text, write_atomic

    _private_data_dir.mkdir(parents=True)
    stuck = _private_data_dir / "autosave-333-3.toml"
    write_atomic(stuck, workspace_to_text(Workspace(spec=load_preset("lenet"))))

    def refuse(path: Path | None = None) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(autosave, "discard", refuse)
    app = make_app("mlp", offer_restore=True)
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 10
        while not isinstance(app.screen, ConfirmScreen) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        deadline = time.monotonic() + 60
        while app.lab is None and time.monotonic() < deadline:
            assert not isinstance(app.screen, ConfirmScreen), "the same copy offered again"
            await pilot.pause(0.1)
        assert app.lab is not None and app.lab.name == "mlp" and stuck.exists()
