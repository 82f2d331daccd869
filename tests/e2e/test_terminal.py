"""End to end: the installed `tuilab` in a real pseudo-terminal, read back with a terminal
emulator (pyte), driven with real key strokes — what a user over SSH would see."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")
pyte = pytest.importorskip("pyte")

ROWS, COLS = 40, 120


def _tuilab() -> str:
    found = shutil.which("tuilab", path=str(Path(sys.executable).parent)) or shutil.which(
        "tuilab")
    if found is None:
        pytest.skip("the tuilab console script is not installed")
    return found


class Terminal:
    """A pexpect child plus a pyte screen that keeps up with what it draws."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(argv[0], argv[1:], env=env, dimensions=(ROWS, COLS),
                                   timeout=5)

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def pump(self, seconds: float = 0.1) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.child.read_nonblocking(size=65536, timeout=0.05)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                return
            self.stream.feed(data)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30.0) -> str:
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


@pytest.mark.slow
def test_installed_tuilab_adds_a_block_and_quits(tmp_path: Path) -> None:
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS),
           "TUILAB_DATA_DIR": str(tmp_path / "data")}
    env.pop("TEXTUAL", None)
    terminal = Terminal([_tuilab(), "mlp"], env)
    try:
        # the model loads (PyTorch in the background) and its shapes arrive
        screen = terminal.wait_for(lambda s: "7,946 params" in s and "→ (2, 10)" in s, 60)
        assert "Dropout" not in screen.split("Code log")[0].split("model")[-1]
        # search the palette, add the block with `a`
        terminal.keys("/")
        terminal.keys(*"dropout")
        terminal.keys("\r")
        terminal.wait_for(lambda s: "Dropout" in s)
        terminal.keys("a")
        screen = terminal.wait_for(lambda s: "net.append(nn.Dropout(0.5))" in s)
        assert "3  Dropout" in screen  # the builder and the _modules tree show it
        assert "• mlp" in screen  # unsaved
        # quit: the unsaved-changes question, answered "discard"
        terminal.keys("q")
        terminal.wait_for(lambda s: "Unsaved changes" in s)
        terminal.keys("d")
        terminal.child.expect(pexpect.EOF, timeout=20)
    finally:
        terminal.child.close(force=True)
    assert terminal.child.exitstatus == 0
    assert not terminal.child.isalive()
