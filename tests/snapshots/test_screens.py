"""Snapshots of the main screens (pytest-textual-snapshot).

Deterministic by construction: the lab is built before the app starts, `run_before` waits for
the shape-summary worker, no clock is drawn, and inputs do not blink. Regenerate with
`pytest tests/snapshots --snapshot-update` after an intended change, and look at the SVGs.
"""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Input, Tabs
from textual.widgets._tabs import Underline

from tuilab.app.app import TuilabApp, make_app
from tuilab.core.lab import Lab
from tuilab.core.workspace import load_workspace_arg


def _app(preset: str) -> TuilabApp:
    return make_app(lab=Lab.from_workspace(load_workspace_arg(preset)))


def _underlines_pending(app: TuilabApp) -> list[Tabs]:
    """Shown tab bars whose underline is not yet under the active tab: Textual places it
    after a refresh, which a busy machine may not have drawn when the snapshot is taken. A bar
    still being composed (a run panel mounted for a new lab) has no underline yet: pending."""
    pending = []
    for tabs in app.screen.query(Tabs):
        underlines = tabs.query(Underline)
        if not underlines:
            pending.append(tabs)
            continue
        underline = underlines.first()
        if tabs.region.area and tabs.tab_count and (
                not tabs.active or not underline.show_highlight
                or underline.highlight_end <= underline.highlight_start):
            pending.append(tabs)
    return pending


async def _ready(pilot: Pilot) -> None:
    app = pilot.app
    await pilot.pause()
    for _ in range(1200):
        if not getattr(app, "summary_pending", False):
            break
        await pilot.pause(0.05)
    await app.workers.wait_for_complete()
    await pilot.pause()
    for _ in range(200):  # frames, not a time limit: each pause lets one more refresh run
        if not _underlines_pending(app):
            break
        await pilot.pause(0.05)
    for tabs in app.screen.query(Tabs):  # placed now, without the slide (textual 8.2.x)
        if tabs.query(Underline):
            tabs._highlight_active(animate=False)
    await pilot.pause()


async def _select(pilot: Pilot, path: str) -> None:
    """Put the builder's cursor on `path` (at once: a key pressed next acts on it)."""
    app = pilot.app
    assert isinstance(app, TuilabApp)
    app.builder.focus()
    app.builder.select_path(path)
    assert app.builder.selected_path == path
    await pilot.pause()


def _no_blink(pilot: Pilot) -> None:
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False


def test_main_screen_mlp(snap_compare) -> None:
    assert snap_compare(_app("mlp"), terminal_size=(120, 40), run_before=_ready)


def test_main_screen_lenet(snap_compare) -> None:
    assert snap_compare(_app("lenet"), terminal_size=(120, 40), run_before=_ready)


def test_main_screen_at_80x24(snap_compare) -> None:
    assert snap_compare(_app("lenet"), terminal_size=(80, 24), run_before=_ready)


def test_arg_prompt(snap_compare) -> None:
    """A Conv2d's nine arguments in the header's line: the marked field, the fields that fit
    around it, its rule and the keys; the model in view below."""
    async def open_prompt(pilot: Pilot) -> None:
        await _ready(pilot)
        app = pilot.app
        assert isinstance(app, TuilabApp)
        await _select(pilot, "conv1")
        await pilot.press("e", "tab", "tab")
        await pilot.pause()

    assert snap_compare(_app("lenet"), terminal_size=(120, 40), run_before=open_prompt)


def test_arg_prompt_with_a_bad_value_at_80x24(snap_compare) -> None:
    """Refused: the reason first in the line's tail, in full in a notification."""
    async def bad_value(pilot: Pilot) -> None:
        await _ready(pilot)
        await _select(pilot, "2")
        await pilot.press("e", "tab", "ctrl+u", *"-3", "enter")
        await pilot.pause()

    assert snap_compare(_app("mlp"), terminal_size=(80, 24), run_before=bad_value)


def test_help_screen(snap_compare) -> None:
    async def open_help(pilot: Pilot) -> None:
        await _ready(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(_app("mlp"), terminal_size=(120, 40), run_before=open_help)


def test_lesson_pane(snap_compare) -> None:
    """Seed 001's corr2d step after `n`: the expected figure and the lab's, matched."""

    async def walk(pilot: Pilot) -> None:
        app = pilot.app
        assert isinstance(app, TuilabApp)
        lessons = app.lessons

        async def settled() -> None:
            for _ in range(2400):  # waits on the lab, never on the clock (a busy machine)
                await pilot.pause(0.05)
                if lessons.lab is not None and app.lab is lessons.lab and not lessons._busy:
                    break
            assert app.lab is lessons.lab, "the lesson's lab never opened"
            await _ready(pilot)

        # On a loaded CI machine the first `n` after the step opened was sometimes not acted
        # on (acted: False, the lesson's lab current; cause not found): press again, as a
        # learner would, until the step's actions ran.
        for _ in range(5):
            await settled()
            await pilot.press("n")
            for _ in range(200):
                await pilot.pause(0.05)
                if lessons._did_actions or lessons._busy:
                    break
            if lessons._did_actions:
                break
        for _ in range(2400):
            await pilot.pause(0.05)
            if app.lessons.result is not None and app.lessons.result.ok:
                break
        assert lessons.result is not None and lessons.result.ok, (
            f"after n: {lessons.result and lessons.result.got!r}; on the lesson's lab: "
            f"{app.lab is lessons.lab}; busy: {lessons._busy}; acted: {lessons._did_actions}; "
            f"focus: {app.focused!r}; screen: {app.screen!r}; "
            f"said: {[n.message for n in app._notifications]}")
        await _ready(pilot)

    app = make_app("mlp", lesson="001", lesson_step=6)
    assert snap_compare(app, terminal_size=(120, 40), run_before=walk)


def test_main_screen_at_160x48(snap_compare) -> None:
    """Wide: the palette's list beside the model and the inspector."""
    assert snap_compare(_app("lenet"), terminal_size=(160, 48), run_before=_ready)


def test_inspector_in_the_models_place_at_80x24(snap_compare) -> None:
    async def show_inspector(pilot: Pilot) -> None:
        await _ready(pilot)
        await pilot.press("v")
        await _ready(pilot)

    assert snap_compare(_app("lenet"), terminal_size=(80, 24), run_before=show_inspector)


def test_unsaved_changes_dialog_at_80x24(snap_compare) -> None:
    """A dialog's own keys in its footer (s, d, esc), cancel focused."""
    async def ask(pilot: Pilot) -> None:
        await _ready(pilot)
        app = pilot.app
        assert isinstance(app, TuilabApp)
        await _select(pilot, "1")
        await pilot.press("d")
        await _ready(pilot)
        await pilot.press("q")
        await pilot.pause()

    assert snap_compare(_app("mlp"), terminal_size=(80, 24), run_before=ask)


def test_values_view(snap_compare) -> None:
    """The values view on a tied layer after a set value (deterministic: the weight is set)."""
    async def open_values(pilot: Pilot) -> None:
        await _ready(pilot)
        app = pilot.app
        assert isinstance(app, TuilabApp) and app.lab is not None
        app.lab.set_value("2.weight = torch.arange(64.).view(8, 8) / 10 - 3")
        await _select(pilot, "2")
        await pilot.press("V")
        await _ready(pilot)
        _no_blink(pilot)

    assert snap_compare(_app("shared_mlp"), terminal_size=(100, 30), run_before=open_values)


def test_precision_asked_in_the_header_at_80x24(snap_compare) -> None:
    """The choice in the header's line, its keys beside it; the lab under it unchanged."""
    async def ask(pilot: Pilot) -> None:
        await _ready(pilot)
        await pilot.press("P", "right", "right")
        await pilot.pause()

    assert snap_compare(_app("mlp"), terminal_size=(80, 24), run_before=ask)
