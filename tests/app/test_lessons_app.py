"""The lesson pane, driven with real keys: a whole lesson walked step by step.

Each step: the lab opens the step's model and input, the test presses the key the step names
(`f` for a forward pass) or `n` (the lab does the step), the pane must then show the figure
matched, and `n` goes on. Leaving the path (loading another preset) and `R` coming back are
checked too, and where the learner got to is remembered.
"""

from __future__ import annotations

import io

from app_helpers import lab_app
from app_helpers import settle as settle_once
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from tuilab.app.app import TuilabApp, make_app
from tuilab.app.widgets.lesson_pane import LessonPane
from tuilab.core.lesson_progress import load_progress
from tuilab.core.lessons import find_lesson


async def settle(pilot: Pilot) -> None:
    """Wait for workers; a step's new lab replaces the last summary worker (exclusive), and a
    worker cancelled that way has finished as far as this test is concerned."""
    for _ in range(20):
        try:
            await settle_once(pilot)
            return
        except WorkerCancelled:
            await pilot.pause(0.05)


async def _step_ready(pilot: Pilot, index: int) -> None:
    app = pilot.app
    assert isinstance(app, TuilabApp)
    for _ in range(200):
        await settle(pilot)
        lessons = app.lessons
        if (lessons.index == index and lessons.lab is not None and app.lab is lessons.lab
                and not lessons._busy):
            return
        await pilot.pause(0.05)
    raise AssertionError(f"step {index} never opened")


def _pane_text(app: TuilabApp) -> str:
    from rich.console import Console

    console = Console(width=110, record=True, file=io.StringIO())
    console.print(app.query_one(LessonPane).render_step())
    return console.export_text()


async def test_walk_lesson_000_with_real_keys() -> None:
    lesson = find_lesson("000")
    app = make_app("mlp", lesson="000", lesson_step=0)
    async with app.run_test(size=(120, 40)) as pilot:
        for index, step in enumerate(lesson.steps):
            await _step_ready(pilot, index)
            text = _pane_text(app)
            assert f"step {index + 1}/{len(lesson.steps)}" in text
            assert step.title in text
            if step.actions:
                if step.expect["figure"] == "net(x)":  # no output before the key
                    assert "no forward pass yet" in text and "✗ not yet" in text
                await pilot.press("f" if step.keys == "f" else "n")
                await settle(pilot)
                for _ in range(100):
                    if app.lessons.result is not None and app.lessons.result.ok:
                        break
                    await pilot.pause(0.05)
            assert app.lessons.result is not None and app.lessons.result.ok, (
                step.id, app.lessons.result)
            assert "✓ matches" in _pane_text(app)
            if index + 1 < len(lesson.steps):
                await pilot.press("n")
        # the trace steps grew the dict in the live module, as the inspector shows
        assert list(find_lesson("000").steps[-1].expect) == ["figure", "count"]
    progress = load_progress()["000"]
    assert progress.step == len(lesson.steps) - 1
    assert {step.id for step in lesson.steps} <= progress.matched


async def test_leaving_the_path_and_coming_back_restores_the_step() -> None:
    lesson = find_lesson("003")
    index = next(i for i, s in enumerate(lesson.steps) if s.id == "shared-set-100")
    app = make_app("mlp", lesson="003", lesson_step=index)
    async with app.run_test(size=(120, 40)) as pilot:
        await _step_ready(pilot, index)
        await pilot.press("n")  # the lab sets net[2].weight.data[0, 0] = 100
        await settle(pilot)
        assert app.lessons.result is not None and app.lessons.result.ok
        lesson_lab = app.lab
        await pilot.press("l")  # load another preset: off the lesson's path
        await pilot.pause()
        await pilot.press("down", "enter")  # enter alone keeps the open model
        for _ in range(200):
            await pilot.pause(0.05)
            if app.lab is not lesson_lab:
                break
        assert app.lab is not lesson_lab
        await settle(pilot)
        assert "You left the lesson's model" in _pane_text(app)
        await pilot.press("R")
        await _step_ready(pilot, index)
        assert "You left the lesson's model" not in _pane_text(app)
        assert app.lab is not None and app.lab.model[2] is app.lab.model[4]
        assert "✗ not yet" in _pane_text(app)  # the step is set up again, not yet done


async def test_o_opens_a_lesson_from_the_lab() -> None:
    app = lab_app("mlp")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("o")
        await pilot.pause()
        await pilot.press("down", "enter")  # the second lesson: 001
        await _step_ready(pilot, 0)
        assert app.lessons.lesson is not None and app.lessons.lesson.id == "001"
        assert "Lesson 001 · step 1/" in _pane_text(app)
