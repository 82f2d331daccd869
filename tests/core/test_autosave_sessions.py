"""Two tuilabs side by side: each autosaves to its own file, neither deletes or offers the
other's while it runs, and a session that died is offered back, newest first."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tuilab.core import autosave
from tuilab.core.workspace import Workspace, load_preset

pytestmark = pytest.mark.skipif(autosave.fcntl is None, reason="session locks need fcntl")

OTHER_SESSION = textwrap.dedent("""
    import sys, time
    from tuilab.core.autosave import autosave
    from tuilab.core.workspace import Workspace, load_preset
    autosave(Workspace(spec=load_preset(sys.argv[1])))
    print("SAVED", flush=True)
    time.sleep(120)
""")


class OtherTuilab:
    """Another tuilab process that has autosaved `preset` and is still running."""

    def __init__(self, preset: str, data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", OTHER_SESSION, preset], stdout=subprocess.PIPE, text=True,
            env={"TUILAB_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin",
                 "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "SAVED"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def other(_private_data_dir: Path):
    sessions: list[OtherTuilab] = []

    def start(preset: str) -> OtherTuilab:
        sessions.append(OtherTuilab(preset, _private_data_dir))
        return sessions[-1]

    yield start
    for session in sessions:
        if session.process.poll() is None:
            session.kill()


def test_a_running_sessions_copy_is_neither_offered_nor_touched(other, _private_data_dir):
    running = other("lenet")
    autosave.autosave(Workspace(spec=load_preset("mlp")))
    assert len(list(_private_data_dir.glob("autosave-*.toml"))) == 2  # one file each
    assert autosave.pending_restore() is None  # ours is open, theirs is running
    autosave.discard()  # our clean quit removes our copy only
    [theirs] = _private_data_dir.glob("autosave-*.toml")
    assert autosave.pending_restore() is None
    running.kill()  # killed: its copy is offered now
    leftover = autosave.pending_restore()
    assert leftover is not None and leftover.path == theirs
    assert leftover.workspace.spec.name == "lenet"


def test_ended_sessions_are_offered_newest_first_and_declining_one_offers_the_next(
        other, _private_data_dir):
    older = other("lenet")
    older.kill()
    time.sleep(0.05)  # a later modification time
    newer = other("alexnet")
    newer.kill()
    first = autosave.pending_restore()
    assert first is not None and first.workspace.spec.name == "alexnet"
    autosave.discard(first.path)  # declined: its file and lock go
    assert not first.path.exists() and not first.path.with_suffix(".lock").exists()
    second = autosave.pending_restore()
    assert second is not None and second.workspace.spec.name == "lenet"


def test_a_restored_session_goes_on_in_its_file_and_no_one_else_can_take_it(
        other, _private_data_dir):
    other("lenet").kill()
    leftover = autosave.pending_restore()
    assert leftover is not None
    autosave.adopt(leftover.path)
    assert autosave.autosave_path() == leftover.path
    autosave.autosave(Workspace(spec=load_preset("mlp")))
    assert list(_private_data_dir.glob("autosave-*.toml")) == [leftover.path]
    assert autosave.pending_restore() is None  # ours now, and open
    # another process trying to adopt it too is refused
    code = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from tuilab.core.autosave import adopt; adopt(Path(sys.argv[1]))", str(leftover.path)],
        env={"TUILAB_DATA_DIR": str(_private_data_dir), "PATH": "/usr/bin:/bin",
             "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True, text=True, timeout=60)
    assert code.returncode != 0 and "BlockingIOError" in code.stderr
    # the app closing without a clean quit lets go: the copy is offered to the next start
    autosave.end_session()
    offered = autosave.pending_restore()
    assert offered is not None and offered.path == leftover.path
    assert offered.workspace.spec.name == "mlp"
    assert autosave.autosave_path() != leftover.path  # this process goes on as a new session
