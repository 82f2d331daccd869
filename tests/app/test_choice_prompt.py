"""The precision and the device are chosen in the header's own line (`ChoicePrompt`): modal
like a dialog, but closing it repaints what changed, never the whole screen."""

from __future__ import annotations

from typing import Any

from app_helpers import lab_app, settle
from textual.geometry import Region

from tuilab.app.app import MainScreen
from tuilab.app.widgets.choice_prompt import ChoicePrompt

SIZE = (120, 40)


def _prompt(answers: list[Any], available: tuple[bool, ...] = (True, False, True)) -> ChoicePrompt:
    choices = [(name, f"about {name}", ok) for name, ok in zip(("a", "b", "c"), available,
                                                              strict=True)]
    return ChoicePrompt("Pick", choices, "a", answers.append)


def test_the_arrows_reach_every_choice_and_say_why_one_cannot_be_chosen() -> None:
    prompt = _prompt([])
    assert prompt.picked == "a" and "a: about a" in prompt.render().plain
    prompt.move(1)
    assert prompt.picked is None  # b cannot be chosen…
    assert "▸b◂" in prompt.render().plain and "b: about b" in prompt.render().plain  # …why
    prompt.move(1)
    assert prompt.picked == "c"
    prompt.move(1)
    assert prompt.picked == "a"  # around
    prompt.move(-1)
    assert prompt.picked == "c"


def test_it_answers_once() -> None:
    answers: list[Any] = []
    prompt = _prompt(answers)
    assert "▸a✓◂" in prompt.render().plain and "esc cancel" in prompt.render().plain
    prompt.answer("c")
    prompt.answer("a")  # queued behind the first: dropped
    assert answers == ["c"] and prompt.answered


def test_a_column_names_the_choice_drawn_there() -> None:
    prompt = _prompt([])
    text = prompt.render().plain
    assert prompt.value_at(text.index("c ")) == "c"
    assert prompt.value_at(text.index("b ")) is None  # cannot be chosen
    assert prompt.value_at(0) is None  # the title


async def test_while_the_precision_is_asked_the_lab_keys_wait_and_escape_changes_nothing(
) -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        lab = app.lab
        app.builder.focus()
        children = len(lab.spec.root.children)
        await pilot.press("P")
        assert app.asking is app.header and "Precision" in app.header.text
        await pilot.press("a", "T", "d")  # add, train/eval, delete: all off meanwhile
        await pilot.pause()
        assert len(lab.spec.root.children) == children and lab.training
        await pilot.press("right", "escape")
        await settle(pilot)
        assert app.asking is None and lab.dtype_name == "float32"
        assert "Precision" not in app.header.text and "float32" in app.header.text
        assert app.builder.has_focus


async def test_a_click_picks_a_choice_and_a_click_elsewhere_closes_it() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        lab = app.lab
        await pilot.press("P")
        column = app.header.render().plain.index("float64")
        await pilot.click("#header", offset=(column + app.header.styles.padding.left, 0))
        await settle(pilot)
        assert app.asking is None and lab.dtype_name == "float64"
        await pilot.press("P")
        await pilot.click("#inspector")
        await settle(pilot)
        assert app.asking is None and lab.dtype_name == "float64"


async def test_choosing_repaints_what_changed_not_the_whole_screen() -> None:
    """A modal screen's close repaints every cell (Textual refreshes the screen under it);
    the prompt's repaints the header line and what the edit changed."""
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.builder.focus()
        await pilot.press("P", "down")
        await settle(pilot)
        compositor = app.screen._compositor
        painted: list[set[Region]] = []
        real = compositor.render_update

        def render_update(*args: Any, **kwargs: Any) -> Any:
            painted.append(set(compositor._dirty_regions))
            return real(*args, **kwargs)

        compositor.render_update = render_update  # type: ignore[method-assign]
        await pilot.press("enter")
        await settle(pilot)
        assert app.lab.dtype_name == "float16" and isinstance(app.screen, MainScreen)
        assert painted, "nothing was drawn"
        whole = Region(0, 0, *SIZE)
        assert all(whole not in regions for regions in painted), painted
        assert Region(0, 0, SIZE[0], 1) in painted[0]  # the header line, in the first frame


async def test_a_dialog_over_the_lab_drops_the_choice_and_gets_the_mouse() -> None:
    from tuilab.app.screens.help import HelpScreen

    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("P")
        assert app.mouse_captured is app.header
        await pilot.press("question_mark")  # help is not a lab key: it opens over the prompt
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert app.asking is None and app.mouse_captured is None
        assert app.lab.dtype_name == "float32"
