"""`set_labels`: many tree labels changed with one repaint, and the repaint shows them."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tuilab.app.widgets.lean_tree import LeanTree
from tuilab.app.widgets.tree_labels import set_labels


class _TreeApp(App[None]):
    def compose(self) -> ComposeResult:
        tree: LeanTree[int] = LeanTree("root")
        for i in range(60):
            tree.root.add_leaf(f"leaf {i} training=True", data=i)
        tree.root.expand()
        yield tree


def _screen_lines(tree: LeanTree[int]) -> list[str]:
    return [tree.render_line(y).text for y in range(tree.size.height)]


async def test_new_labels_are_drawn_and_nothing_is_scheduled_per_node() -> None:
    app = _TreeApp()
    async with app.run_test(size=(40, 20)) as pilot:
        tree = app.query_one(LeanTree)
        await pilot.pause()
        assert any("leaf 3 training=True" in line for line in _screen_lines(tree))
        leaves = list(tree.root.children)
        calls: list[object] = []
        refreshes: list[object] = []
        call_later, refresh = tree.call_later, tree.refresh
        tree.call_later = lambda *a, **k: calls.append(a) or call_later(*a, **k)
        tree.refresh = lambda *a, **k: refreshes.append(a) or refresh(*a, **k)
        set_labels(tree, [(leaf, f"leaf {leaf.data} training=False") for leaf in leaves])
        assert calls == []  # set_label would have queued 60 callbacks
        assert len(refreshes) == 1  # one repaint for all of them
        await pilot.pause()
        lines = _screen_lines(tree)  # the line cache is keyed on each node's update count
        assert any("leaf 3 training=False" in line for line in lines)
        assert not any("training=True" in line for line in lines)
        assert str(leaves[59].label) == "leaf 59 training=False"  # off screen: label set too
        set_labels(tree, [])  # nothing to change: no repaint
        assert len(refreshes) == 1
