"""The tuilab App: palette, builder, inspector, code log and run panel around one `Lab`.

Why it is shaped this way:

* **First frame fast.** The App is constructed with the spec *argument* (a string, or an
  already-parsed workspace) and builds the `Lab` — which imports PyTorch (~2 s) — in a thread
  worker after mount. The palette and the spec tree are plain data and appear at once; the
  header says "loading PyTorch…" until :class:`LabReady` arrives. Tests pass a ready lab.
* **The App owns the state.** Widgets post messages; workers post messages; handlers here call
  the lab and then hand the resulting :class:`LabUpdate` to the inspector (which applies the
  diff in place), the builder (which reconciles the changed subtree), the header and the code
  log. No widget talks to another.
* **Nothing raises out.** Every action that can fail is wrapped: a `TuilabError` (or, as a
  last resort, any exception) becomes an error notification shown with ``markup=False`` (torch
  messages contain ``[...]``), the lab is left as it was, and the app stays up.
* **Shapes never block.** After each edit `lab.summary()` runs in an exclusive thread worker;
  results for an out-of-date spec are dropped by version number.

The App holds no PyTorch logic: it imports no torch and goes through the lab for everything.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, on, work
from textual.actions import SkipAction
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane, Tree

from tuilab.app.collector import IdleCollector
from tuilab.app.keys import KEY_GROUPS, app_bindings
from tuilab.app.lesson_controller import LessonController
from tuilab.app.messages import (
    CodeLine,
    LabChanged,
    LabFailed,
    LabReady,
    MemoryReady,
    SummaryFailed,
    SummaryReady,
)
from tuilab.app.screens.dialogs import ChoiceScreen, ConfirmScreen, TextPrompt, UnsavedScreen
from tuilab.app.screens.help import HelpScreen
from tuilab.app.weights_flow import WeightsActions
from tuilab.app.widgets.arg_prompt import ArgPrompt
from tuilab.app.widgets.builder import BuilderTree, ShapeInfo
from tuilab.app.widgets.choice_prompt import ChoicePrompt
from tuilab.app.widgets.code_log import CodeLog
from tuilab.app.widgets.footer import LabFooter
from tuilab.app.widgets.header import LabHeader
from tuilab.app.widgets.inspector import Inspector, shape_text
from tuilab.app.widgets.line_prompt import NAVIGATION_KEYS, LinePrompt
from tuilab.app.widgets.palette import Palette
from tuilab.core.errors import TuilabError
from tuilab.core.spec import find, leaf_name, parent_path, resolve

if TYPE_CHECKING:
    from tuilab.core.lab import Lab, LabUpdate
    from tuilab.core.workspace import Workspace

DTYPE_CHOICES = (
    ("float32", "single precision: the default"),
    ("float16", "half precision: half the memory, CPU kernels are few and slow"),
    ("bfloat16", "brain float: float32's range with 8 bits of mantissa"),
    ("float64", "double precision: twice the memory, for checking numerics"),
)
SUMMARY_DELAY = 0.15
"""Seconds after an edit before the shape summary starts (see `_request_summary`)."""
AUTOSAVE_DELAY = 1.0
"""Seconds after the last change before the autosave copy is written (one write per burst)."""
AUTOSAVE_BUDGET = 0.005
"""At most this share of the time goes to autosaving: the copy holds every run's loss history
(25 ms to write for a dozen runs), and the write holds the GIL a training run needs."""
AUTOSAVE_MAX_DELAY = 10.0
"""However long a write takes, the copy is never older than this."""


def autosave_delay(last_cost: float) -> float:
    """Seconds from a change to its autosave, given how long the last write took."""
    return min(AUTOSAVE_MAX_DELAY, max(AUTOSAVE_DELAY, last_cost / AUTOSAVE_BUDGET))


def while_running(handler: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """Drop a thread's result that lands while the app shuts down.

    A worker (shapes, loading, a run) can post its result just as the user quits; by then
    the main screen's widgets are being removed and showing the result would raise out of
    the shutdown.
    """
    @functools.wraps(handler)
    def guarded(app: App, message: Any) -> None:
        if app.is_running:
            handler(app, message)
    return guarded


# Actions that need a loaded lab and the main screen (not while a dialog is open).
LAB_ACTIONS = frozenset({
    "add_after", "add_into", "insert_before", "move_up", "move_down", "indent", "outdent",
    "remove", "duplicate", "rename", "edit_args", "mark", "share", "undo", "redo", "freeze",
    "toggle_training", "device", "precision", "save", "save_as", "copy_last", "copy_all",
    "run_forward", "run_backward", "run_zero_grad", "run_init", "run_train", "run_pause",
    "run_stop", "copy_export", "set_input_shape", "save_weights", "load_weights", "values",
    "choose_input",
})
FILE_ACTIONS = frozenset({"open_workspace", "load_preset", "toggle_inspector"})
NARROW_BELOW = 110
"""Columns under which the inspector is shown on a key instead of beside the model."""
WIDE_FROM = 160
"""Columns from which the palette's list stays open beside the model."""

class MainScreen(Screen[None]):
    """The lab's one full screen; dialogs are modal screens pushed above it.

    While a dialog is open the lab's keys are off (`TuilabApp.check_action`), so the footer
    left visible under the dialog is refreshed on suspend and resume to show just that.

    A prompt (precision, device, a node's arguments) is asked in the header's line and
    leaves the focus where it was (`widgets/line_prompt.py`). Its navigation keys are bindings
    here, with priority over the focused panel's, that step aside (`SkipAction`) while no
    prompt is open; every other key that reaches this screen meanwhile is the prompt's too.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(key, f"prompt_key('{key}')", show=False, priority=True)
        for key in NAVIGATION_KEYS]

    def _asking(self) -> LabHeader | None:
        return getattr(self.app, "asking", None)

    def action_prompt_key(self, key: str) -> None:
        header = self._asking()
        if header is None:
            raise SkipAction
        header.press(key)

    def on_key(self, event: events.Key) -> None:
        """Keys that reach the screen while a prompt is open are its own: typed text, and
        nothing else reaches the lab's bindings meanwhile."""
        header = self._asking()
        if header is not None:
            event.stop()
            event.prevent_default()
            header.press(event.key, event.character if event.is_printable else None)

    def on_paste(self, event: events.Paste) -> None:
        header = self._asking()
        if header is not None:
            event.stop()
            header.paste(event.text)

    def on_screen_suspend(self) -> None:
        asking = self._asking()
        if asking is not None:  # a dialog over the lab (quit…): the prompt is dropped
            asking.cancel()
        self.refresh_bindings()

    def on_screen_resume(self) -> None:
        self.refresh_bindings()


class TuilabApp(WeightsActions, App[int]):
    """The lab. Construct it with :func:`make_app`."""

    CSS_PATH = "app.tcss"
    TITLE = "tuilab"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-narrow"), (NARROW_BELOW, "-medium"), (WIDE_FROM, "-wide")]
    """Laid out by width (app.tcss): from WIDE_FROM three panes; below it the palette is a
    search line whose list opens while it has focus; below NARROW_BELOW the inspector takes
    the model's place on `v`, so the model's rows keep name, shape and count."""
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (32, "-tall")]

    BINDINGS: ClassVar[list[BindingType]] = app_bindings()

    def __init__(self, spec_arg: str | None = None, *, lab: Lab | None = None,
                 workspace: Workspace | None = None, workspace_path: Path | None = None,
                 input_shape: str | None = None, offer_restore: bool = False,
                 lesson: str | None = None, lesson_step: int | None = None) -> None:
        super().__init__()
        self.spec_arg = spec_arg
        self.lessons = LessonController(self)
        """The lesson being walked, if any (`tuilab lesson ID`, or o)."""
        self._start_lesson = (lesson, lesson_step) if lesson is not None else None
        self.lab: Lab | None = lab
        """The engine; None until the loading worker has built it."""
        self._workspace = workspace
        self._workspace_path = workspace_path
        self._input_shape = input_shape
        self._offer_restore = offer_restore
        self._summary_version = 0
        self._quitting = False
        self._autosave_timer: Any = None
        self._autosave_cost = 0.0
        """Seconds the last autosave took (it spaces out the next)."""
        self._declined: set[Path] = set()
        """Autosaves of lost sessions the user chose not to restore (removed at this
        session's first autosave)."""
        self._summary_timer: Any = None
        self.summary: Any = None
        """The last shape summary shown (tests read it)."""
        self.last_update: LabUpdate | None = None
        self.collector = IdleCollector()
        self._asking_header: LabHeader | None = None
        """Runs full garbage collections between edits rather than inside one."""
        self._keys_thread: contextlib.ExitStack | None = None
        """torch's one-thread setting for this (the keys') thread, from the first lab on."""

    # --- layout ---------------------------------------------------------------------------
    def get_default_screen(self) -> Screen[Any]:
        return MainScreen(id="main-screen")

    def compose(self) -> ComposeResult:
        yield LabHeader(id="header")
        with Horizontal(id="main"):
            yield Palette(id="palette")
            with Vertical(id="builder-pane"):
                yield BuilderTree(id="builder")
                yield Static("", id="builder-status", markup=False)
            yield Inspector(id="inspector")
        with TabbedContent(id="bottom"):
            with TabPane("Code log", id="log-tab"):
                yield CodeLog(id="code-log")
            with TabPane("Run", id="run-tab"):
                yield Static("runs: loading PyTorch…", id="run-placeholder")
        yield LabFooter()

    @property
    def asking(self) -> LabHeader | None:
        """The header while it asks something (`ask`). Read on every key and binding check,
        so the header is found once, when it first asks, not queried each time."""
        header = self._asking_header
        return header if header is not None and header.prompt is not None else None

    def ask(self, prompt: LinePrompt) -> None:
        """Ask `prompt` in the header's line (`widgets/line_prompt.py`), unless something is
        asked there already. From a text field (the palette's search), the focus moves to
        the model first: the field would take the prompt's typing."""
        self._asking_header = self.header
        if self.header.ask(prompt) and isinstance(self.focused, Input):
            self.builder.focus()

    @property
    def builder(self) -> BuilderTree:
        return self.query_one("#builder", BuilderTree)

    @property
    def inspector(self) -> Inspector:
        return self.query_one("#inspector", Inspector)

    @property
    def header(self) -> LabHeader:
        return self.query_one("#header", LabHeader)

    @property
    def code_log(self) -> CodeLog:
        return self.query_one("#code-log", CodeLog)

    @property
    def palette(self) -> Palette:
        return self.query_one("#palette", Palette)

    @property
    def selected_path(self) -> str | None:
        """The builder's selected node path (the run panel reads this)."""
        try:
            return self.builder.selected_path
        except Exception:
            return None

    def run_panel(self) -> Widget | None:
        """The run panel, when the run side is installed and the lab is loaded."""
        try:
            from tuilab.app.widgets.run_panel import RunPanel
        except Exception:
            return None
        panels = self.query(RunPanel)
        return panels.first() if panels else None

    # --- start-up -------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.collector.install(self)
        self.query_one("#palette").border_title = "palette"
        self.query_one("#builder-pane").border_title = "model"
        self.query_one("#inspector").border_title = "inspector"
        self.builder.focus()
        if self.lab is not None:
            lab, self.lab = self.lab, None  # shown as a first load, not as "opened"
            self._lab_ready(lab)
            return
        if self._workspace is not None:
            self.builder.show_spec(self._workspace.spec)  # drawn before PyTorch has loaded
        if self._offer_restore:
            self._maybe_restore()
            return
        # after the first paint: the loader's `import torch` would otherwise hold it back
        self.call_after_refresh(self._start_loading)

    def _start_loading(self) -> None:
        from tuilab.core.usercode import is_user_code_arg

        spec_arg = self.spec_arg or "mlp"
        if self._workspace is None and is_user_code_arg(spec_arg):
            self._confirm_user_code(spec_arg)
            return
        self._set_status("loading PyTorch…")
        self._load_worker(spec_arg, self._workspace, self._workspace_path, False)

    def _maybe_restore(self) -> None:
        """A session that ended abruptly left its work behind: offer it back (declining one
        offers the next, if several sessions were lost)."""
        from tuilab.core import autosave

        try:
            leftover = autosave.pending_restore(skip=self._declined)
        except Exception:
            leftover = None
        if leftover is None:
            self._start_loading()
            return

        def answer(yes: bool | None) -> None:
            if not yes:
                # kept until this session's first autosave (`_autosave`): a slip is undone by
                # quitting before any change; offered once per start, even if it cannot go
                self._declined.add(leftover.path)
                self.notify(f"not restored; the copy stays at {leftover.path} until your "
                            "first change is autosaved", markup=False, timeout=8)
                self._maybe_restore()
                return
            try:
                autosave.adopt(leftover.path)
            except OSError:
                self.notify("another tuilab restored that copy first; opening as usual",
                            severity="warning", markup=False)
                self._start_loading()
                return
            self._workspace = leftover.workspace
            self._workspace_path = None
            self.builder.show_spec(leftover.workspace.spec)
            self._set_status("loading PyTorch…")
            self._load_worker("autosave", leftover.workspace, None, True)

        self.push_screen(ConfirmScreen(
            "Restore unsaved work?",
            f"A tuilab session ended without saving '{leftover.workspace.spec.name}'. "
            f"A copy was kept at {leftover.path}. Restore it?",
            yes="Restore", no="Discard it", default=True), answer)

    def _confirm_user_code(self, spec_arg: str) -> None:
        """Show the file's path and SHA-256 before importing (importing runs its code)."""
        from tuilab.core.usercode import describe, split_arg

        try:
            path, name = split_arg(spec_arg)
            absolute, digest = describe(path)
        except TuilabError as error:
            self._load_failed(str(error))
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._set_status(f"importing {absolute.name} and PyTorch…")
                self._load_worker(spec_arg, None, None, False)
            else:
                self.exit(return_code=1, message="not imported")

        self.push_screen(ConfirmScreen(
            "Import your Python file?",
            f"tuilab will import and run:\n\n  {absolute}\n  SHA-256 {digest}\n\n"
            f"and then call {name}(). Only continue if you trust this file.",
            yes="Import and run", no="Quit"), answer)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load_worker(self, spec_arg: str, workspace: Workspace | None,
                     workspace_path: Path | None, dirty: bool) -> None:
        """Import PyTorch and build the lab off the UI thread; post the result."""
        try:
            from tuilab.core.lab import Lab

            if workspace is not None:
                lab = Lab.from_workspace(workspace, path=workspace_path)
            else:
                from tuilab.core.usercode import is_user_code_arg

                if is_user_code_arg(spec_arg):
                    from tuilab.core.abandonable import Abandoned

                    try:  # guessing its input runs the user's forward, which may never end
                        lab = _in_user_code(lambda: _user_lab(spec_arg, self._input_shape),
                                            "import")
                    except Abandoned:
                        return
                else:
                    from tuilab.core.workspace import load_workspace_arg

                    workspace = load_workspace_arg(spec_arg)
                    path = Path(spec_arg) if spec_arg.endswith(".toml") else None
                    lab = Lab.from_workspace(_with_input_shape(workspace, self._input_shape),
                                             path=path)
            lab.dirty = dirty
        except TuilabError as error:
            self.post_message(LabFailed(str(error)))
            return
        except Exception as error:  # a broken user module can raise anything
            self.post_message(LabFailed(f"{type(error).__name__}: {error}"))
            return
        self.post_message(LabReady(lab))

    @on(LabReady)
    @while_running
    def _on_lab_ready(self, message: LabReady) -> None:
        self._lab_ready(message.lab)

    @on(LabFailed)
    @while_running
    def _on_lab_failed(self, message: LabFailed) -> None:
        self._load_failed(message.error)

    def _load_failed(self, error: str) -> None:
        gc.enable()  # nothing was loaded: collect as usual (see `_lab_ready`)
        if self.lab is None:
            self._set_status(f"could not load: {error}")
            self.query_one("#builder-status", Static).update(error)
        self.notify(error, title="could not load", severity="error", markup=False, timeout=15)

    def _set_status(self, text: str) -> None:
        self.header.status = text
        self.header.refresh()

    def _lab_ready(self, lab: Lab, *, announce: bool = True) -> None:
        """A lab was built (at start-up, or a file/preset was opened): show all of it.
        `announce=False` for a lesson's step, whose pane already says what opened."""
        previous = self.lab
        self.lab = lab
        if self._keys_thread is None:  # torch is loaded now
            from tuilab.core.threads import one_thread_for_keys

            self._keys_thread = contextlib.ExitStack()
            self._keys_thread.enter_context(one_thread_for_keys())
        self.refresh_bindings()  # the lab's keys are possible now: the footer shows them on
        try:
            if lab.editable:
                self.builder.show_spec(lab.spec, new_model=previous is not None)
            else:
                self.builder.show_modules(lab.snapshot.modules)
            self.inspector.load(lab)
            self.header.show(lab)
            for index, code in enumerate(lab.code_log):  # the load, then its modes
                self.code_log.add(lab.load_line if index == 0 else code, script=code)
            self._mount_run_panel(lab, previous)
            self._update_status()
            self._request_summary()
        except Exception as error:  # never leave a half-drawn app without saying why
            self.notify(f"{type(error).__name__}: {error}", severity="error", markup=False)
        if previous is not None and announce:
            self.notify(f"opened {lab.name}" + (f" from {lab.path}" if lab.path else ""),
                        markup=False)
        for note in lab.load_messages:
            self.notify(note, severity="warning", markup=False, timeout=10)
        if lab.too_large_bytes:
            self.notify(lab.too_large_message(), severity="warning", markup=False, timeout=10)
        if not lab.editable:
            self.notify("your own module: inspection, modes and runs work; palette edits are "
                        "off (it was not built from the palette)", severity="information",
                        markup=False, timeout=8)
            self._ask_if_no_guess_ran(lab)
        # A big model's objects make every full garbage collection slow (160-240 ms on
        # gpt2_xl, a visible hitch after an edit); move what exists now out of its reach
        # (freeze alone: a collection first would cost the start-up as much again), and
        # collect again from here on (`launch` turns the collector off while loading).
        gc.freeze()
        gc.enable()
        if self._start_lesson is not None:  # `tuilab lesson ID`: the lab is up, open it
            lesson_id, step = self._start_lesson
            self._start_lesson = None
            self.lessons.open(lesson_id, step)
        elif self.lessons.active:
            self.lessons.refresh()  # another lab: the pane says the learner left the path

    def _ask_if_no_guess_ran(self, lab: Lab) -> None:
        """None of the inputs the model suggests ran: ask for one, showing where it failed."""
        guess = lab.input_guess
        if guess is None or guess.ok:
            return
        shape = ", ".join(str(d) for d in guess.shape)
        self._ask_input_shape(
            "What input does your model take?",
            f"tuilab tried {guess.tried} input(s) from what the model says about itself; "
            f"({shape}) fails in {guess.error_path or '(model)'}: {guess.error_message}\n"
            "Type the shape it takes, batch first (escape keeps this one).")

    def _mount_run_panel(self, lab: Lab, previous: Lab | None) -> None:
        pane = self.query_one("#run-tab", TabPane)
        try:
            from tuilab.app.widgets.run_panel import RunPanel
        except Exception as error:  # the run side is optional for the builder
            for placeholder in self.query("#run-placeholder"):
                placeholder.update(f"runs: not available ({type(error).__name__}: {error})")
            return
        existing = self.run_panel()
        if existing is not None and previous is not None:
            try:
                existing.set_lab(lab)  # type: ignore[attr-defined]
                return
            except Exception:
                existing.remove()
        for placeholder in self.query("#run-placeholder"):
            placeholder.remove()
        pane.mount(RunPanel(lab, id="run-panel"))

    # --- applying changes -----------------------------------------------------------------
    def _apply(self, update: LabUpdate, *, select: str | None = None,
               log: bool = True, reshape: bool = True) -> None:
        """Show what an action changed: inspector diff, builder subtree, header, code log."""
        lab = self.lab
        if lab is None:
            return
        self.last_update = update
        self.collector.updated()
        try:
            if lab.editable and reshape:
                self.builder.show_spec(lab.spec)
            self.inspector.apply(update, lab)
            self.header.show(lab)
            if log:
                self.code_log.add(update.code)
            if select is not None:
                self.builder.select_path(select)
            if reshape:
                self._request_summary()
        except Exception as error:  # the lab changed; only the drawing failed
            self.notify(f"display: {type(error).__name__}: {error}", severity="error",
                        markup=False)
        finally:
            self._schedule_autosave()
            if self.lessons.active:
                self.lessons.refresh()

    def _error(self, error: BaseException) -> None:
        text = str(error) if isinstance(error, TuilabError) else (
            f"{type(error).__name__}: {error}")
        self.notify(text or type(error).__name__, severity="error", markup=False, timeout=8)

    def _need_lab(self) -> Lab | None:
        if self.lab is None:
            self.notify("still loading PyTorch…", severity="warning")
        return self.lab

    def _editable_lab(self) -> Lab | None:
        lab = self._need_lab()
        if lab is None:
            return None
        if not lab.editable:
            try:
                lab.spec  # noqa: B018  (raises the explanation)
            except TuilabError as error:
                self._error(error)
            return None
        return lab

    def _edit(self, action: str, *args: Any, select: str | None = None,
              select_result: bool = True, **kwargs: Any) -> LabUpdate | None:
        """`lab.edit(...)`; on success show it, on failure say why (the model is unchanged)."""
        lab = self._editable_lab()
        if lab is None:
            return None
        try:
            update = lab.edit(action, *args, **kwargs)
        except TuilabError as error:
            self._error(error)
            return None
        except Exception as error:
            self._error(error)
            return None
        target = select if select is not None else (update.path if select_result else None)
        self._apply(update, select=target)
        return update

    def _selected(self) -> str | None:
        path = self.builder.selected_path
        if path is None:
            self.notify("select a node in the model tree first", severity="warning")
        return path

    def _position(self, path: str, *, after: bool) -> tuple[str, int | None]:
        """(parent path, index) for a block placed after/before the node at `path`."""
        assert self.lab is not None
        if path == "":
            return "", None if after else 0
        parent = parent_path(path)
        names = [child.name for child in find(self.lab.spec.root, parent).children]
        index = names.index(leaf_name(path))
        return parent, index + 1 if after else index

    # --- summary (shapes) -----------------------------------------------------------------
    def _request_summary(self) -> None:
        """Recompute shapes soon: after this frame is drawn, once per burst of edits.

        The summary thread competes with the UI for the GIL (~1 s for gpt2_xl), so it starts
        only after the edit's frame is on screen, and a key held down does not start one per
        repeat; a result for an older spec is dropped by version.
        """
        if self.lab is None:
            return
        self._summary_version += 1
        if self._summary_timer is not None:
            self._summary_timer.stop()
        self._summary_timer = self.set_timer(SUMMARY_DELAY, self._start_summary,
                                             name="summary")

    @property
    def summary_pending(self) -> bool:
        """A shape summary is scheduled but not started (tests wait for it)."""
        return self._summary_timer is not None

    def _start_summary(self) -> None:
        self._summary_timer = None
        if self.lab is not None:
            self._summary_worker(self.lab, self._summary_version)

    @work(thread=True, exclusive=True, group="summary", exit_on_error=False)
    def _summary_worker(self, lab: Lab, version: int) -> None:
        try:
            if lab.editable:
                summary = lab.summary()
            else:  # a user's forward may never return: wait where quitting can abandon it
                from tuilab.core.abandonable import Abandoned

                try:
                    summary = _in_user_code(lab.summary, "summary")
                except Abandoned:
                    return
        except Exception as error:
            text = str(error) if isinstance(error, TuilabError) else (
                f"{type(error).__name__}: {error}")
            self.post_message(SummaryFailed(text, version))
            return
        self.post_message(SummaryReady(summary, version))
        # Then the memory plan (a training step on meta): shapes do not wait for it, and a
        # newer edit's summary makes it moot.
        plan = None
        if summary.error is None and summary.method == "meta" and \
                version == self._summary_version:
            with contextlib.suppress(Exception):  # the plan is extra; the shapes stand
                plan = lab.memory_plan(summary)
        self.post_message(MemoryReady(plan, version))

    @on(SummaryReady)
    @while_running
    def _on_summary(self, message: SummaryReady) -> None:
        if message.version != self._summary_version:
            return  # an older spec's shapes
        self.summary = message.summary
        shapes, error_path, error_message = summary_shapes(message.summary)
        self.builder.set_shapes(shapes, error_path, error_message)
        self._update_status()

    @on(MemoryReady)
    @while_running
    def _on_memory(self, message: MemoryReady) -> None:
        if message.version == self._summary_version:
            self.header.show_memory(message.plan)

    @on(SummaryFailed)
    @while_running
    def _on_summary_failed(self, message: SummaryFailed) -> None:
        if message.version != self._summary_version:
            return
        self.summary = None
        self.header.show_memory(None)
        self.builder.set_shapes({}, None, "")
        self.query_one("#builder-status", Static).update(f"shapes: {message.error}")

    def _update_status(self) -> None:
        """The line under the builder: input → output, or the shape error in full."""
        lab = self.lab
        status = self.query_one("#builder-status", Static)
        if lab is None:
            return
        summary = self.summary
        shape_in = shape_text(lab.input_shape) if lab.input_shape else "?"
        if summary is None:
            status.update(f"input {shape_in} · shapes: computing…")
            return
        error = getattr(summary, "error", None)
        if error is not None:
            hint = getattr(error, "hint", None)
            text = f"✗ {getattr(error, 'path', '') or '(model)'}: {getattr(error, 'message', '')}"
            status.update(text + (f"  hint: {hint}" if hint else ""))
            status.add_class("-error")
            return
        status.remove_class("-error")
        output = getattr(summary, "output_shape", None)
        method = getattr(summary, "method", "")
        out = shape_text(output) if output is not None else "?"
        macs = getattr(summary, "total_macs", 0) or 0
        text = f"input {shape_in} → output {out}"
        if macs:
            text += f" · {macs:,} MACs"
        if method:
            text += f" · shapes on {method}"
        if not lab.editable:
            text += " · your own module: palette edits are off"
        status.update(text)

    # --- builder events -------------------------------------------------------------------
    @on(Palette.Chosen)
    def _palette_chosen(self, event: Palette.Chosen) -> None:
        event.stop()
        self.palette.select_block(event.block)
        self.action_add_after()
        if self.size.width < WIDE_FROM:
            self.builder.focus()  # the palette's list closes; the new block shows in full

    # --- values and the chosen input (app/widgets/values.py, app/screens/input_prompt.py) ---
    def action_values(self) -> None:
        from tuilab.app.widgets.values import open_values

        open_values(self)

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a tensor's row (inspector, Forward/Backward/Params tabs): its values."""
        from tuilab.app.widgets.values import open_values, selected_row_path

        path = selected_row_path(event)
        if path and self.lab is not None and isinstance(self.screen, MainScreen):
            event.stop()
            open_values(self, path)

    @on(Tree.NodeHighlighted, "#builder")
    def _node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        """The state_dict tab and the Params tab follow the builder's selection."""
        from tuilab.app.widgets.values import follow_selection

        follow_selection(self, self.builder.selected_path)

    def action_choose_input(self) -> None:
        from tuilab.app.screens.input_prompt import open_input_prompt

        open_input_prompt(self)

    # --- messages from the run side -------------------------------------------------------
    @on(LabChanged)
    @while_running
    def _lab_changed(self, message: LabChanged) -> None:
        """A run (forward pass, training, init, hook) changed the model: show the diff."""
        message.stop()
        self._apply(message.update, log=False, reshape=False)

    @on(CodeLine)
    @while_running
    def _code_line(self, message: CodeLine) -> None:
        message.stop()
        self.code_log.add(message.code)

    # --- which actions are possible now ---------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in LAB_ACTIONS or action in FILE_ACTIONS:
            if not isinstance(self.screen, MainScreen) or self.asking is not None:
                return False  # a dialog or a choice prompt is open: its keys, not ours
            if action in LAB_ACTIONS and self.lab is None:
                return None
        return True

    # --- build actions --------------------------------------------------------------------
    def _add(self, *, after: bool = True, into: bool = False) -> None:
        lab = self._editable_lab()
        if lab is None:
            return
        block = self.palette.selected_block
        if block is None:
            self.notify("choose a block in the palette first (/ to search)", severity="warning")
            return
        path = self._selected()
        if path is None:
            return
        try:
            if into:
                node = find(lab.spec.root, path)
                if not node.is_container:
                    self.notify(f"'{path or lab.name}' is a {node.block}, not a container: "
                                "use a to add after it", severity="error", markup=False)
                    return
                parent, index = path, None
            else:
                parent, index = self._position(path, after=after)
        except TuilabError as error:
            self._error(error)
            return
        self._edit("add", block, parent, index)

    def action_add_after(self) -> None:
        """Add the palette's block after the selected node (into the model at the root)."""
        self._add(after=True)

    def action_add_into(self) -> None:
        """Add the palette's block at the end of the selected container."""
        self._add(into=True)

    def action_insert_before(self) -> None:
        """Insert the palette's block before the selected node."""
        self._add(after=False)

    def action_move_up(self) -> None:
        path = self._selected()
        if path is not None:
            self._edit("move", path, -1)

    def action_move_down(self) -> None:
        path = self._selected()
        if path is not None:
            self._edit("move", path, 1)

    def action_indent(self) -> None:
        path = self._selected()
        if path is not None:
            self._edit("indent", path)

    def action_outdent(self) -> None:
        path = self._selected()
        if path is not None:
            self._edit("outdent", path)

    def action_remove(self) -> None:
        lab = self._editable_lab()
        path = self._selected()
        if lab is None or path is None:
            return
        select = None
        if path:
            parent = parent_path(path)
            try:
                names = [c.name for c in find(lab.spec.root, parent).children]
                index = names.index(leaf_name(path))
            except (TuilabError, ValueError):
                names, index = [], 0
            remaining = [n for n in names if n != leaf_name(path)]
            if remaining:
                # positional children are renumbered: the node now at this index
                position = min(index, len(remaining) - 1)
                name = (str(position) if all(n.isdigit() for n in names)
                        else remaining[position])
                select = f"{parent}.{name}" if parent else name
            else:
                select = parent
        self._edit("remove", path, select=select)

    def action_duplicate(self) -> None:
        path = self._selected()
        if path is not None:
            self._edit("duplicate", path)

    def action_rename(self) -> None:
        lab = self._editable_lab()
        path = self._selected()
        if lab is None or path is None:
            return
        current = leaf_name(path) if path else lab.name

        def done(name: str | None) -> None:
            if name and name != current:
                self._edit("rename", path, name)

        self.push_screen(TextPrompt(f"Rename {path or 'the model'}", current,
                                    hint="no dots or spaces; positional containers (0, 1, 2…) "
                                    "keep their numbers"), done)

    def action_edit_args(self) -> None:
        """Edit the selected node's arguments in the header's line (`widgets/arg_prompt.py`)."""
        lab = self._editable_lab()
        path = self._selected()
        if lab is None or path is None:
            return
        try:
            shown = find(lab.spec.root, path)
            node = resolve(lab.spec.root, shown)
            definition = node.definition
        except TuilabError as error:
            self._error(error)
            return
        if not definition.args:
            self.notify(f"{definition.name} has no arguments to edit", severity="warning")
            return
        values = [(arg, node.args.get(arg.name, arg.default)) for arg in definition.args]
        title = f"{path or lab.name}: {definition.code_name}" + (
            " (shared: every use changes)" if shown.ref else "")

        def submit(changes: dict[str, str]) -> None:
            # raises TuilabError: the prompt says why, marks the field and stays open
            update = lab.edit("set_args", path, changes)
            self._apply(update, select=path)

        self.ask(ArgPrompt(title, values, submit))

    def action_mark(self) -> None:
        path = self._selected()
        if path is None or self._editable_lab() is None:
            return
        builder = self.builder
        previous = builder.marked
        builder.marked = path
        builder.relabel_path(previous)
        builder.relabel_path(path)
        self.notify(f"marked {path or 'the model'}: select a place and press s to share it "
                    "there", markup=False)

    def action_share(self) -> None:
        lab = self._editable_lab()
        path = self._selected()
        if lab is None or path is None:
            return
        marked = self.builder.marked
        if marked is None:
            self.notify("mark the node to share with m first", severity="warning")
            return
        try:
            parent, index = self._position(path, after=True)
        except TuilabError as error:
            self._error(error)
            return
        self._edit("share", marked, parent, index)

    def action_freeze(self) -> None:
        lab = self._editable_lab()
        path = self._selected()
        if lab is None or path is None:
            return
        try:
            node = resolve(lab.spec.root, find(lab.spec.root, path))
        except TuilabError as error:
            self._error(error)
            return
        self._edit("set_frozen", path, not node.frozen, select=path)

    def action_undo(self) -> None:
        self._edit("undo", select=self.builder.selected_path)

    def action_redo(self) -> None:
        self._edit("redo", select=self.builder.selected_path)

    def action_focus_search(self) -> None:
        self.palette.query_one("#palette-search").focus()

    def action_focus_model(self) -> None:
        """Back from the palette (escape): to the model, or the inspector in its place."""
        if self.screen.has_class("-inspector") and self.size.width < NARROW_BELOW:
            self.inspector.modules_tree.focus()
        else:
            self.builder.focus()

    def action_toggle_inspector(self) -> None:
        """To the inspector and back. Under NARROW_BELOW columns the inspector is hidden
        (app.tcss): the screen's `-inspector` class shows it in the model's place."""
        screen = self.screen
        showing = not self.inspector.has_focus_within
        screen.set_class(showing, "-inspector")
        if showing:
            self.call_after_refresh(self.inspector.modules_tree.focus)
        else:
            self.builder.focus()

    def on_resize(self) -> None:
        """A footer that fits: at 80 columns the full one cut "Quit" off."""
        for footer in self.screen.query(Footer):
            footer.compact = self.size.width < NARROW_BELOW

    def action_set_input_shape(self) -> None:
        self._ask_input_shape("Input shape (batch first)", "e.g. 1, 1, 32, 32")

    def _ask_input_shape(self, title: str, hint: str) -> None:
        lab = self._need_lab()
        if lab is None:
            return
        current = ", ".join(str(d) for d in lab.input_shape)

        def done(text: str | None) -> None:
            if not text:
                return
            try:
                update = lab.set_input_shape(text)
            except Exception as error:
                self._error(error)
                return
            self._apply(update)

        self.push_screen(TextPrompt(title, current, hint=hint), done)

    # --- modes ----------------------------------------------------------------------------
    def _mode(self, call: Callable[[], LabUpdate]) -> None:
        try:
            update = call()
        except Exception as error:  # TuilabError, or torch refusing the combination
            self._error(error)
            return
        self._apply(update, reshape=False)
        self._request_summary()  # a mode, device or dtype changes what the forward does
        panel = self.run_panel()
        if panel is not None and hasattr(panel, "_update_status"):
            with contextlib.suppress(Exception):
                panel._update_status()

    def action_toggle_training(self) -> None:
        lab = self._need_lab()
        if lab is not None:
            self._mode(lambda: lab.set_training(not lab.training))

    def action_device(self) -> None:
        lab = self._need_lab()
        if lab is None:
            return
        try:
            devices = lab.devices()
        except Exception as error:
            self._error(error)
            return
        choices = [(d.name, d.description if d.available else d.reason, d.available)
                   for d in devices]

        def chosen(name: str | None) -> None:
            if name and name != lab.device:
                self._mode(lambda: lab.set_device(name))

        self.ask(ChoicePrompt("Device", choices, lab.device, chosen))

    def action_precision(self) -> None:
        lab = self._need_lab()
        if lab is None:
            return

        def chosen(name: str | None) -> None:
            if name and name != lab.dtype_name:
                self._mode(lambda: lab.set_dtype(name))

        self.ask(ChoicePrompt("Precision", [(n, d, True) for n, d in DTYPE_CHOICES],
                              lab.dtype_name, chosen))

    # --- runs (the run panel does the work) -----------------------------------------------
    def _run(self, action: str) -> None:
        if self._need_lab() is None:
            return
        panel = self.run_panel()
        method = getattr(panel, f"action_{action}", None) if panel is not None else None
        if method is None:
            self.notify("runs are not available in this build", severity="warning")
            return
        try:
            method()
        except Exception as error:
            self._error(error)

    def action_run_forward(self) -> None:
        self._run("forward")

    def action_run_backward(self) -> None:
        self._run("backward")

    def action_run_zero_grad(self) -> None:
        self._run("zero_grad")

    def action_run_init(self) -> None:
        self._run("init")

    def action_run_train(self) -> None:
        self._run("train")

    def action_run_pause(self) -> None:
        self._run("pause")

    def action_run_stop(self) -> None:
        self._run("stop")

    def action_run_add_hook(self) -> None:
        self._run("add_hook")

    def action_run_remove_hooks(self) -> None:
        self._run("remove_hooks")

    def action_run_grad_cam(self) -> None:
        self._run("grad_cam")

    def action_run_boundary(self) -> None:
        self._run("boundary")

    def action_run_log_scale(self) -> None:
        self._run("log_scale")

    def action_run_toggle_maximize(self) -> None:
        self._run("toggle_maximize")

    # --- code log -------------------------------------------------------------------------
    def action_copy_last(self) -> None:
        text = self.code_log.last
        if text:
            self.copy_to_clipboard(text)
            self.notify(f"copied: {text[:60]}", markup=False)

    def action_copy_all(self) -> None:
        text = self.code_log.all_text
        if text:
            self.copy_to_clipboard(text)
            self.notify(f"copied {len(self.code_log.lines_text)} lines", markup=False)

    def action_copy_export(self) -> None:
        try:
            text = self.inspector.export_text()
        except Exception as error:
            self._error(error)
            return
        if text:
            self.copy_to_clipboard(text)
            self.notify(f"copied the exported source ({text.count(chr(10))} lines)")
        else:
            self.notify("no exported source for this model", severity="warning")

    # --- files ----------------------------------------------------------------------------
    def _save(self, path: str | None = None, then: Callable[[], None] | None = None) -> None:
        lab = self._editable_lab()
        if lab is None:
            return
        if path is None and lab.path is None:
            self.action_save_as(then)
            return
        try:
            saved = lab.save(path)
        except TuilabError as error:
            from tuilab.core.errors import FileChangedError

            if isinstance(error, FileChangedError):
                self._confirm_overwrite(path, then, error)
                return
            self._error(error)
            return
        except OSError as error:
            self._error(error)
            return
        self.header.show(lab)
        self.notify(f"saved {saved}", markup=False)
        if then is not None:
            then()

    def _confirm_overwrite(self, path: str | None, then: Callable[[], None] | None,
                           error: TuilabError) -> None:
        lab = self.lab
        assert lab is not None

        def answer(yes: bool | None) -> None:
            if not yes:
                return
            try:
                saved = lab.save(path, overwrite=True)
            except (TuilabError, OSError) as again:
                self._error(again)
                return
            self.header.show(lab)
            self.notify(f"saved {saved}", markup=False)
            if then is not None:
                then()

        self.push_screen(ConfirmScreen("Overwrite?", str(error), yes="Overwrite", no="Cancel"),
                         answer)

    def action_save(self) -> None:
        if self.lab is not None and not self.lab.editable:  # a user's module: its weights
            from tuilab.app.weights_prompt import save_weights_as

            save_weights_as(self, self.lab)
            return
        self._save()

    def action_save_as(self, then: Callable[[], None] | None = None) -> None:
        lab = self._editable_lab()
        if lab is None:
            return
        if lab.path is not None:
            default = str(lab.path)
        else:
            from tuilab.core.filenames import default_save_path

            default = default_save_path(lab.name)  # a model's name may hold "../" or "/"

        def done(text: str | None) -> None:
            if text:
                if not text.endswith(".toml"):
                    text += ".toml"
                self._save(text, then)

        self.push_screen(TextPrompt("Save workspace as", default,
                                    hint="a .toml file: model, modes, training settings and "
                                    "run history"), done)

    def _unsaved_then(self, what: str, proceed: Callable[[], None]) -> None:
        """Run `proceed` now, or after the user saved or discarded the unsaved work."""
        lab = self.lab
        if lab is not None and lab.weights_unsaved:
            from tuilab.app.weights_prompt import ask_to_save_weights

            ask_to_save_weights(self, lab, what, proceed)
            return
        if lab is None or not lab.dirty or not lab.editable:
            proceed()
            return

        def answer(choice: str | None) -> None:
            if choice == "save":
                self._save(then=proceed)
            elif choice == "discard":
                proceed()

        self.push_screen(UnsavedScreen(what), answer)

    def action_open_workspace(self) -> None:
        def done(text: str | None) -> None:
            if text:
                self._unsaved_then("open another file", lambda: self._open(text))

        self.push_screen(TextPrompt("Open workspace", placeholder="path/to/work.toml",
                                    hint="a workspace or preset .toml (a preset name works too)"),
                         done)

    def action_load_preset(self) -> None:
        try:
            from tuilab.core.workspace import list_presets

            presets = list_presets()
        except Exception as error:
            self._error(error)
            return

        current = self.lab.name if self.lab is not None else None

        def chosen(name: str | None) -> None:
            if name == current:  # enter on the open model: keep it (and its weights)
                self.notify(f"{name} is open already (ctrl+o {name} opens it afresh)",
                            markup=False)
            elif name:
                self._unsaved_then("load a preset", lambda: self._open(name))

        self.push_screen(ChoiceScreen("Load preset", [(p.name, p.description, True)
                                                      for p in presets], current=current),
                         chosen)

    def _open(self, spec_arg: str) -> None:
        panel = self.run_panel()
        if panel is not None and getattr(panel, "running", False):
            self.notify("a training run is going: stop it first (x)", severity="error")
            return
        try:
            from tuilab.core.workspace import load_workspace_arg

            workspace = load_workspace_arg(spec_arg)
        except TuilabError as error:
            self._error(error)
            return
        except OSError as error:
            self._error(error)
            return
        path = Path(spec_arg) if spec_arg.endswith(".toml") else None
        self.notify(f"opening {spec_arg}…", markup=False)
        self._open_worker(workspace, path)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _open_worker(self, workspace: Workspace, path: Path | None) -> None:
        try:
            from tuilab.core.lab import Lab

            lab = Lab.from_workspace(workspace, path=path)
        except Exception as error:
            text = str(error) if isinstance(error, TuilabError) else (
                f"{type(error).__name__}: {error}")
            self.post_message(LabFailed(text))
            return
        self.post_message(LabReady(lab))

    # --- autosave and quitting ------------------------------------------------------------
    def _schedule_autosave(self) -> None:
        """Save within AUTOSAVE_DELAY of a change, or later if the last write was slow (see
        AUTOSAVE_BUDGET). A pending save is kept, not restarted: it writes the state as it is
        when it fires, and a run's batches (every ~0.5 s) would otherwise push it back for
        ever."""
        if self._autosave_timer is None:
            self._autosave_timer = self.set_timer(autosave_delay(self._autosave_cost),
                                                  self._autosave, name="autosave")

    def on_run_panel_metrics(self, message: object) -> None:
        """A running training run is part of the work: keep its loss history safe too."""
        self._schedule_autosave()

    def _autosave(self) -> None:
        self._autosave_timer = None
        lab = self.lab
        if lab is None or not lab.dirty:
            return
        start = time.perf_counter()
        problem = lab.autosave()
        self._autosave_cost = time.perf_counter() - start
        if problem:
            self.notify(problem, severity="warning", markup=False)
        else:
            self._forget_declined()

    def _forget_declined(self) -> None:
        """This session's work is safe on disk now: the lost sessions' copies the user chose
        not to restore can go (until here, killing this session offered them again)."""
        from tuilab.core.autosave import discard

        for path in self._declined:
            with contextlib.suppress(OSError):
                discard(path)
        self._declined.clear()

    def _finish(self) -> None:
        """Quit for good: the work was saved or discarded, so forget the autosave copy."""
        self._quitting = True
        if self._autosave_timer is not None:
            self._autosave_timer.stop()
        if self.lab is not None and self.lab.editable:
            with contextlib.suppress(Exception):
                from tuilab.core.autosave import discard

                discard()
        self.exit(0)

    def on_unmount(self) -> None:
        """Closed, cleanly or not: let go of the autosave's lock (its copy stays unless a clean
        quit discarded it), so the next session can offer it back."""
        from tuilab.core.autosave import end_session

        self.collector.uninstall()
        if self._keys_thread is not None:
            self._keys_thread.close()
        end_session()

    async def action_quit(self) -> None:
        """Quit; unsaved changes ask first (save / discard / cancel)."""
        if isinstance(self.screen, UnsavedScreen) or self._quitting:
            return
        self._unsaved_then("quit", self._finish)

    def action_lesson_next(self) -> None:
        self.lessons.next()

    def action_lesson_previous(self) -> None:
        self.lessons.previous()

    def action_lesson_restart(self) -> None:
        self.lessons.restart()

    def action_open_lesson(self) -> None:
        try:
            from tuilab.core.lessons import load_lessons

            lessons = load_lessons()
        except Exception as error:
            self._error(error)
            return

        def chosen(lesson_id: str | None) -> None:
            if lesson_id:
                self._unsaved_then("open a lesson", lambda: self.lessons.open(lesson_id))

        current = self.lessons.lesson.id if self.lessons.lesson is not None else None
        self.push_screen(ChoiceScreen("Open lesson", [
            (lesson.id, f"seed {lesson.seed}: {lesson.title} ({len(lesson.steps)} steps)",
             True) for lesson in lessons], current=current), chosen)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen([(group, [(key.keys, key.description) for key in keys])
                                     for group, keys in KEY_GROUPS]))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for _, keys in KEY_GROUPS:
            for key in keys:
                if key.action in ("", "command_palette", "quit", "help"):
                    continue
                yield SystemCommand(f"{key.title}  ({key.keys})", key.description,
                                    _command(self, key.action))
        yield SystemCommand("Help  (?)", "every key, grouped", self.action_help)


def _command(app: TuilabApp, action: str) -> Callable[[], Any]:
    """A command-palette callback that runs `action` as its key would."""

    async def run() -> None:
        await app.run_action(action)

    return run


def summary_shapes(summary: Any) -> tuple[dict[str, ShapeInfo], str | None, str]:
    """The shape summary as plain data for the builder: shapes by path, and the error."""
    shapes: dict[str, ShapeInfo] = {}
    for layer in getattr(summary, "layers", ()) or ():
        output = getattr(layer, "output_shape", None)
        params = getattr(layer, "params", None)
        path = getattr(layer, "path", "")
        if path in shapes:
            continue  # a module called twice: its first call's shape
        tied = getattr(layer, "tied_params", ())
        shared = f"{', '.join(tied)} ⇄ {layer.shared_with}" if tied else None
        shapes[path] = ShapeInfo(shape_text(output) if output is not None else "", params, shared)
    if "" not in shapes and getattr(summary, "output_shape", None) is not None:
        shapes[""] = ShapeInfo(shape_text(summary.output_shape),
                               getattr(summary, "total_params", None))
    error = getattr(summary, "error", None)
    if error is None:
        return shapes, None, ""
    message = getattr(error, "message", str(error))
    hint = getattr(error, "hint", None)
    return shapes, getattr(error, "path", ""), message + (f" (hint: {hint})" if hint else "")


def _with_input_shape(workspace: Workspace, input_shape: str | None) -> Workspace:
    if not input_shape:
        return workspace
    from dataclasses import replace

    from tuilab.core.edits import check_input_shape

    return replace(workspace, spec=replace(workspace.spec,
                                           input_shape=check_input_shape(input_shape)))


def _in_user_code(fn: Callable[[], Any], name: str) -> Any:
    """Call ``fn`` (which runs the user's code) from a thread worker, in a daemon thread the
    worker stops waiting for when it is cancelled (quitting): see core.abandonable."""
    from textual.worker import get_current_worker

    from tuilab.core.abandonable import call_abandonable

    return call_abandonable(fn, cancelled=get_current_worker().cancelled_event, name=name)


def _user_lab(spec_arg: str, input_shape: str | None) -> Lab:
    """Import the user's module (after they confirmed) and wrap it in a lab."""
    from tuilab.core.usercode import load_user_module, module_lab

    module, name = load_user_module(spec_arg)
    return module_lab(module, name, input_shape or None)


def make_app(spec_arg: str | None = None, *, lab: Lab | None = None,
             workspace: Workspace | None = None, workspace_path: Path | None = None,
             input_shape: str | None = None, offer_restore: bool = False,
             lesson: str | None = None, lesson_step: int | None = None) -> TuilabApp:
    """The one factory for the CLI, `tuilab.show` and the tests.

    `spec_arg` (a preset, a .toml, or file.py:NAME) is loaded after the first frame; a ready
    `lab` is shown at once; `workspace` is an already-parsed file (drawn before PyTorch loads).
    """
    return TuilabApp(spec_arg, lab=lab, workspace=workspace, workspace_path=workspace_path,
                     input_shape=input_shape, offer_restore=offer_restore, lesson=lesson,
                     lesson_step=lesson_step)
