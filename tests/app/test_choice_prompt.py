"""The precision and the device are chosen in the header's own line (`ChoicePrompt`): modal
like a dialog, but closing it repaints what changed, never the whole screen."""

from __future__ import annotations

from typing import Any

from app_helpers import lab_app, select, settle
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
    assert prompt.picked == "a" and "a: about a" in prompt.render(200).plain
    prompt.press("right", None)
    assert prompt.picked is None  # b cannot be chosen…
    assert "▸b◂" in prompt.render(200).plain and "b: about b" in prompt.render(200).plain
    assert prompt.press("enter", None) is False  # …so enter leaves the prompt open
    prompt.press("right", None)
    assert prompt.picked == "c"
    prompt.press("down", None)
    assert prompt.picked == "a"  # around
    prompt.press("left", None)
    assert prompt.picked == "c"


def test_it_answers_once_after_the_line_is_closed() -> None:
    answers: list[Any] = []
    prompt = _prompt(answers)
    assert "▸a✓◂" in prompt.render(200).plain and "esc cancel" in prompt.render(200).plain
    prompt.press("right", None)
    prompt.press("right", None)
    assert prompt.press("enter", None) is True and answers == []  # not before it is closed
    prompt.closed()
    prompt.closed()  # a second close (keys queued behind the first): nothing more
    assert answers == ["c"] and prompt.answered


def test_escape_answers_none() -> None:
    answers: list[Any] = []
    prompt = _prompt(answers)
    assert prompt.press("escape", None) is True
    prompt.closed()
    assert answers == [None]


def test_a_column_names_the_choice_drawn_there() -> None:
    prompt = _prompt([])
    text = prompt.render(200).plain
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
        column = app.header.text.index("float64")
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
    from tuilab.app.screens.dialogs import UnsavedScreen

    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "1")
        await pilot.press("D")  # duplicate: unsaved work, so quitting asks
        await settle(pilot)
        assert app.lab.dirty
        await pilot.press("P")
        assert app.mouse_captured is app.header
        await pilot.press("ctrl+q")  # quit is the one key that reaches past a prompt
        await pilot.pause()
        assert isinstance(app.screen, UnsavedScreen)
        assert app.asking is None and app.mouse_captured is None
        assert app.lab.dtype_name == "float32"
        await pilot.press("escape")  # cancel: the lab again, as it was
        await pilot.pause()
        assert app.is_running and app.screen is app.screen_stack[0]
