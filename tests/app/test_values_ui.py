"""The values view (V), the chosen input (X) and set values, driven with real keys.

The proof is PyTorch itself: what the view prints is compared with `repr` of the live tensor,
the forward output with the seed's figures (pool2d on arange(9) → [[4, 5], [7, 8]], corr2d →
[[19, 25], [37, 43]]), and a set value on a tied layer is read back at both of its places.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from app_helpers import lab_app, select, settle
from textual.containers import VerticalScroll
from textual.pilot import Pilot
from textual.widgets import ContentSwitcher, DataTable, Input, Static, TabbedContent

from tuilab.app.app import TuilabApp, make_app
from tuilab.app.screens.input_prompt import InputPrompt
from tuilab.app.widgets.values import ValuesScreen
from tuilab.core.lab import Lab
from tuilab.core.workspace import load_workspace

SIZE = (120, 40)


def block_app(tmp_path: Path, block: str, args: str = "", shape: str = "[3, 3]") -> TuilabApp:
    """An app on a one-block model (a seed's Pool2D or Conv2D), as `tuilab forward`'s tests."""
    path = tmp_path / f"{block.lower()}.toml"
    path.write_text(f'[tuilab]\nformat = 1\n[model]\nname = "{block}"\ninput_shape = {shape}\n'
                    f'[model.root]\nname = ""\nblock = "{block}"\n'
                    + (f"args = {{ {args} }}\n" if args else ""))
    return make_app(lab=Lab.from_workspace(load_workspace(path), path=path))


def values_screen(app: Any) -> ValuesScreen:
    screen = app.screen
    assert isinstance(screen, ValuesScreen), type(screen).__name__
    return screen


async def open_view(pilot: Pilot[Any], node: str) -> ValuesScreen:
    """Select `node` in the builder and press V; the view once its worker has drawn it."""
    await settle(pilot)
    await select(pilot, node)
    await pilot.press("V")
    await settle(pilot)
    return values_screen(pilot.app)


async def type_in(pilot: Pilot[Any], selector: str, text: str) -> None:
    """Focus the input, clear it and type `text` key by key, then enter."""
    widget = pilot.app.screen.query_one(selector, Input)
    widget.focus()
    await pilot.press("home", "ctrl+k", *text, "enter")
    await settle(pilot)


async def test_values_key_opens_a_parameter_as_pytorch_prints_it() -> None:
    app = lab_app("shared_mlp")
    async with app.run_test(size=SIZE) as pilot:
        view = (await open_view(pilot, "2")).view
        assert view is not None and view.text == "2.weight"
        assert view.title == "parameter 2.weight · the same tensor as 4.weight"
        assert view.info == "shape (8, 8)  dtype torch.float32  device cpu  requires_grad=True"
        assert view.values.startswith("Parameter containing:\ntensor([[")
        shown = str(app.screen.query_one("#values-text", Static).render())
        assert shown.startswith("Parameter containing:")
        assert view.grad is not None and view.grad.startswith("None")
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, ValuesScreen)


async def test_slice_typed_in_the_path_box_shows_that_slice() -> None:
    app = lab_app("shared_mlp")
    async with app.run_test(size=SIZE) as pilot:
        await open_view(pilot, "0")
        await type_in(pilot, "#values-path", "net[0].weight[0, :3]")
        view = values_screen(app).view
        assert view is not None and view.text == "0.weight[0, :3]"
        assert view.info.startswith("shape (3,)")
        assert view.values == repr(app.lab.model[0].weight.detach()[0, :3])
        await type_in(pilot, "#values-path", "0.weight[9, 0]")  # out of range: said, kept
        error = str(app.screen.query_one("#values-error", Static).render())
        assert "out of range" in error
        assert values_screen(app).view is view


async def test_heatmap_for_2d_histogram_otherwise_and_ctrl_t_switches() -> None:
    app = lab_app("shared_mlp")
    async with app.run_test(size=SIZE) as pilot:
        await open_view(pilot, "0")
        switcher = app.screen.query_one("#values-chart", ContentSwitcher)
        assert switcher.current == "values-heat"
        assert "heat map: dark" in str(app.screen.query_one("#values-stats", Static).render())
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert switcher.current == "values-hist"
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert switcher.current == "values-heat"
        values_screen(app)._chosen_chart = None  # a fresh choice for the 1-D bias
        await type_in(pilot, "#values-path", "0.bias")
        assert switcher.current == "values-hist"
        assert sum(values_screen(app).view.counts) == 8


async def test_chosen_input_on_pool2d_gives_the_seeds_figures(tmp_path: Path) -> None:
    app = block_app(tmp_path, "Pool2D", 'pool_h = 2, pool_w = 2, mode = "max"', "[1, 1]")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("X")
        await pilot.pause()
        assert isinstance(app.screen, InputPrompt)
        await type_in(pilot, "#prompt-input", "torch.arange(9.).view(3, 3)")
        assert not isinstance(app.screen, InputPrompt)
        lab = app.lab
        assert lab.input_shape == (3, 3) and lab.chosen_input is not None
        assert "x = torch.arange(9.0).view(3, 3)" in app.code_log.lines_text
        for _ in range(2):  # forward after forward: the same input, the same output
            await pilot.press("f")
            await settle(pilot)
            assert lab.layer_outputs[""].tolist() == [[4.0, 5.0], [7.0, 8.0]]
        table = app.query_one("#forward-table", DataTable)
        first = [str(c) for c in table.get_row_at(0)]
        assert first[:3] == ["x (input)", "torch.arange(9.).view(3, 3)", "(3, 3)"]
        assert lab.workspace().input == {"expression": "torch.arange(9.).view(3, 3)",
                                         "seed": 0}
        # enter on the model's row: its output's values, as PyTorch prints them
        table.focus()
        table.move_cursor(row=1)
        await pilot.press("enter")
        await settle(pilot)
        view = values_screen(app).view
        assert view is not None and view.kind == "output"
        assert view.values == repr(torch.tensor([[4.0, 5.0], [7.0, 8.0]]))
        await type_in(pilot, "#values-path", "x")
        assert values_screen(app).view.values == repr(torch.arange(9.0).view(3, 3))


async def test_corr2d_kernel_set_in_the_view_gives_19_25_37_43(tmp_path: Path) -> None:
    app = block_app(tmp_path, "Conv2D", "kernel_h = 2, kernel_w = 2")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("X")
        await type_in(pilot, "#prompt-input", "torch.arange(9.).view(3, 3)")
        await pilot.press("V")  # the root's first parameter: weight
        await settle(pilot)
        assert values_screen(app).view.text == "weight"
        await type_in(pilot, "#values-set", "= torch.tensor([[0., 1.], [2., 3.]])")
        await type_in(pilot, "#values-path", "bias")
        await type_in(pilot, "#values-set", "0")
        await pilot.press("escape")
        await pilot.press("f")
        await settle(pilot)
        assert app.lab.layer_outputs[""].tolist() == [[19.0, 25.0], [37.0, 43.0]]
        assert "    net.weight.copy_(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))" in \
            app.code_log.all_text


async def test_tab_goes_from_the_path_to_the_set_box_and_back() -> None:
    """Keys only, as a user does: tab reaches the set box at once (the scrolling boxes were in
    the tab order before it, and typed keys fell on them silently)."""
    app = lab_app("shared_mlp")
    async with app.run_test(size=SIZE) as pilot:
        await open_view(pilot, "2")
        assert app.focused is not None and app.focused.id == "values-path"
        await pilot.press("tab")
        assert app.focused is not None and app.focused.id == "values-set"
        await pilot.press(*"[0, 0] = 100", "enter")
        await settle(pilot)
        assert float(app.lab.model[2].weight.detach()[0, 0]) == 100.0
        await pilot.press("tab")
        assert app.focused is not None and app.focused.id == "values-path"


async def test_page_keys_scroll_a_long_tensor() -> None:
    app = lab_app("lenet")
    async with app.run_test(size=(80, 24)) as pilot:
        view = await open_view(pilot, "fc1")
        box = view.query_one("#values-text-box")
        assert box.max_scroll_y > 0
        await pilot.press("pagedown")
        await pilot.pause()
        assert box.scroll_y > 0
        await pilot.press("pageup")
        await pilot.pause()
        assert box.scroll_y == 0


async def test_set_on_a_tied_layer_shows_at_both_places_undo_and_redo() -> None:
    app = lab_app("shared_mlp")
    async with app.run_test(size=SIZE) as pilot:
        old = float(app.lab.model[4].weight.detach()[0, 0])
        await open_view(pilot, "2")
        await type_in(pilot, "#values-set", "[0, 0] = 100")
        said = str(app.screen.query_one("#values-error", Static).render())
        assert said.startswith("✓ 2.weight[0, 0] = 100 (also at 4.weight)")
        # the inspector highlights both places of the one tensor
        assert {"2.weight", "4.weight"} <= app.inspector._flashing["parameters"]
        assert "with torch.no_grad():\n    net[2].weight[0, 0] = 100" in app.code_log.lines_text
        await type_in(pilot, "#values-path", "net[4].weight[0, 0]")
        assert values_screen(app).view.values == repr(torch.tensor(100.0))
        await pilot.press("ctrl+z")
        await settle(pilot)
        assert float(app.lab.model[2].weight.detach()[0, 0]) == old
        assert values_screen(app).view.values == repr(torch.tensor(old))
        await pilot.press("ctrl+y")
        await settle(pilot)
        assert float(app.lab.model[2].weight.detach()[0, 0]) == 100.0
        assert values_screen(app).view.values == repr(torch.tensor(100.0))


async def test_a_bad_expression_shows_its_position_and_changes_nothing() -> None:
    app = lab_app("shared_mlp")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        lines = list(app.code_log.lines_text)
        before = app.lab.current_input.tensor.clone()
        await pilot.press("X")
        await type_in(pilot, "#prompt-input", "torch.ones(1, 4) + torch.load('x')")
        assert isinstance(app.screen, InputPrompt)  # still open, the text as typed
        error = str(app.screen.query_one("#prompt-error", Static).render())
        assert "torch.load" in error and "not allowed" in error
        assert error.splitlines()[-1].index("^") - 2 == \
            "torch.ones(1, 4) + torch.load('x')".index("torch.load")
        assert app.lab.chosen_input is None and app.code_log.lines_text == lines
        assert torch.equal(app.lab.current_input.tensor, before)
        await pilot.press("escape")
        weight = app.lab.model[0].weight.detach().clone()
        await open_view(pilot, "0")
        await type_in(pilot, "#values-set", "[0, 0] = exec(1)")
        error = str(app.screen.query_one("#values-error", Static).render())
        assert error.startswith("✗") and "exec" in error and "^" in error
        assert torch.equal(app.lab.model[0].weight.detach(), weight)
        assert app.code_log.lines_text == lines


async def test_state_dict_and_params_tabs_follow_the_selected_node() -> None:
    app = lab_app("shared_mlp")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.inspector.query_one("#inspector-tabs", TabbedContent).active = "state_dict"
        app.query_one("#run-tabs", TabbedContent).active = "tab-params"
        await pilot.pause()
        await select(pilot, "2")
        caption = app.inspector.query_one("#state-caption", Static)
        params = app.query_one("#params-table", DataTable)
        for _ in range(200):  # both follow once the cursor rests (FOLLOW_DELAY)
            if str(caption.render()).startswith("2.") and params.row_count == 2:
                break
            await pilot.pause(0.02)
        table = app.inspector.query_one("#state-table", DataTable)
        keys = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert keys == list(app.lab.model[2].state_dict()) == ["weight", "bias"]
        assert str(caption.render()).startswith("2.state_dict()")
        assert [str(params.get_row_at(i)[0]) for i in range(params.row_count)] == \
            ["2.weight", "2.bias"]
        # enter on a state_dict row: that tensor's values
        table.focus()
        table.move_cursor(row=1)
        await pilot.press("enter")
        await settle(pilot)
        assert values_screen(app).view.text == "2.bias"


async def test_meta_model_says_it_has_no_values() -> None:
    app = lab_app("gpt2_xl")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("V")
        await settle(pilot)
        view = values_screen(app).view
        assert view is not None and "has no values" in view.values
        assert "device meta" in view.info and view.heat == []


async def test_grad_cam_explains_the_chosen_image() -> None:
    app = lab_app("lenet")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shape = ", ".join(str(d) for d in (1, *app.lab.input_shape[1:]))
        await pilot.press("X")
        await type_in(pilot, "#prompt-input", f"torch.rand({shape})")
        await pilot.press("G")
        await settle(pilot)
        await pilot.pause()
        caption = str(app.query_one("#view-caption", Static).render())
        assert f"the chosen input x = torch.rand({shape})" in caption


async def test_values_view_at_80x24_is_usable() -> None:
    app = lab_app("shared_mlp")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_view(pilot, "2")
        assert screen.has_class("-narrow") and screen.has_class("-short")
        box = screen.query_one("#values-text-box", VerticalScroll)
        assert box.size.height >= 3 and box.size.width >= 70
        assert screen.query_one("#values-set", Input).region.bottom <= 23



async def test_values_key_on_a_table_row_opens_that_rows_tensor() -> None:
    app = lab_app("shared_mlp")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.inspector.query_one("#inspector-tabs", TabbedContent).active = "parameters"
        await pilot.pause()
        table = app.inspector.params_table
        table.focus()
        table.move_cursor(row=list(app.lab.snapshot.parameters).index("4.bias"))
        await pilot.press("V")
        await settle(pilot)
        assert values_screen(app).view.text == "4.bias"
