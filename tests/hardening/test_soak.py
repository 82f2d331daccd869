"""Soak: the app driven by 1,000+ seeded random key presses — edits, modes, forward and
backward passes, dialogs opened and closed, undo/redo, two short training runs — never raises
and never stops; and repeated passes and runs leave no hooks, workers, threads or tensors
behind.
"""

from __future__ import annotations

import gc
import random
import threading
import time
from typing import Any

import torch
from hardening_helpers import lab_of, queue_key
from textual.pilot import Pilot

from tuilab.app.app import MainScreen, TuilabApp, make_app
from tuilab.core.build import build
from tuilab.core.spec import walk

ACTIONS = 1000
SIZE = (100, 32)
BLOCKS = ["Linear", "ReLU", "Dropout", "Sequential", "LayerNorm", "Tanh", "Identity",
          "BatchNorm1d", "ModuleList", "GELU", "Flatten", "Conv2d", "LazyLinear"]
# key -> weight; dialogs are answered (or escaped) by the loop below
KEYS = {
    "a": 8, "i": 4, "A": 4, "K": 3, "J": 3, "greater_than_sign": 3, "less_than_sign": 3,
    "d": 5, "D": 2, "z": 2, "m": 1, "s": 2, "ctrl+z": 6, "ctrl+y": 4, "up": 6, "down": 6,
    "home": 1, "end": 1, "T": 3, "f": 5, "b": 3, "g": 2, "e": 2, "P": 2, "c": 1, "r": 1,
    "I": 1, "question_mark": 1, "ctrl+n": 1, "y": 1, "x": 1, "p": 1,
}


async def _press(pilot: Pilot[Any], key: str) -> None:
    """A real key event through the app's bindings, like `pilot.press`, but waiting only
    until the screen has handled it, not until the whole process is idle: Pilot's idle wait
    also waits out the shape summary each edit starts, which would make 1,000 presses cost
    minutes. Dialogs are still answered with `pilot.press`."""
    queue_key(pilot.app, key)
    await pilot._wait_for_screen()


async def _close_dialogs(pilot: Pilot[Any], rng: random.Random) -> None:
    """Answer whatever dialog is open: sometimes with enter (accept), else escape."""
    app = pilot.app
    for _ in range(4):
        if isinstance(app.screen, MainScreen) and app.asking is None:
            return
        name = type(app.screen).__name__
        if app.asking is not None and rng.random() < 0.5:
            await pilot.press(rng.choice(["down", "up"]), "enter")  # a precision or device
        elif name == "TextPrompt" and rng.random() < 0.3:
            await pilot.press("enter")  # the current value: rename to itself, same shape
        else:
            await pilot.press("escape")
        await pilot.pause()


def _check(app: TuilabApp) -> None:
    """The app is up, and the live module is exactly what the spec builds."""
    assert app._exception is None and app.return_value is None
    assert app.is_running
    lab = app.lab
    assert lab is not None
    fresh = build(lab.spec, device="meta")

    def kinds(model: torch.nn.Module) -> list[tuple[str, str]]:
        # a LazyLinear becomes a Linear at its first forward pass (PyTorch swaps its class)
        return [(n, type(m).__name__.removeprefix("Lazy")) for n, m in model.named_modules()]

    assert kinds(lab.model) == kinds(fresh)


async def _short_run(pilot: Pilot[Any], steps: int) -> None:
    from tuilab.app.screens.train_settings import TrainSettingsScreen
    from tuilab.app.widgets.run_panel import RunPanel

    app = pilot.app
    panel = app.query_one(RunPanel)
    runs = len(app.lab.runs)
    await pilot.press("t")
    await pilot.pause()
    if not isinstance(app.screen, TrainSettingsScreen):
        return  # a model that cannot train now (it said why)
    await pilot.press(*str(steps), "enter")
    deadline = time.monotonic() + 30
    while (panel.running or isinstance(app.screen, TrainSettingsScreen)) and (
            time.monotonic() < deadline):
        await pilot.pause(0.05)
    if isinstance(app.screen, TrainSettingsScreen):  # the form refused the settings
        await pilot.press("escape")
    assert not panel.running
    assert len(app.lab.runs) in (runs, runs + 1)


async def test_a_thousand_random_actions_never_bring_the_app_down() -> None:
    rng = random.Random(20240611)
    lab = lab_of("mlp")
    lab.train_settings = {"batch_size": 8, "val_every": 5}
    app = make_app(lab=lab)
    keys, weights = list(KEYS), list(KEYS.values())
    pressed = 0
    started = time.monotonic()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.builder.focus()
        for step in range(ACTIONS):
            if step % 25 == 0:
                app.palette.select_block(rng.choice(BLOCKS))
                app.builder.focus()
            if step in (300, 700):
                await _short_run(pilot, rng.choice([15, 25]))
                pressed += 1
                continue
            size = sum(1 for _ in walk(lab.spec.root))
            key = "d" if size > 40 else rng.choices(keys, weights)[0]
            await _press(pilot, key)
            pressed += 1
            await _close_dialogs(pilot, rng)
            if not app.builder.has_focus and isinstance(app.screen, MainScreen):
                app.builder.focus()
            if step % 100 == 99:
                await app.workers.wait_for_complete()
                _check(app)
        await app.workers.wait_for_complete()
        await pilot.pause()
        _check(app)
        assert len(lab.runs) >= 1
    assert app._exception is None
    assert pressed >= ACTIONS
    print(f"soak: {pressed} actions, {len(lab.code_log)} code lines, {len(lab.runs)} runs, "
          f"{time.monotonic() - started:.1f}s")


# --------------------------------------------------------------------------------------------
# memory stays flat


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) + len(m._state_dict_hooks)
               + len(m._load_state_dict_pre_hooks) for m in model.modules())


def _global_hooks() -> int:
    from torch.nn.modules import module

    return (len(module._global_forward_hooks) + len(module._global_forward_pre_hooks)
            + len(module._global_backward_hooks) + len(module._global_backward_pre_hooks))


def _tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


async def test_repeated_passes_and_runs_leave_no_hooks_workers_or_tensors_behind() -> None:
    from tuilab.app.widgets.run_panel import RunPanel

    lab = lab_of("lenet")
    lab.train_settings = {"batch_size": 8, "val_every": 5}
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        panel = app.query_one(RunPanel)

        async def round_() -> None:
            for key in ["f", "f", "T", "f", "T", "b", "g", "f"]:
                await pilot.press(key)
            await app.workers.wait_for_complete()
            await _short_run(pilot, 10)
            await app.workers.wait_for_complete()
            await pilot.pause()

        await round_()  # warm-up: caches, lazily created widgets, first allocations
        await round_()
        threads = threading.active_count()
        tensors = _tensors()
        for _ in range(4):
            await round_()
        assert not panel.running
        assert _hook_count(lab.model) == 0 and _global_hooks() == 0
        assert not [w for w in app.workers if not w.is_finished]
        assert threading.active_count() <= threads
        grown = _tensors() - tensors
        assert grown <= 40, f"{grown} more tensors after 4 more rounds"
        assert len(lab.runs) >= 5 and all(r.status == "finished" for r in lab.runs)
        assert app._exception is None
