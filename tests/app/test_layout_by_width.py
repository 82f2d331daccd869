"""Laid out by width: at 80 columns the model's rows keep their name, shape and parameter
count (before, the three panes shared 80 columns and every row was cut), the footer keeps
Quit, and `v` shows the inspector in the model's place; at 120 the inspector gets the room the
palette's list took."""

from __future__ import annotations

import pytest
from app_helpers import lab_app, settle
from rich.cells import cell_len
from textual.widgets import Footer

from tuilab.app.app import TuilabApp
from tuilab.app.widgets.builder import ShapeInfo


def _rows_that_do_not_fit(app: TuilabApp) -> list[str]:
    """Rows whose label (indented as the tree draws it) is wider than the model pane."""
    builder = app.builder
    width = builder.scrollable_content_region.width
    cut = []
    for handle in builder._handles.values():
        depth, node = 0, handle
        while node.parent is not None:
            depth, node = depth + 1, node.parent
        needed = builder.guide_depth * depth + 2 + cell_len(handle.label.plain)
        if needed > width:
            cut.append(handle.label.plain)
    return cut


@pytest.mark.parametrize("preset", ["mlp", "lenet", "alexnet", "resnet", "lstm",
                                    "transformer", "inception"])
async def test_at_80x24_every_model_row_shows_its_name_shape_and_count(preset: str) -> None:
    app = lab_app(preset)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.summary is not None
        shapes: dict[str, ShapeInfo] = app.builder._shapes  # type: ignore[assignment]
        assert any(info.params for info in shapes.values())
        assert _rows_that_do_not_fit(app) == []
        assert app.builder.scrollable_content_region.width >= 70


async def test_at_80_columns_the_footer_keeps_quit_and_help() -> None:
    app = lab_app("lenet")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        footer = app.screen.query_one(Footer)
        keys = list(footer.query("FooterKey"))
        quit_key = next(k for k in keys if getattr(k, "description", "") == "Quit")
        assert quit_key.region.right <= 80 - 12  # left of the command palette's label
        assert quit_key.region.width > 0


async def test_v_shows_the_inspector_in_the_models_place_and_back() -> None:
    app = lab_app("lenet")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.builder.focus()
        assert not app.inspector.display or app.inspector.region.width == 0
        await pilot.press("v")
        await pilot.pause()
        assert app.inspector.region.width >= 70 and app.inspector.has_focus_within
        assert app.query_one("#builder-pane").region.width == 0
        await pilot.press("v")
        await pilot.pause()
        assert app.builder.has_focus and app.query_one("#builder-pane").region.width >= 70


async def test_the_palette_is_a_search_line_whose_list_opens_with_focus() -> None:
    app = lab_app("lenet")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.builder.focus()
        await pilot.pause()
        assert app.palette.options.region.height == 0
        assert app.inspector.region.width >= 55  # was 40: its columns were cut
        await pilot.press("slash")
        await pilot.pause()
        assert app.palette.options.region.height > 0
        await pilot.press("escape")
        await pilot.pause()
        assert app.builder.has_focus and app.palette.options.region.height == 0


async def test_at_160_columns_the_palette_list_stays_beside_the_model() -> None:
    app = lab_app("lenet")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        assert app.palette.options.region.height > 10
        assert app.palette.region.x == 0 and app.builder.region.x > app.palette.region.right - 1


def test_a_label_drawn_while_torch_is_still_importing_does_not_import_from_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The model relabels as the window lays out, while the loading thread may be inside
    `import torch`: importing from the half-made module there broke the load ("partially
    initialized module 'torch.nn.parameter'"). Until the import is done, the palette's
    defaults stand in."""
    import torch

    from tuilab.core.catalog import get_block, torch_loaded

    assert torch_loaded()
    monkeypatch.setattr(torch.__spec__, "_initializing", True)
    assert not torch_loaded()
    assert get_block("Linear").call_code({"in_features": 20, "out_features": 256}) == (
        "nn.Linear(20, 256)")
