"""LeanTree repaints only the rows that changed and reuses lines that only moved; what it
shows must always be exactly what Textual's own Tree draws for the same state."""

from __future__ import annotations

import random

import pytest
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widgets import Input, Tree

from tuilab.app.widgets.lean_tree import LeanTree
from tuilab.app.widgets.tree_labels import set_labels


class _TreeApp(App[None]):
    CSS = "LeanTree { height: 12; } Input { height: 3; }"

    def __init__(self, leaves: int = 0) -> None:
        super().__init__()
        self.leaves = leaves

    def compose(self) -> ComposeResult:
        tree: LeanTree[int] = LeanTree("root")
        tree.root.expand()
        for i in range(self.leaves):
            tree.root.add_leaf(f"leaf {i}", data=i)
        yield tree
        yield Input()


def _cells(strips: list) -> list[list[tuple]]:
    """Text, style and mouse metadata of every segment: what a terminal and a click see."""
    return [[(seg.text, seg.style, seg.style.meta if seg.style else None) for seg in strip]
            for strip in strips]


def _shown_and_fresh(tree: LeanTree) -> tuple[list, list]:
    """The rows as the widget holds them after its partial repaints, and the same rows drawn
    from nothing by Textual's own ``Tree._render_line`` (every cache emptied first)."""
    region = Region(0, 0, tree.size.width, tree.size.height)
    shown = _cells(tree.render_lines(region))
    tree._styles_cache.clear()
    tree._line_cache.clear()
    tree._forget_drawn()
    fresh = _cells(tree.render_lines(region))
    return shown, fresh


def _walk(node) -> list:
    return [node, *(n for child in node.children for n in _walk(child))]


def _random_change(tree: LeanTree, app: _TreeApp, rng: random.Random, serial: list[int]) -> str:
    nodes = _walk(tree.root)
    node = rng.choice(nodes)
    kind = rng.choice(["add", "add", "add", "insert", "remove", "remove", "expand", "collapse",
                       "label", "labels", "cursor", "cursor", "hover", "focus", "scroll",
                       "clear"])
    serial[0] += 1
    if kind == "add":
        node.add(f"n{serial[0]}", data=serial[0], expand=rng.random() < 0.5)
    elif kind == "insert" and node.children:
        node.add_leaf(f"first {serial[0]}", data=serial[0], before=0)
    elif kind == "remove" and not node.is_root:
        node.remove()
    elif kind == "expand":
        node.expand()
    elif kind == "collapse" and not node.is_root:
        node.collapse()
    elif kind == "label":
        node.set_label(f"relabelled {serial[0]}" + "!" * rng.randrange(3))
    elif kind == "labels":
        set_labels(tree, [(n, f"bulk {serial[0]}") for n in rng.sample(nodes, min(4, len(nodes)))])
    elif kind == "cursor":
        tree.cursor_line = rng.randrange(-1, max(tree.last_line, 0) + 1)
    elif kind == "hover":
        tree.hover_line = rng.randrange(-1, max(tree.last_line, 0) + 1)
    elif kind == "focus":
        (tree if rng.random() < 0.5 else app.query_one(Input)).focus()
    elif kind == "scroll":
        tree.scroll_to(y=rng.randrange(0, 8), animate=False)
    elif kind == "clear" and rng.random() < 0.3:
        tree.clear()
    return kind


@pytest.mark.parametrize("seed", range(3))
async def test_what_is_shown_after_random_changes_is_what_textual_draws(seed: int) -> None:
    rng = random.Random(seed)
    app = _TreeApp(leaves=3)
    async with app.run_test(size=(40, 16)) as pilot:
        tree = app.query_one(LeanTree)
        tree.focus()
        await pilot.pause()
        serial = [0]
        for step in range(70):
            kinds = [_random_change(tree, app, rng, serial) for _ in range(rng.randrange(1, 4))]
            await pilot.pause()
            shown, fresh = _shown_and_fresh(tree)
            assert shown == fresh, f"step {step} after {kinds}"


async def test_a_row_added_repaints_the_rows_that_changed_and_no_layout() -> None:
    """A row added at the end of 20 that fit: Textual's Tree lays the screen out again and
    draws all 22 rows; here only the new row, the one above (its guide turns from └ to ├) and
    the parent (Textual moves its version on an add) are drawn, and nothing is laid out."""
    from textual._compositor import Compositor

    app = _TreeApp(leaves=20)
    async with app.run_test(size=(40, 30)) as pilot:
        tree = app.query_one(LeanTree)
        tree.styles.height = 25
        await pilot.pause()
        assert tree.last_line == 20  # root + 20 leaves, all on screen
        drawn: list[int] = []
        reflows: list[int] = []
        real_draw, real_reflow = Tree._render_line, Compositor.reflow

        def draw(self: Tree, y: int, *args: object) -> object:
            drawn.append(y)
            return real_draw(self, y, *args)

        def reflow(self: Compositor, *args: object) -> object:
            reflows.append(1)
            return real_reflow(self, *args)

        Tree._render_line, Compositor.reflow = draw, reflow
        try:
            tree.root.add_leaf("leaf 20", data=20)
            await pilot.pause()
        finally:
            Tree._render_line, Compositor.reflow = real_draw, real_reflow
        assert sorted(y for y in drawn if y <= 21) == [0, 20, 21]
        assert reflows == []
        shown, fresh = _shown_and_fresh(tree)
        assert shown == fresh
        assert "leaf 20" in "".join(text for text, *_ in shown[21])


async def test_rows_that_only_moved_are_reused_with_their_new_line_number() -> None:
    """A row inserted at the top moves every row down: each is reused, and its mouse
    metadata names its new line, so a click lands on the node drawn there."""
    app = _TreeApp(leaves=8)
    async with app.run_test(size=(40, 16)) as pilot:
        tree = app.query_one(LeanTree)
        await pilot.pause()
        drawn: list[int] = []
        real_draw = Tree._render_line

        def draw(self: Tree, y: int, *args: object) -> object:
            drawn.append(y)
            return real_draw(self, y, *args)

        Tree._render_line = draw
        try:
            tree.root.add_leaf("new first", data=-1, before=0)
            await pilot.pause()
        finally:
            Tree._render_line = real_draw
        # drawn from nothing: the new row, and the parent (Textual moves its version on an add)
        assert [y for y in drawn if y <= 9] == [0, 1]
        shown, fresh = _shown_and_fresh(tree)
        assert shown == fresh
        for y in range(1, 10):
            metas = {meta.get("line") for _, _, meta in shown[y] if meta}
            assert metas == {y}
        await pilot.click(LeanTree, offset=(6, 5))
        assert tree.cursor_node is not None and tree.cursor_node.data == 3


async def test_the_rows_fill_the_viewport_and_scroll_only_past_it_as_it_shrinks_and_grows(
        ) -> None:
    """The virtual height is at least the viewport's (a row more or less then changes no
    geometry); when the tree is made smaller the padding shrinks with it, so no scrollbar
    appears over rows that fit, and one does when they stop fitting."""
    app = _TreeApp(leaves=5)
    async with app.run_test(size=(40, 30)) as pilot:
        tree = app.query_one(LeanTree)
        tree.styles.height = 20
        await pilot.pause()
        assert tree.virtual_size.height == 20 and not tree.show_vertical_scrollbar
        tree.styles.height = 8  # 6 rows (root + 5) still fit
        await pilot.pause()
        assert tree.virtual_size.height == 8 and not tree.show_vertical_scrollbar
        for i in range(5, 12):
            tree.root.add_leaf(f"leaf {i}", data=i)
        await pilot.pause()
        assert tree.virtual_size.height == 13 and tree.show_vertical_scrollbar
        tree.styles.height = 20
        await pilot.pause()
        assert tree.virtual_size.height == 20 and not tree.show_vertical_scrollbar
        shown, fresh = _shown_and_fresh(tree)
        assert shown == fresh


async def test_the_padding_follows_a_shrunk_viewport_in_the_same_layout_pass() -> None:
    """The frame drawn right after a reflow that made the tree smaller arranges scrollbars
    from the virtual size before the tree's Resize event is handled: the padding must already
    fit the new viewport then (a loaded machine showed a scrollbar over rows that fit)."""
    from textual.geometry import Size

    app = _TreeApp(leaves=5)
    async with app.run_test(size=(40, 30)) as pilot:
        tree = app.query_one(LeanTree)
        tree.styles.height = 20
        await pilot.pause()
        assert tree.virtual_size.height == 20
        width = tree.size.width
        tree._size_updated(Size(width, 8), tree.virtual_size, Size(width, 8))  # as a reflow does
        assert tree.virtual_size.height == 8
