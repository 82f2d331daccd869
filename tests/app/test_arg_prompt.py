"""A node's arguments edited in the header's line (`ArgPrompt`): typing, fields, the checks
before the model changes, and a line that always shows the field being edited."""

from __future__ import annotations

from typing import Any

import pytest
from app_helpers import lab_app, select, settle, type_into_field

from tuilab.app.widgets.arg_prompt import ArgPrompt
from tuilab.core.arguments import Arg
from tuilab.core.errors import TuilabError

SIZE = (120, 40)
ARGS = [(Arg("in_features", "int", 1, minimum=1), 20),
        (Arg("out_features", "int", 1, minimum=1, doc="size of each output"), 256),
        (Arg("bias", "bool", True), True)]


def _prompt(submitted: list[dict[str, str]], refuse: str | None = None) -> ArgPrompt:
    def submit(values: dict[str, str]) -> None:
        if refuse is not None:
            raise TuilabError(refuse)
        submitted.append(values)

    return ArgPrompt("0: nn.Linear", ARGS, submit)


def _keys(prompt: ArgPrompt, *keys: str) -> bool:
    done = False
    for key in keys:
        done = prompt.press(key, key if len(key) == 1 else None)
    return done


def test_typing_edits_the_marked_field_at_its_cursor() -> None:
    prompt = _prompt([])
    _keys(prompt, "tab", "left", "backspace", "9")  # out_features: 256 → 296
    assert prompt.field.text == "296" and prompt.values() == {"out_features": "296"}
    _keys(prompt, "home", "1", "end", "delete", "0")
    assert prompt.field.text == "12960"
    _keys(prompt, "ctrl+u", "7")
    assert prompt.values() == {"out_features": "7"}
    _keys(prompt, "shift+tab", "shift+tab")
    assert prompt.field.arg.name == "bias"  # around, backwards
    prompt.paste("false\nrm -rf /")
    assert prompt.field.text == "truefalse"  # a paste's first line, at the cursor


def test_enter_checks_each_field_then_submits_once() -> None:
    submitted: list[dict[str, str]] = []
    prompt = _prompt(submitted)
    assert _keys(prompt, "tab", "ctrl+u", "0", "enter") is False  # ≥ 1
    assert prompt.error is not None and "out_features" in prompt.error and submitted == []
    assert prompt.field.arg.name == "out_features"
    assert "✗" in prompt.render(200).plain
    assert _keys(prompt, "ctrl+u", "8", "enter") is True
    assert submitted == [{"out_features": "8"}] and prompt.applied
    assert _keys(prompt, "enter") is True and len(submitted) == 1  # queued behind: dropped


def test_a_refusal_names_its_field_and_keeps_the_prompt() -> None:
    prompt = _prompt([], refuse="argument 'in_features' must match the input's 10 features")
    assert _keys(prompt, "tab", "ctrl+u", "9", "enter") is False
    assert prompt.field.arg.name == "in_features" and "match" in (prompt.error or "")


def test_nothing_changed_closes_without_submitting() -> None:
    submitted: list[dict[str, str]] = []
    assert _keys(_prompt(submitted), "tab", "enter") is True and submitted == []
    prompt = _prompt(submitted)
    assert _keys(prompt, "9", "escape") is True and submitted == [] and not prompt.applied


@pytest.mark.parametrize("width", [40, 80, 120])
def test_the_marked_field_is_always_in_the_line(width: int) -> None:
    args: list[tuple[Arg, Any]] = [(Arg(f"argument_{i}", "int", 1), i) for i in range(9)]
    prompt = ArgPrompt("conv1: nn.Conv2d", args, lambda values: None)
    for index in range(9):
        text = prompt.render(width).plain
        assert len(text) <= width and f"argument_{index}=" in text, (index, text)
        if index:
            assert "…" in text  # fields left out before it are marked
        prompt.press("tab", None)


async def test_the_argument_prompt_keeps_the_lab_and_its_focus() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        lab = app.lab
        await select(pilot, "0")
        await pilot.press("e")
        assert isinstance(app.header.prompt, ArgPrompt) and app.screen is app.screen_stack[0]
        children = len(lab.spec.root.children)
        await pilot.press("a", "d", "question_mark")  # typed into the field, not lab keys
        assert app.header.prompt.field.text == "20ad?"
        assert len(lab.spec.root.children) == children and app.asking is app.header
        await pilot.click("#inspector")  # a click elsewhere keeps what was typed
        assert app.asking is app.header and app.header.prompt.field.text == "20ad?"
        await type_into_field(pilot, "in_features", "32")
        await pilot.press("enter")
        await settle(pilot)
        assert app.asking is None and app.builder.has_focus
        assert lab.spec.root.children[0].args["in_features"] == 32


async def test_a_table_on_a_hidden_tab_asks_no_relayout_and_shows_its_rows_when_opened(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Removing the bias drops a row of the `_parameters` table. On its hidden tab that asks
    Textual for no relayout of the screen (it was 3-4 ms of the edit's frame); shown, the
    table has the rows of the model, and a row it loses then does ask for one."""
    from textual.widgets import DataTable, TabbedContent

    relayouts: list[Any] = []
    real = DataTable.refresh

    def refresh(self: Any, *regions: Any, layout: bool = False, **kwargs: Any) -> Any:
        if layout and self.id == "parameters-table":
            relayouts.append(self)
        return real(self, *regions, layout=layout, **kwargs)

    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.inspector.params_table
        monkeypatch.setattr(DataTable, "refresh", refresh)
        await select(pilot, "2")
        await pilot.press("e")
        await type_into_field(pilot, "bias", "false")
        await pilot.press("enter")
        await settle(pilot)
        assert not table.region and relayouts == []  # hidden: no relayout asked
        assert not table.has_row("2.bias")
        app.inspector.query_one("#inspector-tabs", TabbedContent).active = "parameters"
        await settle(pilot)
        assert table.region.height > 0
        assert table.row_count == len(app.lab.snapshot.parameters) == 3
        assert table.virtual_size.height >= table.row_count  # its rows, all reachable
        await pilot.press("ctrl+z")  # the bias back: a row added to the table on screen
        await settle(pilot)
        assert table.has_row("2.bias") and relayouts  # shown: laid out again
