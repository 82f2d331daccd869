"""The values view: one tensor of the live model as PyTorch prints it, and setting it.

Opened with `V` on the selected node (its first parameter, or its output after a forward pass)
or with enter on a row of the inspector's tables or the run panel's Forward / Backward /
Params tabs. It shows the tensor's header (shape, dtype, device, requires_grad, grad_fn), its
values in torch's own formatting (summarised above torch's threshold), its `.grad` beside it,
its statistics, and a heat map (2-D) or a histogram (the rest; ctrl+t switches). The path box
takes any path with a slice (`2.weight[0, :5]`, `0.weight.grad`, `x`, `out`, a layer's name
for its output); the set box takes `[0, 0] = 100`, `= torch.zeros(8, 8)` or a full
`PATH = EXPR` from the input language; ctrl+z / ctrl+y undo and redo it.

Why a screen of its own: at 80×24 the main screen has no room for a tensor's printout, and the
main screen's layout is shared with other panes. Why a thread worker: a big tensor's numbers
(a 37M-element weight) take longer than a frame; `core.value_view` does the work and returns
strings and lists, so nothing here touches PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import ContentSwitcher, DataTable, Footer, Input, Static
from textual_plotext import PlotextPlot

from tuilab.app.widgets.heatmap import Heatmap

if TYPE_CHECKING:
    from tuilab.core.lab import Lab
    from tuilab.core.value_view import ValueView

NARROW = 110
"""Below this many columns the .grad goes under the values instead of beside them."""
SET_HINT = "set: [0, 0] = 100 · = torch.zeros(8, 8) · enter"
SetValue = Callable[[str], tuple[str, ...]]
"""Sets `PATH = EXPR` through the lab and shows it in the app; raises on a bad expression."""
Step = Callable[[str], bool]
"""Undo ("undo") or redo ("redo") through the app; False when nothing changed."""


def caret_text(text: str, where: str) -> str:
    """`text` with a ^ under the column an error names (`column 7`), or `text` alone."""
    if not where.startswith("column "):
        return ""
    try:
        column = int(where.split()[1])
    except (IndexError, ValueError):
        return ""
    return f"  {text}\n  {' ' * max(0, column - 1)}^"


def error_text(error: BaseException, typed: str) -> str:
    """An error as the view and the input prompt show it: the message, then the text with a
    caret under the position when the error names one."""
    message = str(error) or type(error).__name__
    caret = caret_text(typed, str(getattr(error, "where", "")))
    return f"✗ {message}" + (f"\n{caret}" if caret else "")


class ValuesScreen(Screen[None]):
    """A tensor's values, its .grad, a chart, and a box to set it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("tab", "app.focus_next", "Path ⇄ set"),
        Binding("pageup", "scroll_values(-1)", "Scroll values", show=False),
        Binding("pagedown", "scroll_values(1)", "Scroll values", show=False),
        Binding("ctrl+t", "toggle_chart", "Heatmap/histogram", priority=True),
        Binding("ctrl+z", "step('undo')", "Undo", priority=True),
        Binding("ctrl+y", "step('redo')", "Redo", priority=True),
    ]

    DEFAULT_CSS = """
    ValuesScreen { layout: vertical; }
    ValuesScreen #values-title { height: auto; max-height: 2; padding: 0 1;
                                 text-style: bold; }
    ValuesScreen #values-info { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    ValuesScreen Input { margin: 0 1; }
    ValuesScreen #values-body { height: 1fr; }
    ValuesScreen #values-body VerticalScroll { width: 1fr; border: round $primary 50%;
                                               border-title-color: $text-accent; }
    ValuesScreen #values-grad-box.-none { display: none; }
    ValuesScreen.-narrow #values-body { layout: vertical; }
    ValuesScreen.-narrow #values-text-box { height: 2fr; width: 1fr; }
    ValuesScreen.-narrow #values-grad-box { height: auto; max-height: 40%; width: 1fr; }
    ValuesScreen #values-chart { height: 10; }
    ValuesScreen.-short #values-chart { height: 6; }
    ValuesScreen #values-heat, ValuesScreen #values-hist { width: 1fr; height: 1fr; }
    ValuesScreen #values-heat { padding: 0 1; }
    ValuesScreen #values-stats { height: auto; max-height: 2; padding: 0 1;
                                 color: $text-muted; }
    ValuesScreen #values-error { height: auto; max-height: 4; padding: 0 1; color: $error; }
    ValuesScreen #values-error.-ok { color: $success; }
    """

    class Ready(Message):
        """The worker's view of a path (or its error)."""

        def __init__(self, request: int, view: ValueView | None, error: str = "") -> None:
            super().__init__()
            self.request = request
            self.view = view
            self.error = error

    def __init__(self, lab: Lab, path: str, *, set_value: SetValue, step: Step) -> None:
        super().__init__()
        self.lab = lab
        self.path = path
        self.view: ValueView | None = None
        """The view drawn last (tests read it)."""
        self.chart = "heat"
        """"heat" or "hist": which chart shows."""
        self._chosen_chart: str | None = None
        self._set_value = set_value
        self._step = step
        self._request = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="values-title", markup=False)
        yield Static("", id="values-info", markup=False)
        yield Input(self.path, placeholder="a path: 2.weight[0, :5] · 0.weight.grad · x · out",
                    id="values-path", compact=True)
        with Horizontal(id="values-body"):
            with VerticalScroll(id="values-text-box"):
                yield Static("", id="values-text", markup=False)
            with VerticalScroll(id="values-grad-box"):
                yield Static("", id="values-grad", markup=False)
        with ContentSwitcher(initial="values-heat", id="values-chart"):
            yield Heatmap(id="values-heat")
            yield PlotextPlot(id="values-hist")
        yield Static("", id="values-stats", markup=False)
        yield Input(placeholder=SET_HINT, id="values-set", compact=True)
        yield Static("", id="values-error", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#values-text-box").border_title = "values"
        self.query_one("#values-grad-box").border_title = ".grad"
        for box in self.query(VerticalScroll):  # tab goes path ⇄ set; page keys scroll these
            box.can_focus = False
        for widget in self.query(Input):
            widget.cursor_blink = False
        self.query_one("#values-path", Input).focus()
        self.set_class(self.app.size.height < 32, "-short")
        self.set_class(self.app.size.width < NARROW, "-narrow")
        self.show(self.path)

    # --- showing ----------------------------------------------------------------------------
    def show(self, path: str) -> None:
        """Compute the view of `path` in a worker; `Ready` draws it."""
        self.path = path.strip()
        self._request += 1
        self.query_one("#values-path", Input).value = self.path
        columns = self.app.size.width
        width = max(40, columns - 6 if columns < NARROW else (columns - 8) // 2)
        self._compute(self._request, self.path, width)

    @work(thread=True, exclusive=True, group="values", exit_on_error=False)
    def _compute(self, request: int, path: str, width: int) -> None:
        from tuilab.core.value_view import value_view

        lab = self.lab
        try:
            view = value_view(lab.model, path, outputs=lab.layer_outputs,
                              input_tensor=lab.current_input.tensor if not lab.on_meta
                              and lab.input_shape else None, linewidth=width)
        except Exception as error:  # a bad path, or a user module that cannot be read
            self.post_message(self.Ready(request, None, error_text(error, path)))
            return
        self.post_message(self.Ready(request, view))

    @on(Ready)
    def _ready(self, message: Ready) -> None:
        message.stop()
        if message.request != self._request or not self.is_mounted:
            return  # an older request
        view = message.view
        if view is None:
            self._say(message.error)
            return
        self.view = view
        self.query_one("#values-title", Static).update(view.title)
        self.query_one("#values-info", Static).update(view.info)
        self.query_one("#values-text", Static).update(view.values)
        self.query_one("#values-grad", Static).update(view.grad or "")
        self.query_one("#values-grad-box").set_class(view.grad is None, "-none")
        box = self.query_one("#values-set", Input)
        box.disabled = not view.target
        box.placeholder = SET_HINT if view.target else (
            f"a {view.kind} cannot be set: only a parameter or a buffer")
        self.chart = self._chosen_chart or ("heat" if view.is_matrix else "hist")
        self._draw_chart()
        if not self.query_one("#values-error", Static).has_class("-ok"):
            self._say("")

    def _draw_chart(self) -> None:
        view = self.view
        switcher = self.query_one("#values-chart", ContentSwitcher)
        switcher.current = "values-heat" if self.chart == "heat" else "values-hist"
        if view is None:
            return
        heat = self.query_one("#values-heat", Heatmap)
        stats = view.stats
        if self.chart == "heat" and view.heat:
            low, high = view.heat_range
            stats += f" · heat map: dark {low:.4g} … bright {high:.4g}"
        self.query_one("#values-stats", Static).update(stats)
        if view.heat:
            heat.show_heat(view.heat)
        else:
            heat.clear()
            heat.placeholder = "no values to draw"
        plot = self.query_one("#values-hist", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        if view.counts:
            centers = [(a + b) / 2 for a, b in zip(view.edges, view.edges[1:], strict=False)]
            plt.bar(centers, view.counts, width=0.9)
            ticks = [view.edges[0], view.edges[len(view.edges) // 2], view.edges[-1]]
            plt.xticks(ticks, [f"{t:.3g}" for t in ticks])
            plt.title(f"histogram of {view.text}")
        else:
            plt.title("no values to draw")
        plot.refresh()

    def _say(self, text: str, *, ok: bool = False) -> None:
        error = self.query_one("#values-error", Static)
        error.update(text)
        error.set_class(ok, "-ok")

    # --- actions ----------------------------------------------------------------------------
    @on(Input.Submitted, "#values-path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._say("")
        self.show(event.value)

    @on(Input.Submitted, "#values-set")
    def _set_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        view = self.view
        typed = event.value.strip()
        if view is None or not view.target or not typed:
            return
        from tuilab.core.value_view import assignment_text

        text = assignment_text(view.target, typed)
        try:
            paths = self._set_value(text)
        except Exception as error:  # nothing changed: say why, where
            self._say(error_text(error, text))
            return
        event.input.value = ""
        where = f" (also at {', '.join(paths[1:])})" if len(paths) > 1 else ""
        self._say(f"✓ {text}{where} · ctrl+z undoes it", ok=True)
        self.show(self.path)

    def action_toggle_chart(self) -> None:
        self.chart = self._chosen_chart = "hist" if self.chart == "heat" else "heat"
        self._draw_chart()

    def action_scroll_values(self, pages: int) -> None:
        """The values box is out of the tab order (so tab reaches the set box at once)."""
        box = self.query_one("#values-text-box", VerticalScroll)
        box.scroll_to(y=box.scroll_y + pages * max(1, box.scrollable_content_region.height - 1))

    def action_step(self, which: str) -> None:
        if self._step(which):
            self._say(f"✓ {which}", ok=True)
            self.show(self.path)

    def action_close(self) -> None:
        self.dismiss(None)


# --- opening the view from the app ------------------------------------------------------------
def row_path(table_id: str | None, row: list[str], key: str | None) -> str | None:
    """The tensor path behind a selected row of the inspector's or the run panel's tables."""
    first = str(row[0]) if row else ""
    if table_id in ("parameters-table", "buffers-table", "state-table", "params-table"):
        return key or first
    if table_id == "backward-table":
        return f"{first}.grad"
    if table_id == "forward-table":
        if first == "x (input)":
            return "x"
        return "out" if first == "(root)" else first
    return None


def open_values(app: Any, path: str | None = None) -> None:
    """Push the values view on `path`, or on what the builder's selection holds."""
    lab = app.lab
    if lab is None:
        return
    focused = app.focused
    if path is None and isinstance(focused, DataTable) and focused.row_count:
        path = cursor_row_path(focused)  # V on a table row: that row's tensor
    if path is None:
        from tuilab.core.value_view import default_path

        node = app.selected_path or ""
        try:
            path = default_path(lab.model, node, lab.layer_outputs)
        except Exception:
            path = ""
        if not path:
            app.notify("this node holds no tensor: run a forward pass (f) to see its output",
                       severity="warning", markup=False)
            return

    def set_value(text: str) -> tuple[str, ...]:
        update, paths = lab.set_value(text)
        app._apply(update, reshape=False)
        flash = getattr(app.inspector, "flash", None)
        if flash is not None:
            flash(paths)
        return paths

    def step(which: str) -> bool:
        return app._edit(which, select=app.selected_path) is not None

    app.push_screen(ValuesScreen(lab, path, set_value=set_value, step=step))


def _table_row_path(table: DataTable[Any], row_key: Any) -> str | None:
    try:
        row = [str(cell) for cell in table.get_row(row_key)]
    except Exception:
        return None
    return row_path(table.id, row, row_key.value if row_key is not None else None)


def selected_row_path(event: DataTable.RowSelected) -> str | None:
    """The path of a selected table row, if it is one the values view can show."""
    return _table_row_path(event.data_table, event.row_key)


def cursor_row_path(table: DataTable[Any]) -> str | None:
    """The path of the row under a table's cursor (None: not a tensor's row)."""
    try:
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
    except Exception:
        return None
    return _table_row_path(table, key)


def follow_selection(app: Any, path: str | None) -> None:
    """The inspector's state_dict tab and the run panel's Params tab follow the builder."""
    if app.lab is None:
        return
    try:
        app.inspector.set_node(path)
    except Exception as error:  # a drawing problem must not stop the cursor
        app.notify(f"state_dict: {error}", severity="error", markup=False)
    panel = app.run_panel()
    follow = getattr(panel, "follow_node", None) if panel is not None else None
    if follow is not None:
        follow(path or "")
