"""Suite-wide settings.

In CI (`CI` set, as `.ci/run` runs) hypothesis explores the same examples on every run, so a
red build is reproducible and never a roll of the dice; locally it keeps exploring new ones.
Every test gets a private data folder for the autosave, and is a session of its own.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The app autosaves after edits: keep that out of the user's real data folder, and let
    go of the test's autosave locks after it (the next test is a new session)."""
    folder = tmp_path / "data"
    monkeypatch.setenv("TUILAB_DATA_DIR", str(folder))
    yield folder
    if "tuilab.core.autosave" in sys.modules:
        sys.modules["tuilab.core.autosave"].end_session()


class Terminal:
    """The installed `tuilab` in a real pseudo-terminal (pexpect), its screen read back with a
    terminal emulator (pyte): what a user over SSH would see."""

    def __init__(self, args: list[str], env: dict[str, str], rows: int = 40,
                 cols: int = 120) -> None:
        import pexpect
        import pyte

        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        env = {**env, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
        env.pop("TEXTUAL", None)
        self.child = pexpect.spawn(installed_tuilab(), args, env=env, dimensions=(rows, cols),
                                   timeout=5)

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def pump(self, seconds: float = 0.1) -> None:
        import pexpect

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.stream.feed(self.child.read_nonblocking(size=65536, timeout=0.05))
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                return

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.pump(0.1)
            if predicate(self.text()):
                return self.text()
            if not self.child.isalive():
                break
        raise AssertionError(f"timed out; the screen shows:\n{self.text()}")

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.child.send(key)
            self.pump(0.05)


def installed_tuilab() -> str:
    """The console script pip installed beside this interpreter (the README's install)."""
    found = shutil.which("tuilab", path=str(Path(sys.executable).parent)) or shutil.which(
        "tuilab")
    assert found, "the tuilab console script is not installed (pip install -e .)"
    return found


@pytest.fixture
def terminal_factory() -> Callable[..., Terminal]:
    return Terminal



@pytest.fixture
def refusing_kernels() -> Iterator[Callable[..., object]]:
    """`refusing_kernels(dtype, stage=..., ops=...)`: until the test ends, this PyTorch
    build's LSTM (or another recurrent op) refuses `dtype` as oneDNN does on some CPUs (see
    tests/kernel_faults.py). Returns the fake, which counts the calls it refused."""
    from contextlib import ExitStack

    from kernel_faults import refusing

    with ExitStack() as stack:
        yield lambda *args, **kwargs: stack.enter_context(refusing(*args, **kwargs))
