"""Relabel many tree nodes with one repaint, the rows on screen first.

`TreeNode.set_label` schedules a callback per node, and Textual's dispatcher runs
`inspect.signature` on each before walking the visible lines for it: toggling train/eval on
gpt2_xl relabels 488 inspector rows, and those callbacks were ~20 ms of the key's 55 ms.
Textual 8.2's node keeps its label in ``_label`` and its line cache is keyed on ``_updates``
(pyproject pins textual to 8.2.x), so this sets both and repaints the tree once (only the
rows on screen whose label changed: see ``LeanTree``).

Building the labels themselves is the rest of the cost (~25 µs a row: 12 ms of gpt2_xl's
train/eval), and only the ~25 rows on screen show in the key's frame. :class:`OnScreenFirst`
labels those at once and the others right after that frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.text import TextType
from textual.widgets.tree import TreeNode

from tuilab.app.widgets.lean_tree import LeanTree


def set_labels(tree: LeanTree, labels: Iterable[tuple[TreeNode, TextType]]) -> None:
    """Give each node its new label, then repaint the rows on screen whose label changed
    (nothing when none)."""
    changed = False
    for node, label in labels:
        node._label = tree.process_label(label)
        node._updates += 1
        changed = True
    if changed:
        tree.repaint_changed_lines()


LabelMaker = Callable[[], TextType]


class OnScreenFirst:
    """A tree's relabelling: nodes within a screen of the view now, the rest after the frame.

    A later label is made after the frame by the maker it was given (bound to the row of the
    moment it was set), and a node relabelled again before then keeps only its newest maker.
    ``settle`` (run after the next frame) sets every pending label.
    """

    def __init__(self, tree: LeanTree) -> None:
        self.tree = tree
        self._later: dict[int, tuple[TreeNode, LabelMaker]] = {}

    def set(self, changes: Iterable[tuple[TreeNode, LabelMaker]]) -> None:
        tree = self.tree
        lines_known = tree._tree_lines_cached is not None
        top = tree.scroll_offset.y
        height = max(tree.size.height, 1)
        now: list[tuple[TreeNode, TextType]] = []
        for node, make in changes:
            line = node._line  # -1: under a collapsed node, not drawn
            if not lines_known or (line >= 0 and top - height <= line < top + 2 * height):
                self._later.pop(node._id, None)
                now.append((node, make()))
                continue
            if not self._later:
                tree.call_after_refresh(self.settle)
            self._later[node._id] = (node, make)
        set_labels(tree, now)

    @property
    def pending(self) -> int:
        """Labels not set yet (they are, after the next frame)."""
        return len(self._later)

    def settle(self) -> None:
        later, self._later = self._later, {}
        set_labels(self.tree, [(node, make()) for node, make in later.values()])
