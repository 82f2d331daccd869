"""Fresh panels: after a load, a backward or a zero_grad nothing on screen belongs to an older
model or an older gradient (real keys throughout)."""

from __future__ import annotations

from pathlib import Path

from app_helpers import lab_app, select, settle, type_into_focused
from textual.pilot import Pilot
from textual.widgets import DataTable, OptionList, Static

from tuilab.app.app import TuilabApp
from tuilab.app.screens.dialogs import ChoiceScreen
from tuilab.core.workspace import load_workspace_arg, save_workspace

SIZE = (120, 40)


def _rows(app: TuilabApp, table: str) -> list[list[str]]:
    data = app.run_panel().query_one(table, DataTable)
    return [[str(cell) for cell in data.get_row_at(i)] for i in range(data.row_count)]


def _caption(app: TuilabApp, widget: str) -> str:
    return str(app.run_panel().query_one(widget, Static).render())


async def _init_normal(pilot: Pilot) -> None:
    """`I`, then enter: the first scheme (normal) on the whole model; the Params tab shows."""
    await pilot.press("I")
    await pilot.pause()
    await pilot.press("enter")
    await settle(pilot)


async def _load_preset(pilot: Pilot, name: str) -> None:
    await pilot.press("l")
    await pilot.pause()
    picker = pilot.app.screen
    assert isinstance(picker, ChoiceScreen)
    options = picker.query_one(OptionList)
    options.highlighted = options.get_option_index(name)
    await pilot.press("enter")
    await settle(pilot)
    await pilot.pause()


def _widths(app: TuilabApp, table: str) -> list[int]:
    data = app.run_panel().query_one(table, DataTable)
    return [column.get_render_width(data) for column in data.columns.values()]


async def test_a_new_preset_leaves_no_forward_backward_or_params_of_the_last() -> None:
    app = lab_app("lenet")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        empty_widths = _widths(app, "#forward-table")
        await pilot.press("f")
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        await _init_normal(pilot)
        assert any(row[0].startswith("conv1") for row in _rows(app, "#params-table"))
        assert _widths(app, "#forward-table") != empty_widths
        await _load_preset(pilot, "shared_mlp")  # a 4 → 8 → 1 net
        assert app.lab.name == "shared_mlp"
        for table in ("#forward-table", "#backward-table", "#params-table"):
            assert not any("conv" in " ".join(row) for row in _rows(app, table)), table
        assert _rows(app, "#forward-table") == []
        assert _widths(app, "#forward-table") == empty_widths  # widths of the new model
        assert "conv" not in _caption(app, "#forward-header")
        assert _caption(app, "#backward-loss").startswith("b: loss.backward()")
        assert "lenet" not in _caption(app, "#run-status")


async def test_opening_a_workspace_file_clears_the_panels(tmp_path: Path) -> None:
    save_workspace(load_workspace_arg("mlp"), tmp_path / "small.toml")
    app = lab_app("lenet")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await _init_normal(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()
        await type_into_focused(pilot, str(tmp_path / "small.toml"))
        await pilot.press("enter")
        await settle(pilot)
        await pilot.pause()
        assert app.lab.name == "mlp"
        assert not any(row[0].startswith("conv1") for row in _rows(app, "#params-table"))


async def test_grad_norms_in_the_params_tab_follow_backward_and_zero_grad() -> None:
    app = lab_app("mlp")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await _init_normal(pilot)
        assert {row[-1] for row in _rows(app, "#params-table")} == {"–"}
        await pilot.press("b")
        await settle(pilot)
        norms = [row[-1] for row in _rows(app, "#params-table")]
        assert all(norm != "–" and float(norm) >= 0 for norm in norms), norms
        await pilot.press("g")
        await settle(pilot)
        assert {row[-1] for row in _rows(app, "#params-table")} == {"–"}


async def test_a_collapsed_root_does_not_carry_over_to_the_next_preset() -> None:
    app = lab_app("lenet")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "")
        await pilot.click("#builder", offset=(4, 0))  # the root's line: a click toggles it
        await pilot.pause()
        assert not app.builder.root.is_expanded
        await _load_preset(pilot, "mlp")
        assert app.builder.root.is_expanded
        assert app.builder.root.children  # the new model's blocks are visible
