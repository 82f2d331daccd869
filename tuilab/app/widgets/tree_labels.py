"""Relabel many tree nodes with one repaint.

`TreeNode.set_label` schedules a callback per node, and Textual's dispatcher runs
`inspect.signature` on each before walking the visible lines for it: toggling train/eval on
gpt2_xl relabels 488 inspector rows, and those callbacks were ~20 ms of the key's 55 ms.
Textual 8.2's node keeps its label in ``_label`` and its line cache is keyed on ``_updates``
(pyproject pins textual to 8.2.x), so this sets both and repaints the tree once.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import TextType
from textual.widgets import Tree
from textual.widgets.tree import TreeNode


def set_labels(tree: Tree, labels: Iterable[tuple[TreeNode, TextType]]) -> None:
    """Give each node its new label, then repaint the tree once (nothing when none)."""
    changed = False
    for node, label in labels:
        node._label = tree.process_label(label)
        node._updates += 1
        changed = True
    if changed:
        tree.refresh()
