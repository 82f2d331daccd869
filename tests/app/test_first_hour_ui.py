"""What a newcomer meets in the first minutes: the palette's search puts the block they typed
first and highlights it, the palette starts on a common block, every dialog's footer shows
that dialog's keys, and the loss plot's step axis has whole steps."""

from __future__ import annotations

import pytest
from app_helpers import lab_app, select, settle
from textual.pilot import Pilot
from textual.widgets import Footer

from tuilab.app.app import MainScreen
from tuilab.app.widgets.loss_plot import step_ticks
from tuilab.app.widgets.palette import search

SIZE = (120, 40)


@pytest.mark.parametrize(("query", "first"), [
    ("sigmoid", "Sigmoid"), ("Sigmoid", "Sigmoid"), ("linear", "Linear"), ("relu", "ReLU"),
    ("conv2d", "Conv2d"), ("lstm", "LSTM"),
])
def test_search_ranks_the_exact_name_first(query: str, first: str) -> None:
    assert search(query)[0].name == first


def test_search_ranks_prefixes_before_matches_elsewhere() -> None:
    names = [b.name for b in search("sig")]
    assert names[0] == "Sigmoid" and names.index("Sigmoid") < names.index("SiLU")


async def test_the_palette_starts_on_linear_and_a_search_highlights_its_best_match() -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.palette.selected_block == "Linear"
        await pilot.press("slash", *"sigmoid")
        await pilot.pause()
        assert app.palette.selected_block == "Sigmoid"
        await pilot.press("enter", "enter")  # search done, then add the highlighted block
        await settle(pilot)
        assert app.lab is not None
        assert [c.block for c in app.lab.spec.root.children][-1] == "Sigmoid"


def _footer_text(pilot: Pilot) -> str:
    footer = pilot.app.screen.query_one(Footer)
    parts = []
    for key in footer.query("FooterKey"):
        parts.append(f"{getattr(key, 'key_display', '')} {getattr(key, 'description', '')}")
    return " | ".join(parts)


@pytest.mark.parametrize(("keys", "expected"), [
    (["question_mark"], ["Close"]),
    (["r"], ["Cancel"]),
    (["t"], ["Cancel", "Start"]),
    (["q"], ["Cancel", "Save", "Discard"]),
])
async def test_each_dialog_shows_its_own_keys(keys: list[str], expected: list[str]) -> None:
    app = lab_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.builder.focus()
        if keys == ["q"]:
            await select(pilot, "1")
            await pilot.press("d")  # unsaved work, so quitting asks
            await settle(pilot)
            assert app.lab is not None and app.lab.dirty
        await pilot.press(*keys)
        await pilot.pause()
        await pilot.pause()
        assert not isinstance(app.screen, MainScreen)
        text = _footer_text(pilot)
        for word in expected:
            assert word in text, (word, text)
        assert "Quit" not in text and "Add" not in text  # not the lab's keys


def test_loss_plot_ticks_are_whole_steps() -> None:
    assert step_ticks(1, 3) == [1, 2, 3]
    assert step_ticks(1, 10) == [2, 4, 6, 8, 10]
    assert step_ticks(1, 200) == [50, 100, 150, 200]
    assert step_ticks(1, 1) == [1]
    assert step_ticks(5, 1237) == [500, 1000]
    assert all(isinstance(t, int) for t in step_ticks(0, 7))
    assert step_ticks(float("nan"), 3) == []
