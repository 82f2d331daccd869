"""Keys pressed faster than the app draws: bursts of keys, sent without waiting between them
(as a user hammering keys, or a terminal replaying buffered input), reach a dialog after it
has already answered. Every modal ignores a second answer, so the app stays up and each
answer is acted on once."""

from __future__ import annotations

import importlib
import pkgutil
import random
from pathlib import Path
from typing import Any

import pytest
from hardening_helpers import lab_of, queue_key
from textual.pilot import Pilot

from tuilab.app.app import MainScreen, make_app

SIZE = (100, 32)


async def burst(pilot: Pilot[Any], *keys: str) -> None:
    """Queue every key at once, then let the app catch up: no frame, no idle wait between
    them (unlike `pilot.press`, which waits for the app to go idle after each key)."""
    for key in keys:
        queue_key(pilot.app, key)
    await pilot.pause()
    await pilot.pause()


def _up(app: Any) -> None:
    assert app._exception is None, app._exception
    assert app.is_running and app.return_value is None


async def test_a_choice_answered_twice_in_one_burst_is_taken_once() -> None:
    lab = lab_of("mlp")
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.builder.focus()
        for _ in range(5):
            await burst(pilot, "P")
            assert app.asking is not None  # the precision is asked in the header's line
            await burst(pilot, "down", "enter", "enter", "enter")
            _up(app)
        # each burst changed the precision once, to the next one down the list
        casts = [line for line in lab.code_log if line.startswith("net.to(torch.")]
        assert len(casts) == 5 and lab.dtype_name == "float16"  # 32→16→b16→64→32→16
        await burst(pilot, "P", "enter", "enter", "P", "escape", "escape", "escape")
        await burst(pilot, "escape")
        _up(app)
        assert isinstance(app.screen, MainScreen) and app.asking is None
        assert lab.dtype_name == "float16"


async def test_bursts_of_dialog_keys_and_answers_during_a_run_never_bring_the_app_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuilab.app.widgets.run_panel import RunPanel

    monkeypatch.chdir(tmp_path)  # a burst's S + enter saves the workspace here
    rng = random.Random(13)
    lab = lab_of("mlp")
    lab.train_settings = {"batch_size": 8, "val_every": 0}
    app = make_app(lab=lab)
    openers = ["P", "c", "r", "ctrl+n", "question_mark", "e", "l", "S", "ctrl+o", "k", "I"]
    answers = ["enter", "escape", "down", "up", "y", "n", "s", "d", "space", "tab"]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.builder.focus()
        panel = app.query_one(RunPanel)
        await pilot.press("t")
        await pilot.pause()
        await pilot.press(*str(10**6), "enter")  # a long run: the bursts land during it
        for _ in range(15):
            keys = []
            for _ in range(rng.randint(3, 12)):
                keys.append(rng.choice(openers) if rng.random() < 0.3 else rng.choice(answers))
            await burst(pilot, *keys)
            _up(app)
            await burst(pilot, "escape", "escape", "escape")
            _up(app)
        assert panel.running, "the run stopped under the bursts"
        await burst(pilot, "x")
        await app.workers.wait_for_complete()
        _up(app)


def test_every_modal_of_the_app_answers_once() -> None:
    """The guard lives in one base class: a new modal that skips it would bring the crash
    back, so every ModalScreen tuilab defines must derive from `Dialog`."""
    from textual.screen import ModalScreen

    import tuilab.app
    from tuilab.app.screens.dialogs import Dialog

    for info in pkgutil.walk_packages(tuilab.app.__path__, "tuilab.app."):
        importlib.import_module(info.name)

    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    ours = [c for c in subclasses(ModalScreen) if c.__module__.startswith("tuilab.")]
    assert len(ours) >= 8
    assert [c.__name__ for c in ours if not issubclass(c, Dialog)] == []


async def test_deletes_in_one_burst_each_remove_a_block() -> None:
    """After a delete the cursor goes to the block now in that place; a second `d` in the
    same burst (before any frame) deletes that one, instead of finding no selection."""
    lab = lab_of("mlp")
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.builder.focus()
        app.builder.select_path("0")
        blocks = [child.block for child in lab.spec.root.children]
        await burst(pilot, "d", "d")
        _up(app)
        assert [child.block for child in lab.spec.root.children] == blocks[2:]
        assert app.builder.selected_path == "0"
