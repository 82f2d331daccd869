"""The run side of the lab: forward/backward reports, init, hooks, Grad-CAM and training runs.

Why one panel owns all of these: they share the live model's run state (a training run locks
the others out, hooks fire during any of them, an init changes what the next forward shows),
and the user moves between them in one place. Every action goes through :class:`Lab` (or the
plain-data helpers of ``tuilab.core.views``), catches what it raises and shows it as a
notification: the app never exits on a user's mistake.

Training follows DESIGN.md, "Training without freezing the UI": ``Lab.train`` is a plain
generator iterated in a thread worker (``group="training"``) that posts each
``MetricsBatch`` (at most ~2/s) with ``post_message``; the UI thread updates the progress bar
and asks the loss plot for a (throttled) replot. Stop and pause are ``threading.Event``s the
loop polls every step; unmounting the panel (quitting the app) sets stop, so the process can
end. The end of a run — finished, stopped, failed, or a worker that raised — is handled once,
in ``on_worker_state_changed``: a notification, ``lab.refresh("after training")`` posted as
``LabChanged`` for the inspector, and the decision regions for a 2-D task.

No PyTorch here: tensors are turned into lists and strings in ``tuilab.core.views``, which is
imported lazily (the lab is built after the app starts, in a worker).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import (
    DataTable,
    Input,
    Label,
    OptionList,
    ProgressBar,
    RichLog,
    Select,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState, get_current_worker

from tuilab.app.messages import CodeLine, LabChanged
from tuilab.app.screens.dialogs import ConfirmScreen, Dialog, modal_frame_css
from tuilab.app.screens.train_settings import TrainSettingsScreen
from tuilab.app.widgets.heatmap import Heatmap
from tuilab.app.widgets.inspector import FOLLOW_DELAY
from tuilab.app.widgets.loss_plot import LossPlot
from tuilab.core.units import rate_text

if TYPE_CHECKING:
    from tuilab.core.lab import Lab, LabUpdate, RunRecord
    from tuilab.core.training import MetricsBatch

# How often a user module's forward in its own thread is polled, and after how many polls
# the panel warns that it may never return.
FORWARD_POLL_S = 0.25
FORWARD_WARN_TICKS = 8


def _on_output(run: RunRecord) -> str:
    """` · on output.logits` when the model returns a tuple/dict/dataclass (else nothing)."""
    return f" · on {run.output}" if run.output else ""


def _eta(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "–"
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# --------------------------------------------------------------------------------------------
# pickers


class _Picker(Dialog[Any]):
    """A small modal: a title, an option list, Enter chooses, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = modal_frame_css("_Picker", width="60", max_width=None,
                                  max_height="80%") + """
    _Picker .title {
        text-style: bold;
    }
    _Picker .help {
        color: $text-muted;
    }
    _Picker OptionList {
        height: auto;
        max-height: 16;
    }
    """

    def __init__(self, title: str, options: Sequence[tuple[str, Any]], help_text: str = "",
                 target: Select[str] | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.options = list(options)
        self.help_text = help_text
        self.target = target

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title")
            if self.target is not None:
                yield self.target
            yield OptionList(*(Option(text, id=str(i)) for i, (text, _) in
                               enumerate(self.options)))
            if self.help_text:
                yield Label(self.help_text, classes="help")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        value = self.options[int(event.option.id or 0)][1]
        if self.target is not None:
            self.dismiss((value, self.target.value))
        else:
            self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


def _target_select(selected: str | None) -> Select[str]:
    """Whole model, or the builder's selected node: the target of an init or a hook."""
    options = [("the whole model", "")]
    if selected:
        options.insert(0, (f"selected: {selected}", selected))
    return Select(options, value=options[0][1], allow_blank=False, id="target")


class GradCamPicker(Dialog[tuple[int, int | None, str] | None]):
    """Which validation image, which class (or the predicted one) and which conv layer."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = modal_frame_css("GradCamPicker", width="60", max_width=None,
                                  max_height=None) + """
    GradCamPicker .title {
        text-style: bold;
    }
    GradCamPicker #cam-error {
        color: $error;
    }
    """

    def __init__(self, layers: Sequence[str], index: int = 0, classes: int = 10) -> None:
        super().__init__()
        self.conv_layers = list(layers)
        self.index = index
        self.class_count = classes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Grad-CAM: where does the model look?", classes="title")
            yield Label("validation image index")
            yield Input(str(self.index), id="cam-index", type="integer")
            yield Label("class to explain")
            yield Select([("the predicted class", -1),
                          *((str(k), k) for k in range(self.class_count))],
                         value=-1, allow_blank=False, id="cam-class")
            yield Label("layer (default: the last Conv2d)")
            yield Select([(p, p) for p in reversed(self.conv_layers)], value=self.conv_layers[-1],
                         allow_blank=False, id="cam-layer")
            yield Label("Enter: show · Escape: cancel", id="cam-error")

    def on_mount(self) -> None:
        self.query_one("#cam-index", Input).focus()

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            index = int(self.query_one("#cam-index", Input).value)
        except ValueError:
            self.query_one("#cam-error", Label).update("the index must be a whole number")
            return
        cls = self.query_one("#cam-class", Select).value
        layer = self.query_one("#cam-layer", Select).value
        self.dismiss((index, None if cls in (-1, Select.NULL) else int(cls), str(layer)))

    def action_cancel(self) -> None:
        self.dismiss(None)


# --------------------------------------------------------------------------------------------
# the panel


class RunPanel(Widget, can_focus=True):
    """Run the live model: forward, backward, init, hooks, Grad-CAM and training runs.

    Focusable so its keys work when the user is in it; the app can also bind the same keys
    at its level and call the ``action_*`` methods, which need no focus.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "forward", "Forward"),
        Binding("b", "backward", "Backward"),
        Binding("g", "zero_grad", "zero_grad"),
        Binding("I", "init", "Init"),
        Binding("t", "train", "Train"),
        Binding("p", "pause", "Pause/resume"),
        Binding("x", "stop", "Stop run"),
        Binding("k", "add_hook", "Add hook"),
        Binding("H", "remove_hooks", "Remove hooks"),
        Binding("delete", "remove_hook", "Remove hook", show=False),
        Binding("G", "grad_cam", "Grad-CAM"),
        Binding("B", "boundary", "Boundary", show=False),
        Binding("L", "log_scale", "Log scale", show=False),
        Binding("M", "toggle_maximize", "Maximize", show=False),
    ]
    """
    | Key | Action |
    | :- | :- |
    | f | forward pass: per-layer table |
    | b | backward pass: loss and gradient norms |
    | g | zero_grad |
    | I | initialise the selected node (or the model) |
    | t | training settings, then start a run |
    | p | pause / resume the run |
    | x | stop the run |
    | k / H / delete | add a hook / remove all / remove the highlighted one |
    | G | Grad-CAM on a digit |
    | B | decision regions of a 2-D classifier |
    | L | loss plot: log / linear scale |
    | M | the panel fills the screen / back (the plot and heat maps want room) |

    The letters avoid the app's own keys (``c`` device, ``K`` move up, ``d`` delete), so the
    app can bind them at its level too.
    """

    DEFAULT_CSS = """
    RunPanel {
        height: 1fr;
        width: 1fr;
    }
    RunPanel #run-status {
        height: 1;
        color: $text-muted;
        padding: 0 1;
    }
    RunPanel TabbedContent {
        height: 1fr;
    }
    RunPanel TabPane {
        padding: 0;
    }
    RunPanel .caption {
        height: auto;
        padding: 0 1;
    }
    RunPanel DataTable {
        height: 1fr;
    }
    RunPanel #progress-row {
        height: 1;
        padding: 0 1;
    }
    RunPanel #train-progress {
        width: auto;
    }
    RunPanel #train-stats {
        width: 1fr;
        padding-left: 1;
    }
    RunPanel #hook-table {
        height: auto;
        max-height: 8;
    }
    RunPanel #hook-log {
        height: 1fr;
    }
    RunPanel #run-status.-running {
        color: $warning;
    }
    """

    UI_INTERVAL: ClassVar[float] = 1.0
    """Seconds between two repaints of the progress bar and line during a run."""

    running: reactive[bool] = reactive(False)
    """A training run is going (its worker is alive); edits are locked by the lab meanwhile."""

    paused: reactive[bool] = reactive(False)
    """The run waits between two steps (the pause event is set)."""

    class Metrics(Message):
        """One ``MetricsBatch`` from the training worker, for ``run``."""

        def __init__(self, run: RunRecord, batch: MetricsBatch) -> None:
            super().__init__()
            self.run = run
            self.batch = batch

    class ViewReady(Message):
        """A Grad-CAM or decision-boundary view computed in a worker."""

        def __init__(self, kind: str, view: Any) -> None:
            super().__init__()
            self.kind = kind
            self.view = view

    class TrainingThreadEnded(Message):
        """The training thread of a cancelled worker has left its last step (its own finally)."""

        def __init__(self, worker: Worker[None]) -> None:
            super().__init__()
            self.worker = worker

    class RunEnded(Message):
        """A run finished, stopped or failed; ``run.status`` says which (tests wait on it)."""

        def __init__(self, run: RunRecord) -> None:
            super().__init__()
            self.run = run

    def __init__(self, lab: Lab, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.lab = lab
        self.run: RunRecord | None = None
        self.last_batch: MetricsBatch | None = None
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._worker: Worker[None] | None = None
        self._thread_done = threading.Event()
        """Set by the training thread once it has left its last step (tests may wait on it)."""
        self._hooks: Any = None  # views.HookBoard, created on first use
        self._cam_data: dict[tuple[Any, ...], Any] = {}
        self._cam_index = 0
        # A user module's forward in flight: (future, polls so far), and the timer polling it.
        self._user_forward: tuple[Future[Any], int] | None = None
        self._user_forward_timer: Timer | None = None
        self._follow_timer: Timer | None = None
        self._hook_rows: list[int] = []
        self._drain_timer: Timer | None = None
        self._progress_timer: Timer | None = None
        self.hook_lines = 0
        """How many hook events were written to the log (the tests read it)."""
        self._params_path: str | None = None
        """The node the Params tab shows (None: it shows nothing yet)."""

    # --- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(self._status_text(), id="run-status")
        with TabbedContent(id="run-tabs", initial="tab-training"):
            with TabPane("Forward", id="tab-forward"):
                yield Static(self.CAPTIONS["#forward-header"], id="forward-header",
                             classes="caption")
                yield DataTable(id="forward-table", zebra_stripes=True, cursor_type="row")
                yield Static("", id="forward-output", classes="caption")
            with TabPane("Backward", id="tab-backward"):
                yield Static(self.CAPTIONS["#backward-loss"], id="backward-loss",
                             classes="caption")
                yield DataTable(id="backward-table", zebra_stripes=True, cursor_type="row")
            with TabPane("Params", id="tab-params"):
                yield Static(self.CAPTIONS["#params-caption"], id="params-caption",
                             classes="caption")
                yield DataTable(id="params-table", zebra_stripes=True, cursor_type="row")
            with TabPane("Training", id="tab-training"):
                with Horizontal(id="progress-row"):
                    # A determinate bar from the start: an indeterminate one animates at 60 fps.
                    yield ProgressBar(total=1, show_eta=False, id="train-progress")
                    yield Static(self.CAPTIONS["#train-stats"], id="train-stats")
                yield LossPlot(id="loss-plot")
            with TabPane("Hooks", id="tab-hooks"):
                yield Static("k: add a hook on the selected node · delete: remove · H: all",
                             classes="caption")
                yield DataTable(id="hook-table", cursor_type="row")
                yield RichLog(id="hook-log", max_lines=500, markup=False, wrap=False)
            with TabPane("View", id="tab-view"):
                yield Static(self.CAPTIONS["#view-caption"], id="view-caption",
                             classes="caption")
                yield Heatmap(id="view-map")

    CAPTIONS: ClassVar[dict[str, str]] = {
        "#forward-header": "f: a forward pass on the input x (X chooses it)",
        "#forward-output": "",
        "#backward-loss": "b: loss.backward() on a batch of the task · g: zero_grad",
        "#params-caption": "I: initialise · parameter statistics",
        "#train-stats": "t: start a run · p: pause · x: stop",
        "#view-caption": "G: Grad-CAM (conv models on digits) · B: decision regions (2-D tasks)",
    }
    """What each caption says before anything ran (and again for a newly loaded model)."""
    COLUMNS: ClassVar[dict[str, tuple[str, ...]]] = {
        "#forward-table": ("layer", "type", "output", "mean", "std", "min", "max", "zeros",
                           "ms"),
        "#backward-table": ("parameter", "grad norm"),
        "#params-table": ("parameter", "shape", "mean", "std", "min", "max", "zeros",
                          "grad norm"),
        "#hook-table": ("id", "module", "kind", "action"),
    }

    def on_mount(self) -> None:
        for table_id, columns in self.COLUMNS.items():
            self.query_one(table_id, DataTable).add_columns(*columns)
        self.query_one(LossPlot).set_runs(self.lab.runs)
        # Runs only while hooks exist: an idle app should not wake up for nothing.
        self._drain_timer = self.set_interval(0.25, self._drain_hooks, name="hook-drain",
                                              pause=True)

    def on_unmount(self) -> None:
        # A thread cannot be killed: the loop polls this event every step, and the process
        # can only end once the worker thread has returned.
        self._stop.set()
        self._pause.clear()

    # --- helpers ------------------------------------------------------------------------
    @property
    def selected_path(self) -> str | None:
        """The builder's selection, if the app exposes one (``app.selected_path``)."""
        value = getattr(self.app, "selected_path", None)
        if callable(value):
            try:
                value = value()
            except Exception:
                value = None
        return value if isinstance(value, str) else None

    def _error(self, err: BaseException) -> None:
        self.notify(str(err) or type(err).__name__, title="tuilab", severity="error",
                    markup=False, timeout=8)

    def _changed(self, update: LabUpdate, *, log: bool = True) -> None:
        """Tell the app what an action changed: the diff for the inspector, the line for the
        code log (the app applies ``LabChanged`` without logging, so the line goes apart)."""
        self.post_message(LabChanged(update))
        if log and update.code:
            self.post_message(CodeLine(update.code))

    def _show_tab(self, tab: str) -> None:
        """Bring ``tab`` of the panel forward, and the panel itself if it sits in a tab."""
        self.query_one("#run-tabs", TabbedContent).active = tab
        for pane in self.ancestors:
            if isinstance(pane, TabPane) and pane.id and isinstance(
                    pane.parent and pane.parent.parent, TabbedContent):
                tabs = pane.parent.parent  # TabbedContent > ContentSwitcher > TabPane
                assert isinstance(tabs, TabbedContent)
                tabs.active = pane.id
        # Focus left inside the pane that just hid would be dropped, and with it the panel's
        # keys: keep it on the panel itself.
        focused = self.screen.focused if self.screen is self.app.screen else None
        if focused is not None and focused is not self and self in focused.ancestors:
            self.focus()

    def _status_text(self) -> str:
        mode = "train" if self.lab.training else "eval"
        parts = [f"{self.lab.name} · {mode} mode · {self.lab.device} · {self.lab.dtype_name}"]
        if self.run is not None:
            state = ("paused" if self.paused else self.run.status) if self.running else (
                self.run.status)
            parts.append(f"{self.run.name}: {state}{_on_output(self.run)}")
        return " · ".join(parts)

    def _update_status(self) -> None:
        self.query_one("#run-status", Static).update(self._status_text(), layout=False)

    def _fill(self, table_id: str, rows: Sequence[Sequence[str]]) -> None:
        table = self.query_one(table_id, DataTable)
        table.clear()
        table.add_rows(rows)

    def set_lab(self, lab: Lab) -> None:
        """Point the panel at another lab (a file was opened); refused while a run is going."""
        if self.running:
            raise RuntimeError("a training run is going: stop it first")
        self.lab = lab
        self._hooks = None
        self._cam_data.clear()
        self.run = None
        self.last_batch = None
        self._params_path = None
        # Not composed yet (a lab replaced right after the first, as a lesson does): nothing
        # stale to clear, and compose/on_mount read self.lab. Raising here made the app
        # remove the panel mid-mount, and Textual's tabs then failed ("No Tab with id").
        with contextlib.suppress(NoMatches):
            self._reset_views()
            self.query_one(LossPlot).set_runs(lab.runs)
            self._update_status()

    def _reset_views(self) -> None:
        """Nothing of the last model stays on screen: every table is emptied and its columns
        made anew (a DataTable's columns only ever widen), every caption says its first
        words again, the progress bar and the view are cleared."""
        for table_id, columns in self.COLUMNS.items():
            table = self.query_one(table_id, DataTable)
            table.clear(columns=True)
            table.add_columns(*columns)
        self._hook_rows = []
        for caption_id, text in self.CAPTIONS.items():
            self.query_one(caption_id, Static).update(text)
        self.query_one("#train-progress", ProgressBar).update(total=1, progress=0)
        self.query_one("#hook-log", RichLog).clear()
        self.query_one("#view-map", Heatmap).clear()

    # --- forward / backward / init -------------------------------------------------------
    def action_forward(self) -> None:
        """One forward pass: a row per module call; BatchNorm buffers move in train mode.

        A user's own module may loop for ever: its forward runs in a daemon thread that can
        be abandoned (see core.abandonable), watched by a timer that warns while it runs."""
        if self._user_forward is not None:
            self.notify("your module's forward pass is still running (q quits tuilab)",
                        severity="warning", markup=False)
            return
        if not self.lab.editable:
            from tuilab.core.abandonable import run_abandonable

            self._user_forward = (run_abandonable(self.lab.forward, name="forward"), 0)
            self._user_forward_timer = self.set_interval(
                FORWARD_POLL_S, self._poll_user_forward, name="user-forward")
            return
        try:
            self._show_forward(self.lab.forward())
        except Exception as err:
            self._error(err)

    def _poll_user_forward(self) -> None:
        """Show the user's forward when it returns; warn once when it runs long."""
        if self._user_forward is None:
            return
        future, ticks = self._user_forward
        if not future.done():
            self._user_forward = (future, ticks + 1)
            if ticks + 1 == FORWARD_WARN_TICKS:
                self.notify("your module's forward pass has been running for "
                            f"{FORWARD_WARN_TICKS * FORWARD_POLL_S:.0f} s and may never "
                            "return; q quits tuilab (the pass is abandoned)",
                            title="still running", severity="warning", markup=False,
                            timeout=30)
            return
        self._user_forward = None
        if self._user_forward_timer is not None:
            self._user_forward_timer.stop()
        try:
            self._show_forward(future.result())
        except Exception as err:
            self._error(err)

    def _show_forward(self, result: tuple[Any, LabUpdate]) -> None:
        from tuilab.core import views
        from tuilab.core.value_view import input_row

        report, update = result
        try:
            rows = views.forward_rows(report)
            header = views.forward_header(report)
            chosen = self.lab.current_input
            rows.insert(0, input_row(chosen.tensor, chosen.text))
        except Exception as err:
            self._error(err)
            return
        self.query_one("#forward-header", Static).update(header)
        self._fill("#forward-table", rows)
        self.query_one("#forward-output", Static).update(
            f"x = {chosen.text} · out = {report.output_preview} · enter on a row: its values")
        self._show_tab("tab-forward")
        self._update_status()
        self._changed(update)

    def action_backward(self) -> None:
        """loss.backward() on a batch of the model's task: the loss and each grad's norm."""
        try:
            from tuilab.core import views

            report, update = self.lab.backward()
            rows = views.backward_rows(report)
        except Exception as err:
            self._error(err)
            return
        on = f" on {report.output}" if report.output else ""
        self.query_one("#backward-loss", Static).update(
            f"loss {report.loss:.6g}{on} · gradients accumulate until zero_grad (g)")
        self._fill("#backward-table", rows)
        self._refresh_parameters()
        self._show_tab("tab-backward")
        self._changed(update)

    def action_zero_grad(self) -> None:
        try:
            update = self.lab.zero_grad()
        except Exception as err:
            self._error(err)
            return
        self.query_one("#backward-loss", Static).update("gradients cleared (.grad = None)")
        self._fill("#backward-table", [])
        self._refresh_parameters()
        self._changed(update)

    def action_init(self) -> None:
        """Pick an init scheme for the selected node or the whole model."""
        if self.running:
            self._error(RuntimeError("a training run is going: stop it first"))
            return
        try:
            from tuilab.core.views import INIT_SCHEMES
        except Exception as err:
            self._error(err)
            return
        self.app.push_screen(
            _Picker("Initialise Linear / Conv weights", [(s, s) for s in INIT_SCHEMES],
                    "net.apply(init_fn) on every Linear/Conv inside the target",
                    target=_target_select(self.selected_path)),
            self._apply_init)

    def _apply_init(self, choice: tuple[str, str] | None) -> None:
        if choice is None:
            return
        scheme, path = choice
        if not (self.lab.runs or not self.lab.editable):
            self.initialise(scheme, path or "")  # fresh weights: nothing to lose
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.initialise(scheme, path or "")

        # trained weights, or a user's own (perhaps pre-trained) module: enter keeps them
        self.app.push_screen(ConfirmScreen(
            "Re-initialise the weights?",
            f"{scheme} init replaces the current weights of {path or 'the whole model'}; "
            "what training taught them is lost (undo does not bring weights back).",
            yes="Re-initialise", no="Keep them"), answer)

    def initialise(self, scheme: str, path: str = "") -> None:
        """Apply ``scheme`` at ``path`` through the lab and show the new parameter stats."""
        try:
            update = self.lab.initialise(path, scheme)
        except Exception as err:
            self._error(err)
            return
        self.show_parameters(path)
        self._show_tab("tab-params")
        self._changed(update)
        self.notify(f"{scheme} init on {path or 'the whole model'}", markup=False)

    def show_parameters(self, path: str = "") -> None:
        """Fill the Params tab with the statistics of the parameters under ``path``."""
        try:
            from tuilab.core import views

            rows = views.parameter_rows(self.lab.model, path)
        except Exception as err:
            self._error(err)
            return
        self._params_path = path
        self.query_one("#params-caption", Static).update(
            f"parameters of {path or 'the whole model'} · I: initialise")
        self._fill("#params-table", rows)
        self._params_path = path

    def _refresh_parameters(self) -> None:
        """Redraw the Params tab, if it shows something, after gradients changed."""
        if self._params_path is not None:
            self.show_parameters(self._params_path or "")

    def follow_node(self, path: str) -> None:
        """The Params tab follows the builder's selection (recomputed only while visible)."""
        self._params_path = path
        if self._follow_timer is not None:
            self._follow_timer.stop()
        self._follow_timer = self.set_timer(FOLLOW_DELAY, self._follow_now, name="params-follow")

    def _follow_now(self) -> None:
        """Once the cursor rests (a key held down would recompute every row it passes)."""
        self._follow_timer = None
        if self.query_one("#run-tabs", TabbedContent).active == "tab-params":
            self.show_parameters(self._params_path or "")

    @on(TabbedContent.TabActivated, "#run-tabs")
    def _run_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-params":
            self.show_parameters(self._params_path or "")

    # --- hooks --------------------------------------------------------------------------
    def _board(self) -> Any:
        if self._hooks is None:
            from tuilab.core.views import HookBoard

            self._hooks = HookBoard()
        return self._hooks

    def action_add_hook(self) -> None:
        try:
            from tuilab.core.views import HOOK_ACTIONS, HOOK_KINDS
        except Exception as err:
            self._error(err)
            return
        names = {"forward": "forward hook", "forward_pre": "forward pre-hook",
                 "backward": "full backward hook"}
        options = [(f"{names.get(k, k)} · prints {a}", (k, a))
                   for k in HOOK_KINDS for a in HOOK_ACTIONS]
        self.app.push_screen(
            _Picker("Register a hook", options, "events stream into the Hooks tab",
                    target=_target_select(self.selected_path)),
            self._apply_hook)

    def _apply_hook(self, choice: tuple[tuple[str, str], str] | None) -> None:
        if choice is None:
            return
        (kind, action), path = choice
        self.add_hook(path or "", kind, action)

    def add_hook(self, path: str, kind: str, action: str) -> None:
        """Register a hook on the live module at ``path`` and show it in the Hooks tab."""
        try:
            _info, update = self._board().add(self.lab, path, kind, action)
        except Exception as err:
            self._error(err)
            return
        self._refresh_hooks()
        self._show_tab("tab-hooks")
        self._changed(update)

    def action_remove_hook(self) -> None:
        """Remove the hook under the cursor of the Hooks tab (only while that tab shows)."""
        table = self.query_one("#hook-table", DataTable)
        if (self.query_one("#run-tabs", TabbedContent).active != "tab-hooks"
                or not self._hook_rows or table.cursor_row < 0):
            return
        hook_id = self._hook_rows[min(table.cursor_row, len(self._hook_rows) - 1)]
        try:
            update = self._board().remove(self.lab, hook_id)
        except Exception as err:
            self._error(err)
            return
        self._refresh_hooks()
        self._changed(update)

    def action_remove_hooks(self) -> None:
        try:
            update = self._board().remove_all(self.lab)
        except Exception as err:
            self._error(err)
            return
        self._refresh_hooks()
        if update is not None:
            self._changed(update)

    def _refresh_hooks(self) -> None:
        active = self._board().active()
        self._hook_rows = [h.id for h in active]
        if self._drain_timer is not None:
            if active:
                self._drain_timer.resume()
            else:
                self._drain_hooks()  # the last events, then sleep
                self._drain_timer.pause()
        self._fill("#hook-table", [(f"h{h.id}", h.path or "(root)", h.kind, h.action)
                                   for h in active])

    def _drain_hooks(self) -> None:
        """Move the hooks' events into the log (every 0.25 s; the queue is bounded)."""
        if self._hooks is None:
            return
        events = self._hooks.drain()
        if not events:
            return
        log = self.query_one("#hook-log", RichLog)
        shown = events[-200:]
        if len(events) > len(shown):
            log.write(f"… {len(events) - len(shown)} events skipped")
        for event in shown:
            log.write(f"{event.path} [{event.kind}] {event.message}")
        self.hook_lines += len(shown)

    # --- Grad-CAM and decision regions -------------------------------------------------
    def _refuse_while_running(self) -> bool:
        """Views run the model in eval mode in a thread: never beside a training run."""
        if self.running:
            self._error(RuntimeError("a training run is going: stop it first"))
            return True
        return False

    def _views_busy(self) -> bool:
        return any(w.group == "views" and w.is_running for w in self.workers)

    def action_grad_cam(self) -> None:
        if self._refuse_while_running():
            return
        try:
            from tuilab.core import views

            layers = views.conv_layer_paths(self.lab.model)
        except Exception as err:
            self._error(err)
            return
        if not layers:
            self._error(RuntimeError("Grad-CAM needs a Conv2d layer: try the lenet, alexnet, "
                                     "resnet or inception preset"))
            return
        chosen = self.lab.chosen_input
        if chosen is not None and chosen.tensor.dim() == 4 and chosen.tensor.shape[0] == 1:
            self.grad_cam(-1)  # the image the user chose (X): explained as it is
            return
        self.app.push_screen(GradCamPicker(layers, self._cam_index), self._start_grad_cam)

    def _start_grad_cam(self, choice: tuple[int, int | None, str] | None) -> None:
        if choice is None:
            return
        index, cls, layer = choice
        self._cam_index = index
        self.grad_cam(index, cls, layer)

    def grad_cam(self, index: int, class_index: int | None = None,
                 layer: str | None = None) -> Worker[None] | None:
        """Compute Grad-CAM in a worker; the View tab shows it when ready. ``index`` -1: on
        the lab's chosen input (one image, set with X) instead of a task image."""
        if self._refuse_while_running():
            return None
        self.query_one("#view-caption", Static).update("computing Grad-CAM…")
        self._show_tab("tab-view")
        return self._grad_cam_worker(index, class_index, layer)

    @work(thread=True, exclusive=True, exit_on_error=False, group="views")
    def _grad_cam_worker(self, index: int, class_index: int | None, layer: str | None) -> None:
        from tuilab.core import views

        if index == -1:
            chosen = self.lab.chosen_input
            if chosen is None:
                raise ValueError("no chosen input: choose one image with X first")
            view = views.grad_cam_input_view(self.lab.model, chosen.tensor, class_index, layer)
            self.post_message(self.ViewReady("grad-cam", view))
            return
        task = views.grad_cam_task(self.lab)
        key = (task, tuple(self.lab.input_shape))
        data = self._cam_data.get(key)
        if data is None:
            data = self._cam_data[key] = self.lab.task_data(task)
        view = views.grad_cam_view(self.lab.model, data, index, class_index, layer)
        self.post_message(self.ViewReady("grad-cam", view))
        self.post_message(CodeLine(self.lab.grad_cam_code(data, view)))

    def action_boundary(self) -> None:
        task = (self.run.config.get("task") if self.run is not None else None) or (
            self.lab.train_settings.get("task"))
        if task is None and self.lab.editable:
            task = self.lab.spec.task
        self.decision_boundary(str(task), int((self.run.config if self.run else {})
                                              .get("seed", 0) or 0))

    def decision_boundary(self, task: str, seed: int = 0) -> Worker[None] | None:
        """Draw the model's decision regions over ``task``'s points, in a worker."""
        if self._refuse_while_running():
            return None
        self.query_one("#view-caption", Static).update("computing decision regions…")
        self._show_tab("tab-view")
        return self._boundary_worker(task, seed)

    @work(thread=True, exclusive=True, exit_on_error=False, group="views")
    def _boundary_worker(self, task: str, seed: int) -> None:
        from tuilab.core import views

        if task not in views.TWO_D_TASKS:
            raise ValueError(f"decision regions are drawn for the 2-D tasks "
                             f"({', '.join(views.TWO_D_TASKS)}); this run's task is {task!r}")
        data = self.lab.task_data(task, seed=seed)
        self.post_message(self.ViewReady("boundary", views.decision_boundary(self.lab.model,
                                                                             data)))

    def _input_text(self) -> str:
        chosen = self.lab.chosen_input
        return chosen.text if chosen is not None else "?"

    def on_run_panel_view_ready(self, message: ViewReady) -> None:
        message.stop()
        heatmap = self.query_one("#view-map", Heatmap)
        caption = self.query_one("#view-caption", Static)
        view = message.view
        if message.kind == "grad-cam":
            heatmap.show_heat(view.heat, base=view.image)
            p = view.probabilities[view.predicted] if view.probabilities else float("nan")
            source = (f"image {view.index} · label {view.label}" if view.index >= 0
                      else f"the chosen input x = {self._input_text()}")
            caption.update(
                f"Grad-CAM · {source} · predicted "
                f"{view.predicted} ({p:.0%}) · explaining class {view.class_index} at "
                f"{view.layer_path} · bright = looked at")
        else:
            heatmap.show_classes(view.grid, view.points, view.confidence)
            x0, x1, y0, y1 = view.extent
            caption.update(
                f"decision regions · {view.num_classes} classes · val accuracy "
                f"{view.accuracy:.1%} · x {x0:.2f}…{x1:.2f}, y {y0:.2f}…{y1:.2f} · "
                f"dots: validation points")
        self._show_tab("tab-view")

    # --- training -----------------------------------------------------------------------
    def action_train(self) -> None:
        """Open the settings form; its result starts a run."""
        if self.running:
            self.notify("a run is going: p pauses it, x stops it", markup=False)
            return
        try:
            from tuilab.core import views

            defaults = views.train_defaults(self.lab)
            tasks = views.task_names()
        except Exception as err:
            self._error(err)
            return
        self.app.push_screen(TrainSettingsScreen(defaults, tasks, views.check_train_settings),
                             self.start_training)

    def start_training(self, settings: dict[str, Any] | None) -> Worker[None] | None:
        """Register a run with these settings and start its worker (None: cancelled)."""
        if settings is None:
            return None
        if self.running:
            self.notify("a run is going: p pauses it, x stops it", markup=False)
            return None
        if self._views_busy():
            self._error(RuntimeError("a Grad-CAM or decision-region view is being computed: "
                                     "start the run when it is shown"))
            return None
        # None is TrainConfig's default for the optional fields (loss, grad_clip); leaving
        # them out keeps the run's config plain data that TOML (the workspace file) can hold.
        settings = {k: v for k, v in settings.items() if v is not None}
        try:
            run = self.lab.start_run(settings)
        except Exception as err:
            self._error(err)
            return None
        self.run = run
        self.last_batch = None
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._thread_done = threading.Event()
        self.paused = False
        self.running = True
        self.query_one("#train-progress", ProgressBar).update(
            total=int(settings.get("steps") or 1), progress=0)
        self._set_stats(f"{run.name}: starting…")
        self.query_one(LossPlot).set_runs(self.lab.runs)
        self._show_tab("tab-training")
        self.post_message(CodeLine(self._loop_code(settings)))
        self._worker = self._train(run, self._stop, self._pause, self._thread_done)
        return self._worker

    @staticmethod
    def _loop_code(settings: dict[str, Any]) -> str:
        opt = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}.get(
            str(settings.get("optimizer")), "Adam")
        extra = f", momentum={settings.get('momentum')}" if opt == "SGD" else ""
        lines = [
            f"opt = torch.optim.{opt}(net.parameters(), lr={settings.get('lr')}{extra})",
            f"for step in range({settings.get('steps')}):  # task {settings.get('task')}",
            "    opt.zero_grad()",
            "    loss = loss_fn(net(xb), yb)",
            "    loss.backward()",
        ]
        if settings.get("grad_clip"):
            lines.append(f"    nn.utils.clip_grad_norm_(net.parameters(), "
                         f"{settings['grad_clip']})")
        lines.append("    opt.step()")
        # A comment: the steps draw tuilab's task data; the log loads the weights they make.
        return "\n".join("# " + line for line in lines)

    @work(thread=True, exclusive=True, exit_on_error=False, group="training")
    def _train(self, run: RunRecord, stop: threading.Event, pause: threading.Event,
               done: threading.Event) -> None:
        """Iterate the lab's training generator; post each batch (≤ ~2/s) to the UI.

        A cancelled worker (quit, or the panel removed) is only *marked* cancelled: this thread
        runs on to the end of its step, so it says when it has really left the model."""
        worker = get_current_worker()
        batches = self.lab.train(run, stop, pause)
        try:
            for batch in batches:
                self.post_message(self.Metrics(run, batch))
                if worker.is_cancelled:
                    stop.set()
                    pause.clear()
        finally:
            batches.close()
            done.set()
            if worker.is_cancelled:
                self.post_message(self.TrainingThreadEnded(worker))

    def on_run_panel_metrics(self, message: Metrics) -> None:
        """Keep the latest batch; the progress line shows it at most every ``UI_INTERVAL``.

        Each repaint holds the GIL the training thread needs, so the bar and the line follow
        the "latest value replaces stale ones" rule (toolong) instead of repainting per batch.
        """
        self.last_batch = message.batch  # the message bubbles on: the app autosaves the run
        self.query_one(LossPlot).request_replot()
        if message.batch.done:
            self._show_progress()
        elif self._progress_timer is None:
            self._progress_timer = self.set_timer(self.UI_INTERVAL, self._show_progress,
                                                  name="run-progress")

    def _show_progress(self) -> None:
        if self._progress_timer is not None:
            self._progress_timer.stop()
            self._progress_timer = None
        batch, run = self.last_batch, self.run
        if batch is None or run is None:
            return
        self.query_one("#train-progress", ProgressBar).update(
            total=batch.total_steps, progress=batch.step)
        accuracy = f" · val acc {run.val_accuracy[-1]:.1%}" if run.val_accuracy else ""
        loss = f" · loss {run.losses[-1]:.4g}" if run.losses else ""
        state = " · paused" if self.paused and not batch.done else ""
        threads = (f" · {batch.threads} thread{'s' if batch.threads != 1 else ''}"
                   if batch.threads else "")
        self._set_stats(
            f"{run.name} · step {batch.step}/{batch.total_steps} · "
            f"{rate_text(batch.steps_per_s)}{threads} · ETA {_eta(batch.eta_s)}{loss}{accuracy}"
            f"{state}{_on_output(run)}")

    def _set_stats(self, text: str) -> None:
        # layout=False: the line has a fixed size, and a layout pass of the whole screen
        # would hold the GIL the training thread needs (10-20 ms)
        self.query_one("#train-stats", Static).update(text, layout=False)

    def action_pause(self) -> None:
        if not self.running:
            self.notify("no run is going (t starts one)", markup=False)
            return
        if self._pause.is_set():
            self._pause.clear()
            self.paused = False
        else:
            self._pause.set()
            self.paused = True
        self._update_status()

    def action_stop(self) -> None:
        if not self.running:
            self.notify("no run is going", markup=False)
            return
        self._stop.set()
        self._pause.clear()
        self.paused = False
        self._set_stats("stopping after this step…")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR and worker.group == "views":
            self.query_one("#view-caption", Static).update("")
            self._error(worker.error or RuntimeError("the view could not be computed"))
            return
        if worker is not self._worker or event.state not in (
                WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        if event.state == WorkerState.CANCELLED and not self._thread_done.is_set():
            # The thread is still inside a step: reading the model now (the inspector's
            # refresh) races its zero_grad and backward, which crashed the process once.
            self._stop.set()
            self._pause.clear()
            return
        self._finish_run(worker)

    def on_run_panel_training_thread_ended(self, message: TrainingThreadEnded) -> None:
        """A cancelled run's thread has left the model: now the run can end on screen."""
        if message.worker is self._worker:
            self._finish_run(message.worker)

    def _finish_run(self, worker: Worker[None]) -> None:
        """The one place a run ends: message, inspector refresh, decision regions."""
        run = self.run
        self._show_progress()  # the last batch, and no late timer over the final line
        self.running = False
        self.paused = False
        self._worker = None
        if run is None:
            return
        if run.status == "running":  # the generator never started (cancelled at once)
            run.status = "stopped"
            if self.lab.busy_reason:
                self.lab.busy_reason = ""
        batch = self.last_batch
        if worker.state == WorkerState.ERROR:
            error = worker.error
            if run.status != "failed":
                run.status, run.error = "failed", str(error)
            self._error(RuntimeError(f"{run.name} failed: {run.error}"))
        elif run.status == "failed":
            where = f" (at {batch.error_path})" if batch and batch.error_path else ""
            self._error(RuntimeError(f"{run.name} failed: {run.error}{where}"))
        else:
            rate = f", {rate_text(run.steps_per_s)}" if run.steps_per_s else ""
            last = f", loss {run.losses[-1]:.4g}" if run.losses else ""
            self.notify(f"{run.name} {run.status} after {len(run.steps)} steps{rate}{last}",
                        markup=False)
        self._set_stats(f"{run.name} {run.status} · {len(run.steps)} steps"
                        + (f" · {run.error}" if run.error else ""))
        plot = self.query_one(LossPlot)
        plot.set_runs(self.lab.runs)
        plot.replot()
        try:
            self._changed(self.lab.after_run(run))
        except Exception as err:
            self._error(err)
        self._update_status()
        self.post_message(self.RunEnded(run))
        from tuilab.core.views import TWO_D_TASKS

        task = run.config.get("task")
        if run.status != "failed" and task in TWO_D_TASKS:
            self.decision_boundary(str(task), int(run.config.get("seed", 0) or 0))

    def action_toggle_maximize(self) -> None:
        screen = self.screen
        if screen.maximized is self:
            screen.minimize()
        else:
            screen.maximize(self, container=False)

    def action_log_scale(self) -> None:
        self.query_one(LossPlot).action_toggle_log()

    # --- watchers -----------------------------------------------------------------------
    def watch_running(self, running: bool) -> None:
        if self.is_mounted:
            # on the status line only: a class on the panel restyles its whole subtree
            # (~45 ms, twice a run)
            self.query_one("#run-status", Static).set_class(running, "-running")
            self._update_status()

    def watch_paused(self) -> None:
        if self.is_mounted:
            self._update_status()
