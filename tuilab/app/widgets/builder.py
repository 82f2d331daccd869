"""The builder: the model spec as a tree, each node with its output shape and parameters.

Spec nodes are immutable and an edit shares every untouched subtree with the previous spec, so
the tree is *reconciled*, not rebuilt: a subtree whose node object and path did not change is
skipped, a changed child list keeps its common prefix and suffix and replaces only the middle.
TreeNode handles are kept by spec node id, so an edit on a 1,000-node model touches a handful
of tree nodes. Shapes arrive later from a thread worker (:meth:`BuilderTree.set_shapes`) and
relabel only the nodes whose text changed.

A user's own module has no spec: :meth:`BuilderTree.show_modules` draws its module tree,
read-only, with the same labels.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets.tree import TreeNode

from tuilab.app.widgets.lean_tree import LeanTree
from tuilab.app.widgets.tree_labels import set_labels
from tuilab.core.safe_text import printable
from tuilab.core.spec import ModelSpec, Node, join

if TYPE_CHECKING:
    from tuilab.core.introspect import ModuleRow

LABEL_ARGS_WIDTH = 40
ERROR_WIDTH = 70
WEIGHTED_LIMIT = 256
"""Up to this many siblings, a reorder keeps the heaviest subtrees in place (O(n²))."""


@dataclass(frozen=True)
class ShapeInfo:
    """What the shape summary says about one path: output shape text and parameter count."""

    shape: str
    params: int | None = None
    shared: str | None = None
    """A weight this node holds that another node holds too (``weight ⇄ wte.weight``)."""


def stable_children(drawn: Sequence[str], wanted: Sequence[str],
                    weight: Callable[[str], int]) -> set[str]:
    """The drawn children that can stay where they are; the others are removed and re-added.

    Tree nodes cannot be moved, so a reordered child list costs a removal and a re-add per
    child that is out of place. The children kept are a heaviest increasing subsequence of
    the drawn order (by position in the wanted order), weighted by subtree size: moving a
    LayerNorm above a 48-layer block re-adds the LayerNorm, not the block. In the common case
    (an add or remove, the rest in the same order) every common child is kept at O(n) cost.
    """
    position = {key: index for index, key in enumerate(wanted)}
    common = [key for key in drawn if key in position]
    sequence = [position[key] for key in common]
    if all(a < b for a, b in itertools.pairwise(sequence)):
        return set(common)
    n = len(common)
    previous = [-1] * n
    if n <= WEIGHTED_LIMIT:
        weights = [max(1, weight(key)) for key in common]
        best = weights[:]
        for i in range(n):
            for j in range(i):
                if sequence[j] < sequence[i] and best[j] + weights[i] > best[i]:
                    best[i] = best[j] + weights[i]
                    previous[i] = j
        last = max(range(n), key=best.__getitem__)
    else:  # patience sorting: the longest increasing subsequence, O(n log n)
        tails: list[int] = []
        tail_index: list[int] = []
        for i, value in enumerate(sequence):
            slot = bisect.bisect_left(tails, value)
            if slot == len(tails):
                tails.append(value)
                tail_index.append(i)
            else:
                tails[slot] = value
                tail_index[slot] = i
            previous[i] = tail_index[slot - 1] if slot else -1
        last = tail_index[-1]
    keep: set[str] = set()
    while last != -1:
        keep.add(common[last])
        last = previous[last]
    return keep


def _size(node: Node) -> int:
    return 1 + sum(_size(child) for child in node.children)


MIN_ARGS_WIDTH = 12
"""A row short of room cuts its arguments down to this, never its name, shape or count."""


def _call_text(node: Node, width: int = LABEL_ARGS_WIDTH) -> str:
    try:
        text = node.definition.call_code(node.args)
    except Exception:  # an unknown block would have been refused earlier; never crash a label
        return node.block
    text = text.removeprefix("nn.")
    width = max(MIN_ARGS_WIDTH, min(width, LABEL_ARGS_WIDTH))
    if len(text) > width:
        text = text[: width - 2] + "…)"
    return text


class BuilderTree(LeanTree[str]):
    """The spec tree; node data is the spec node id (or the module path, read-only)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "app.edit_args", "Edit args", show=False),
        Binding("shift+up", "app.move_up", "Move up", show=False),
        Binding("shift+down", "app.move_down", "Move down", show=False),
    ]

    DEFAULT_CSS = """
    BuilderTree { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("loading PyTorch…", id=id)
        self.guide_depth = 3
        self._handles: dict[str, TreeNode[str]] = {}
        """Tree node by spec node id (or by path in read-only mode)."""
        self._paths: dict[str, str] = {}
        """Spec node id -> its path in the current spec."""
        self._spec_nodes: dict[str, Node] = {}
        """Spec node id -> the spec node currently drawn there."""
        self._labels: dict[str, str] = {}
        """Spec node id -> the plain text of its current label (to skip unchanged relabels)."""
        self._spec_root: Node | None = None
        self._rows: Mapping[str, ModuleRow] | None = None
        self._shapes: Mapping[str, ShapeInfo] = {}
        self._error_path: str | None = None
        self._error_message = ""
        self.read_only = False
        self._model_name = ""
        self.marked: str | None = None
        """Path of the node marked with `m` (to share it elsewhere)."""
        self._label_width = 0
        """Columns a row may use (0 before the first layout: arguments are not cut)."""

    # --- what is selected -----------------------------------------------------------------
    @property
    def selected_path(self) -> str | None:
        node = self.cursor_node
        if node is None or node.data is None:
            return None
        return self._paths.get(node.data)

    def path_handle(self, path: str) -> TreeNode[str] | None:
        for key, value in self._paths.items():
            if value == path:
                return self._handles.get(key)
        return None

    def select_path(self, path: str | None) -> None:
        """Put the cursor on `path` now, laying the tree's lines out for it if they changed:
        the next key may come before any frame (a burst of `d`), and must find it there."""
        if path is None:
            return
        handle = self.path_handle(path)
        if handle is None:
            return
        parent = handle.parent
        while parent is not None:
            parent.expand()
            parent = parent.parent
        self._tree_lines  # noqa: B018 - builds the lines, so the node knows its line
        self.move_cursor(handle)

    # --- spec mode ------------------------------------------------------------------------
    def show_spec(self, spec: ModelSpec, *, new_model: bool = False) -> None:
        """Draw `spec`'s tree, touching only what changed since the last call.

        `new_model` (a preset or file was loaded) draws it afresh, root expanded: nothing of
        the last model's tree (a collapsed root, a marked node) carries over.
        """
        root = spec.root
        self.read_only = False
        if spec.name != self._model_name:
            self._model_name = spec.name
            self._labels.pop(root.id, None)
        old = self._spec_root
        self._spec_root = root
        if new_model:
            self.marked = None
        if old is None or self._rows is not None or new_model:
            self._rows = None
            self._full(root)
            return
        refs: list[str] = []
        self._reconcile(self.root, old, root, "", refs)
        for node_id in refs:
            self._relabel(node_id)
        if self.marked is not None and self.marked not in self._paths.values():
            self.marked = None

    def _full(self, root: Node) -> None:
        self.clear()
        self._handles.clear()
        self._paths.clear()
        self._spec_nodes.clear()
        self._labels.clear()
        self._register(self.root, root, "")
        refs: list[str] = []
        for child in root.children:
            self._add_subtree(self.root, child, join("", child.name), None, refs)
        for node_id in refs:
            self._relabel(node_id)
        self.root.expand()
        self.move_cursor(self.root)

    def _register(self, handle: TreeNode[str], node: Node, path: str) -> None:
        handle.data = node.id
        self._handles[node.id] = handle
        self._paths[node.id] = path
        self._spec_nodes[node.id] = node
        self._relabel(node.id)

    def _forget(self, handle: TreeNode[str], *, deep: bool = True) -> None:
        """Drop the registrations that point at `handle` (and its subtree).

        Keyed by handle, not by spec node: a node moved elsewhere in the same edit may already
        be registered at its new handle, which must survive the old one's removal.
        """
        key = handle.data
        if key is not None and self._handles.get(key) is handle:
            del self._handles[key]
            self._paths.pop(key, None)
            self._spec_nodes.pop(key, None)
            self._labels.pop(key, None)
        if deep:
            for child in handle.children:
                self._forget(child)

    def _add_subtree(self, parent: TreeNode[str], node: Node, path: str,
                     before: TreeNode[str] | None, refs: list[str]) -> None:
        if node.children or node.is_container:
            handle = parent.add("", data=node.id, before=before, expand=True)
        else:
            handle = parent.add_leaf("", data=node.id, before=before)
        self._register(handle, node, path)
        if node.ref is not None:
            refs.append(node.id)
        for child in node.children:
            self._add_subtree(handle, child, join(path, child.name), None, refs)

    def _reconcile(self, handle: TreeNode[str], old: Node, new: Node, path: str,
                   refs: list[str]) -> None:
        if old is new and self._paths.get(new.id) == path:
            return
        if old.id != new.id:
            self._forget(handle, deep=False)
        self._register(handle, new, path)
        if new.ref is not None:
            refs.append(new.id)
        if new.is_container and not handle.allow_expand:
            handle.allow_expand = True
        old_children, new_children = old.children, new.children
        kids = list(handle.children)
        if len(kids) != len(old_children):  # out of step: redraw this subtree's children
            for kid in kids:
                self._forget(kid)
            handle.remove_children()
            for child in new_children:
                self._add_subtree(handle, child, join(path, child.name), None, refs)
            return
        old_by_id = {child.id: (child, kid)
                     for child, kid in zip(old_children, kids, strict=True)}
        keep = stable_children([c.id for c in old_children], [c.id for c in new_children],
                               lambda key: _size(old_by_id[key][0]))
        for child, kid in zip(old_children, kids, strict=True):
            if child.id not in keep:
                self._forget(kid)
                kid.remove()
        for child in new_children:
            if child.id in keep:
                old_child, kid = old_by_id[child.id]
                self._reconcile(kid, old_child, child, join(path, child.name), refs)
        to_add: list[tuple[Node, TreeNode[str] | None]] = []
        next_kept: TreeNode[str] | None = None
        for child in reversed(new_children):
            if child.id in keep:
                next_kept = old_by_id[child.id][1]
            else:
                to_add.append((child, next_kept))
        for child, before in reversed(to_add):
            self._add_subtree(handle, child, join(path, child.name), before, refs)

    # --- read-only module mode ------------------------------------------------------------
    def show_modules(self, rows: Mapping[str, ModuleRow]) -> None:
        """Draw a user's own module (no spec): its module tree, read-only."""
        self.read_only = True
        self._spec_root = None
        self._rows = rows
        self.clear()
        self._handles.clear()
        self._paths.clear()
        self._spec_nodes.clear()
        self._labels.clear()

        def add(parent: TreeNode[str] | None, path: str, depth: int) -> None:
            row = rows[path]
            if parent is None:
                handle = self.root
                handle.data = path
            elif row.children:
                handle = parent.add("", data=path, expand=depth < 2)
            else:
                handle = parent.add_leaf("", data=path)
            self._handles[path] = handle
            self._paths[path] = path
            self._relabel(path)
            for child in row.children:
                child_path = join(path, child)
                if child_path in rows:
                    add(handle, child_path, depth + 1)

        if "" in rows:
            add(None, "", 0)
        self.root.expand()
        self.move_cursor(self.root)

    # --- labels ---------------------------------------------------------------------------
    def set_shapes(self, shapes: Mapping[str, ShapeInfo], error_path: str | None,
                   error_message: str) -> None:
        """Show a new shape summary; relabels only the nodes whose text changed."""
        self._shapes = shapes
        self._error_path = error_path
        self._error_message = error_message
        set_labels(self, [change for key in list(self._handles)
                          if (change := self._label_change(key)) is not None])

    @property
    def error(self) -> tuple[str | None, str]:
        return self._error_path, self._error_message

    def _relabel(self, key: str) -> None:
        change = self._label_change(key)
        if change is not None:
            change[0].set_label(change[1])

    def _label_change(self, key: str) -> tuple[TreeNode[str], Text] | None:
        """The node and its new label, when its text changed (None: keep the drawn one)."""
        label = self._label(key)
        plain = label.plain + repr(label.spans)
        if self._labels.get(key) == plain:
            return None
        self._labels[key] = plain
        handle = self._handles.get(key)
        return None if handle is None else (handle, label)

    def _label(self, key: str) -> Text:
        path = self._paths.get(key, "")
        text = Text(no_wrap=True, overflow="ellipsis")
        if self._rows is not None:
            row = self._rows.get(path)
            name = path.rpartition(".")[2] or "(model)"
            text.append(printable(name), style="bold")
            text.append("  ")
            text.append(row.cls if row is not None else "?", style="cyan")
        else:
            node = self._spec_nodes.get(key)
            if node is None:
                return text
            text.append(printable(node.name or self._model_name or "(model)"), style="bold")
            text.append("  ")
            if node.ref is not None:
                target = self._paths.get(node.ref, "?")
                text.append(f"⇄ shares {target}", style="magenta")
            else:
                text.append(_call_text(node, self._args_room(path, text.cell_len)),
                            style="cyan")
            if node.frozen:
                text.append("  ❄ frozen", style="blue")
        if path == self.marked:
            text.append("  ◆ marked", style="yellow")
        info = self._shapes.get(path)
        if info is not None:
            if info.shape:
                text.append(f"  → {info.shape}", style="green")
            if info.params:
                text.append(f"  {info.params:,}", style="dim")
            if info.shared:
                text.append(f"  ⇄ {info.shared}", style="magenta")
        if self._error_path is not None and path == self._error_path:
            message = self._error_message.replace("\n", " ")
            if len(message) > ERROR_WIDTH:
                message = message[: ERROR_WIDTH - 1] + "…"
            text.stylize("bold red")
            text.append(f"  ✗ {message}", style="bold red")
        return text

    def _args_room(self, path: str, used: int) -> int:
        """Columns left for a row's arguments once its indent, name, shape and count are
        drawn (the arguments give way first on a narrow screen)."""
        width = self._label_width
        if width <= 0:
            return LABEL_ARGS_WIDTH
        depth = path.count(".") + 1 if path else 0
        info = self._shapes.get(path)
        tail = 0
        if info is not None:
            tail += len(f"  → {info.shape}") if info.shape else 0
            tail += len(f"  {info.params:,}") if info.params else 0
        return width - self.guide_depth * depth - 2 - used - tail

    def on_resize(self) -> None:
        """Relabel for the new width: rows cut their arguments to keep shape and count."""
        width = self.scrollable_content_region.width
        if width != self._label_width:
            self._label_width = width
            set_labels(self, [change for key in list(self._handles)
                              if (change := self._label_change(key)) is not None])

    def relabel_path(self, path: str | None) -> None:
        if path is None:
            return
        for key, value in self._paths.items():
            if value == path:
                self._relabel(key)
