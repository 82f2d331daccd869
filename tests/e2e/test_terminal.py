"""End to end: the installed `tuilab` in a real pseudo-terminal, read back with a terminal
emulator (pyte), driven with real key strokes — what a user over SSH would see."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

ROWS, COLS = 40, 120


@pytest.mark.slow
def test_installed_tuilab_adds_a_block_and_quits(tmp_path: Path, terminal_factory) -> None:
    env = {**os.environ, "TUILAB_DATA_DIR": str(tmp_path / "data")}
    terminal = terminal_factory(["mlp"], env, ROWS, COLS)
    try:
        # the model loads (PyTorch in the background) and its shapes arrive
        screen = terminal.wait_for(lambda s: "7,946 params" in s and "→ (2, 10)" in s)
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
