"""The inspector: what PyTorch keeps on the live module, updated in place after every change.

`_modules` is a Tree whose node handles are kept by module path; `_parameters` and `_buffers`
are DataTables whose row keys are the tensor keys. :meth:`Inspector.apply` takes a
``LabUpdate`` and touches only the rows its diff names (add, remove, update), so an edit on a
model with thousands of rows costs milliseconds instead of a full rebuild (~0.3 s for 10,000
rows). Changed rows are highlighted for about a second.

The other tabs (`state_dict`, hooks, `print(model)`, the exported code) cost more to compute and
are rarely looked at during an edit, so they are refreshed only while visible.

No PyTorch here: rows come from the lab's snapshot (plain data); values and the lazy tabs come
through the lab.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from rich.cells import cell_len
from rich.syntax import Syntax
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.geometry import Region
from textual.timer import Timer
from textual.widgets import DataTable, Static, TabbedContent, TabPane
from textual.widgets.data_table import ColumnKey, RowKey
from textual.widgets.tree import TreeNode

from tuilab.app.widgets.lean_tree import LeanTree
from tuilab.app.widgets.tree_labels import LabelMaker, OnScreenFirst
from tuilab.core.safe_text import printable

if TYPE_CHECKING:
    from typing_extensions import Self

    from tuilab.core.introspect import ModuleRow, Snapshot, TensorRow
    from tuilab.core.lab import Lab, LabUpdate

FLASH_SECONDS = 1.0
STATS_LIMIT = 1 << 16
"""Buffers with more elements than this show their value summary only when asked."""
FOLLOW_DELAY = 0.15
"""Seconds the builder's cursor rests on a node before the state_dict tab follows it."""
REBUILD_FRACTION = 0.5
"""Remove-heavy diffs (more than half of a big table) refill the table: DataTable.remove_row
re-indexes every row, so many removals one by one cost O(n²)."""

PARAM_COLUMNS = ("key", "shape", "dtype", "device", "requires_grad", "numel", "shared")
BUFFER_COLUMNS = ("key", "value", "shape", "dtype", "device", "persistent")
"""The value summary comes second: it is what changes (BatchNorm's running stats)."""
TAB_IDS = ("modules", "parameters", "buffers", "state_dict", "hooks", "print", "code")


# --- plain-data helpers (no PyTorch) --------------------------------------------------------
def shape_text(shape: Iterable[int]) -> str:
    dims = tuple(shape)
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def stats_text(stats: Any) -> str:
    """One line for a TensorStats (duck-typed: numel, mean, std, min, max)."""
    if stats is None:
        return "—"
    if stats.numel == 1:
        return f"= {stats.mean:.6g}"
    return (f"mean {stats.mean:.4g}  std {stats.std:.4g}  "
            f"[{stats.min:.4g}, {stats.max:.4g}]")


def tensor_stats_for(lab: Lab, row: TensorRow) -> Any:
    """The lab's value summary of one parameter or buffer (None where it has no values)."""
    return lab.tensor_stats(row.key, kind=row.kind)


def module_label(row: ModuleRow, style: Any = None) -> Text:
    """`name  Class  training=…  params  hooks  ⇄ shared with …`, highlighted with `style`."""
    name = row.path.rpartition(".")[2] or "(model)"
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(printable(name), style="bold")  # a user module may name it anything
    text.append("  ")
    text.append(row.cls, style="cyan")
    text.append("  ")
    text.append("training=True" if row.training else "training=False",
                style="green" if row.training else "yellow")
    if row.own_params:
        text.append(f"  {row.own_params:,} params", style="dim")
    if row.hook_count:
        text.append(f"  {row.hook_count} hooks", style="magenta")
    if row.shared_with:
        text.append(f"  ⇄ shared with {', '.join(row.shared_with)}", style="magenta")
    if row.tied_params:
        text.append(f"  ⇄ {', '.join(row.tied_params)}", style="magenta")
    if style:
        text.stylize(style)
    return text


def param_cells(row: TensorRow) -> tuple[str, ...]:
    return (
        row.key,
        "uninitialized" if row.lazy else shape_text(row.shape),
        row.dtype,
        row.device,
        str(row.requires_grad),
        f"{row.numel:,}",
        ("shared with " + ", ".join(row.shared_with)) if row.shared_with else "",
    )


def buffer_cells(row: TensorRow, value: str) -> tuple[str, ...]:
    return (
        row.key,
        value,
        "uninitialized" if row.lazy else shape_text(row.shape),
        row.dtype,
        row.device,
        str(row.persistent),
    )


class InspectorTable(DataTable[Any]):
    """A DataTable that can change many cells with one refresh.

    `DataTable.update_cell` refreshes the widget on every call (~40 µs each); freezing a
    48-layer block changes 576 rows, so cells are set here and refreshed once by the caller.
    """

    def __init__(self, columns: tuple[str, ...], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.columns_keys = columns
        """Column keys, in order (the column labels are the same words)."""

    def on_mount(self) -> None:
        for column in self.columns_keys:
            self.add_column(column, key=column)

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Self:
        """No relayout asked while the table is not laid out (its tab is hidden).

        A row added or removed asks Textual to lay the whole screen out again (3-4 ms at
        160×48 on a 2-core machine), in the frame of the edit that changed the row, even for
        a table on a hidden tab, which that layout leaves out anyway. Its tab is laid out
        when it is shown, with the rows it has then.
        """
        if layout and not self.region:
            layout = False
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def has_row(self, key: str) -> bool:
        return RowKey(key) in self._row_locations

    def row_values(self, key: str) -> list[str]:
        """The row's cells as plain strings."""
        return [str(cell) for cell in self.get_row(key)]

    def set_cells(self, key: str, values: Mapping[str, Any]) -> None:
        """Set some cells of one row without a refresh (call `refresh()` once after).

        Columns only grow here: DataTable's own width update re-measures the whole column
        for every cell that got narrower, O(rows) per cell — 87 s for one undo of 576 rows.
        """
        row = self._data[RowKey(key)]
        for column, value in values.items():
            column_key = ColumnKey(column)
            row[column_key] = value
            width = cell_len(str(value))
            info = self.columns[column_key]
            if width > info.content_width:
                info.content_width = width
                self._require_update_dimensions = True
        self._update_count += 1


class ModulesTree(LeanTree[str]):
    """`_modules` as a tree; node handles kept by module path so a diff touches few nodes."""

    DEFAULT_CSS = """
    ModulesTree { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("(model)", id=id)
        self.guide_depth = 2
        self.handles: dict[str, TreeNode[str]] = {}
        """Tree node of every module path drawn."""
        self.rows: Mapping[str, ModuleRow] = {}
        self.relabel = OnScreenFirst(self)

    def fill(self, rows: Mapping[str, ModuleRow]) -> None:
        """Draw all rows (a new model). Only the top two levels start expanded."""
        self.clear()
        self.handles.clear()
        self.rows = rows
        if "" not in rows:
            return
        self.root.data = ""
        self.root.set_label(module_label(rows[""]))
        self.handles[""] = self.root
        for path, row in rows.items():
            if path == "":
                continue
            self._add(path, row, None)
        self.root.expand()

    def _add(self, path: str, row: ModuleRow, before: TreeNode[str] | None,
             style: Any = None) -> TreeNode[str]:
        parent = self.handles[path.rpartition(".")[0]]
        if not parent.allow_expand:
            parent.allow_expand = True
        depth = path.count(".") + 1
        label = module_label(row, style)
        if row.children:
            handle = parent.add(label, data=path, before=before, expand=depth < 2)
        else:
            handle = parent.add_leaf(label, data=path, before=before)
        self.handles[path] = handle
        return handle

    def apply(self, rows: Mapping[str, ModuleRow], added: Iterable[str],
              removed: Iterable[str], changed: Iterable[str], style: Any = None) -> list[str]:
        """Apply one table diff, labelling touched rows with `style`; returns their paths."""
        gone = set(removed)
        for path in sorted(gone, key=lambda p: p.count(".")):
            handle = self.handles.pop(path, None)
            if handle is None or path == "":
                continue
            if path.rpartition(".")[0] in gone:
                continue  # went with its parent
            handle.remove()
        if gone:
            for path in [p for p in self.handles if p not in rows]:
                self.handles.pop(path, None)  # descendants of removed nodes
        self.rows = rows
        flash: list[str] = []
        for path in added:
            if path in self.handles:
                continue  # drawn already, with a reordered parent
            parent_path = path.rpartition(".")[0]
            if parent_path not in self.handles:
                continue
            self._add(path, rows[path], self._next_sibling(path), style)
            flash.append(path)
        labels: list[tuple[TreeNode[str], LabelMaker]] = []
        for path in changed:
            handle = self.handles.get(path)
            if handle is None:
                continue
            labels.append((handle, partial(module_label, rows[path], style)))
            self._reorder(path, style)
            flash.append(path)
        self.relabel.set(labels)
        return flash

    def _next_sibling(self, path: str) -> TreeNode[str] | None:
        """The drawn sibling that `path` goes before (None: at the end)."""
        parent_path, _, leaf = path.rpartition(".")
        parent_row = self.rows.get(parent_path)
        if parent_row is None or leaf not in parent_row.children:
            return None
        names = parent_row.children
        dot = f"{parent_path}." if parent_path else ""
        for sibling in names[names.index(leaf) + 1:]:
            handle = self.handles.get(dot + sibling)
            if handle is not None:
                return handle
        return None

    def _reorder(self, path: str, style: Any) -> None:
        """Named children reordered (a move in a named container): re-add only those out of
        place, keeping the biggest subtrees where they are."""
        from tuilab.app.widgets.builder import stable_children

        handle = self.handles[path]
        row = self.rows[path]
        dot = f"{path}." if path else ""
        drawn = [child.data or "" for child in handle.children]
        wanted = [dot + name for name in row.children if dot + name in self.rows]
        if drawn == wanted:
            return
        sizes = {child.data: _count(child) for child in handle.children}
        keep = stable_children(drawn, wanted, lambda key: sizes.get(key, 1))
        for child in list(handle.children):
            if child.data not in keep:
                self._forget(child.data or "")
                child.remove()
        for key in wanted:
            if key not in self.handles:
                self._add_subtree(key, style)

    def _add_subtree(self, path: str, style: Any) -> None:
        self._add(path, self.rows[path], self._next_sibling(path), style)
        dot = f"{path}."
        for name in self.rows[path].children:
            if dot + name in self.rows:
                self._add_subtree(dot + name, None)

    def _forget(self, path: str) -> None:
        prefix = path + "."
        for key in [k for k in self.handles if k == path or k.startswith(prefix)]:
            self.handles.pop(key, None)

    def unflash(self, paths: Iterable[str]) -> None:
        self.relabel.set([(self.handles[path], partial(module_label, self.rows[path]))
                          for path in paths if path in self.handles and path in self.rows])


def _count(node: TreeNode[str]) -> int:
    return 1 + sum(_count(child) for child in node.children)


class Inspector(Vertical):
    """Tabs over the live module's internals; :meth:`apply` updates them in place."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"inspector--changed"}

    DEFAULT_CSS = """
    Inspector { height: 1fr; }
    Inspector > .inspector--changed { background: $success 40%; text-style: bold; }
    Inspector DataTable { height: 1fr; }
    Inspector TabPane { padding: 0; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lab: Lab | None = None
        self._flashing: dict[str, set[str]] = {"modules": set(), "parameters": set(),
                                               "buffers": set()}
        self._stale: set[str] = set(TAB_IDS[3:])
        self._stats_cache: dict[str, str] = {}
        self._flash_timer: Timer | None = None
        self._follow_timer: Timer | None = None
        self.node_path = ""
        """The builder's selected node: the state_dict tab shows its own state_dict()."""

    def compose(self) -> ComposeResult:
        with TabbedContent(id="inspector-tabs"):
            with TabPane("_modules", id="modules"):
                yield ModulesTree(id="modules-tree")
            with TabPane("_parameters", id="parameters"):
                yield InspectorTable(PARAM_COLUMNS, id="parameters-table")
            with TabPane("_buffers", id="buffers"):
                yield InspectorTable(BUFFER_COLUMNS, id="buffers-table")
            with TabPane("state_dict", id="state_dict"):
                yield Static("", id="state-caption", markup=False)
                yield InspectorTable(("key", "shape", "dtype"), id="state-table")
            with TabPane("hooks", id="hooks"):
                yield InspectorTable(("module", "dict", "id", "callable"), id="hooks-table")
            with TabPane("print(model)", id="print"), VerticalScroll():
                yield Static("", id="print-text", markup=False)
            with TabPane("code", id="code"), VerticalScroll():
                yield Static("", id="code-text")

    def on_mount(self) -> None:
        self.border_title = "inspector"

    # --- accessors (tests read these) -----------------------------------------------------
    @property
    def modules_tree(self) -> ModulesTree:
        return self.query_one("#modules-tree", ModulesTree)

    @property
    def params_table(self) -> InspectorTable:
        return self.query_one("#parameters-table", InspectorTable)

    @property
    def buffers_table(self) -> InspectorTable:
        return self.query_one("#buffers-table", InspectorTable)

    def row_text(self, table: str, key: str) -> list[str]:
        """The cells of one row as plain strings (`parameters` or `buffers`)."""
        data = self.params_table if table == "parameters" else self.buffers_table
        return data.row_values(key)

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active

    # --- filling --------------------------------------------------------------------------
    def load(self, lab: Lab) -> None:
        """A new lab (or a new model): draw everything from its snapshot."""
        self.lab = lab
        snap = lab.snapshot
        self._stats_cache.clear()
        self.modules_tree.fill(snap.modules)
        self._fill_params(snap)
        self._fill_buffers(snap)
        self._stale = set(TAB_IDS[3:])
        self._refresh_lazy()

    def _fill_params(self, snap: Snapshot) -> None:
        table = self.params_table
        table.clear()
        for key, row in snap.parameters.items():
            table.add_row(*param_cells(row), key=key)

    def _fill_buffers(self, snap: Snapshot) -> None:
        table = self.buffers_table
        table.clear()
        for key, row in snap.buffers.items():
            table.add_row(*buffer_cells(row, self._value(row)), key=key)

    def _value(self, row: TensorRow, *, fresh: bool = False) -> str:
        if not fresh and row.key in self._stats_cache:
            return self._stats_cache[row.key]
        if self.lab is None or row.numel > STATS_LIMIT or row.device == "meta" or row.lazy:
            text = "—"
        else:
            try:
                text = stats_text(tensor_stats_for(self.lab, row))
            except Exception as error:  # a value we cannot read is shown, never raised
                text = f"unreadable: {type(error).__name__}"
        self._stats_cache[row.key] = text
        return text

    # --- applying a diff ------------------------------------------------------------------
    def apply(self, update: LabUpdate, lab: Lab | None = None) -> None:
        """Apply ``update.diff`` in place and highlight the rows it touched."""
        if lab is not None:
            self.lab = lab
        snap = update.snapshot
        change = update.diff
        style = self.get_component_rich_style("inspector--changed", partial=True)
        modules = change.modules
        if not modules.empty:
            flashed = self.modules_tree.apply(snap.modules, modules.added, modules.removed,
                                              modules.changed, style)
            self._flashing["modules"].update(flashed)
        params = change.parameters
        if not params.empty:
            self._apply_table(self.params_table, snap.parameters, params,
                              lambda row: param_cells(row), "parameters", style)
        buffers = change.buffers
        if not buffers.empty:
            for key in buffers.removed:
                self._stats_cache.pop(key, None)
            for key in (*buffers.added, *buffers.changed):
                self._stats_cache.pop(key, None)
            self._apply_table(self.buffers_table, snap.buffers, buffers,
                              lambda row: buffer_cells(row, self._value(row)), "buffers", style)
        self._stale = set(TAB_IDS[3:])
        self._refresh_lazy()
        if any(self._flashing.values()):
            if self._flash_timer is not None:
                self._flash_timer.stop()
            self._flash_timer = self.set_timer(FLASH_SECONDS, self._unflash,
                                               name="inspector-unflash")

    def _apply_table(self, table: InspectorTable, rows: Mapping[str, TensorRow], change: Any,
                     cells: Callable[[TensorRow], tuple[str, ...]], name: str,
                     style: Any) -> None:
        flashing = self._flashing[name]
        if (len(change.removed) > 64
                and len(change.removed) > REBUILD_FRACTION * table.row_count):
            table.clear()
            added = set(change.added)
            for key, row in rows.items():
                values = cells(row)
                if key in added:
                    table.add_row(*(Text(v, style=style) for v in values), key=key)
                    flashing.add(key)
                else:
                    table.add_row(*values, key=key)
            return
        for key in change.removed:
            flashing.discard(key)
            with contextlib.suppress(Exception):  # already gone
                table.remove_row(key)
        for key in change.added:
            table.add_row(*(Text(v, style=style) for v in cells(rows[key])), key=key)
            flashing.add(key)
        for key in change.changed:
            values = cells(rows[key])
            old = table.row_values(key)
            table.set_cells(key, {
                column: Text(value, style=style)
                for index, (column, value) in enumerate(zip(table.columns_keys, values,
                                                            strict=True))
                if index == 0 or value != old[index]
            })
            flashing.add(key)
        if change.added:
            order = {key: index for index, key in enumerate(rows)}
            table.sort("key", key=lambda cell: order.get(str(cell), len(order)))
        table.refresh()

    def _unflash(self) -> None:
        self._flash_timer = None
        if self.lab is None:
            return
        snap = self.lab.snapshot
        self.modules_tree.unflash(self._flashing["modules"])
        for name, table, rows in (
            ("parameters", self.params_table, snap.parameters),
            ("buffers", self.buffers_table, snap.buffers),
        ):
            for key in self._flashing[name]:
                row = rows.get(key)
                if row is None or not table.has_row(key):
                    continue
                values = (param_cells(row) if name == "parameters"
                          else buffer_cells(row, self._value(row)))
                table.set_cells(key, dict(zip(table.columns_keys, values, strict=True)))
            table.refresh()
        for keys in self._flashing.values():
            keys.clear()

    # --- the lazy tabs --------------------------------------------------------------------
    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        event.stop()
        self._refresh_lazy()

    def _refresh_lazy(self) -> None:
        """Recompute the visible lazy tab if it is out of date; the others wait."""
        if self.lab is None:
            return
        tab = self.active_tab
        if tab not in self._stale:
            return
        self._stale.discard(tab)
        try:
            if tab == "state_dict":
                self._show_state_dict()
            elif tab == "hooks":
                self._show_hooks()
            elif tab == "print":
                self.query_one("#print-text", Static).update(self._model_repr())
            elif tab == "code":
                self._show_code()
        except Exception as error:  # a user's module may fail to print or export
            self.notify(f"{tab}: {error}", severity="error", markup=False)

    def _model_repr(self) -> str:
        assert self.lab is not None
        return self.lab.model_repr()

    def set_node(self, path: str | None) -> None:
        """Follow the builder's selection (the state_dict tab is redrawn when visible)."""
        path = path or ""
        if path == self.node_path:
            return
        self.node_path = path
        self._stale.add("state_dict")
        # after the cursor rests: gpt2_xl's `h` has 576 entries (~0.5 s here), and a key held
        # down would pay that on every row it passes
        if self._follow_timer is not None:
            self._follow_timer.stop()
        self._follow_timer = self.set_timer(FOLLOW_DELAY, self._refresh_lazy,
                                            name="inspector-follow")

    def _show_state_dict(self) -> None:
        assert self.lab is not None
        path = self.node_path
        try:
            rows = self.lab.state_dict_rows(path)
        except Exception:  # the node is gone (an edit removed it): the whole model's
            path, rows = "", self.lab.state_dict_rows()
        self.query_one("#state-caption", Static).update(
            f"{path}.state_dict()  (keys relative to {path})" if path
            else "net.state_dict()")
        table = self.query_one("#state-table", DataTable)
        table.clear()
        dot = f"{path}." if path else ""
        for key, shape, dtype in rows:
            table.add_row(key, shape_text(shape), dtype, key=dot + key)

    def flash(self, keys: Iterable[str]) -> None:
        """Highlight parameter / buffer rows and their modules for a moment: a set value
        shows at every path of a tied tensor (`2.weight` and `4.weight`)."""
        if self.lab is None:
            return
        snap = self.lab.snapshot
        style = self.get_component_rich_style("inspector--changed", partial=True)
        keys = [k for k in keys if k in snap.parameters or k in snap.buffers]
        modules = {key.rpartition(".")[0] for key in keys}
        self._flashing["modules"].update(self.modules_tree.apply(
            snap.modules, (), (), [m for m in modules if m in snap.modules], style))
        for name, table, rows in (("parameters", self.params_table, snap.parameters),
                                  ("buffers", self.buffers_table, snap.buffers)):
            for key in keys:
                if key in rows and table.has_row(key):
                    table.set_cells(key, {table.columns_keys[0]: Text(key, style=style)})
                    self._flashing[name].add(key)
            table.refresh()
        if self._flash_timer is not None:
            self._flash_timer.stop()
        self._flash_timer = self.set_timer(FLASH_SECONDS, self._unflash,
                                           name="inspector-unflash")

    def _show_hooks(self) -> None:
        assert self.lab is not None
        rows = self.lab.hook_rows()
        table = self.query_one("#hooks-table", DataTable)
        table.clear()
        for module, kind, hook_id, name in rows:
            table.add_row(module or "(model)", kind, str(hook_id), name)
        if not rows:
            table.add_row("(no hooks)", "", "", "")

    def _show_code(self) -> None:
        assert self.lab is not None
        target = self.query_one("#code-text", Static)
        if not self.lab.editable:
            target.update(Text("your own module: its source is your file", style="dim"))
            return
        source = self.lab.export_source()
        target.update(Syntax(source, "python", theme="ansi_dark", line_numbers=True,
                             background_color="default"))

    def export_text(self) -> str:
        """The exported source, for copying (empty when unavailable)."""
        if self.lab is None or not self.lab.editable:
            return ""
        return self.lab.export_source()
