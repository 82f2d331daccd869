"""The training settings form: a modal over the app that returns the settings of the next run.

Why a modal that checks before it closes: a run that fails on its first step because ``lr`` was
typed ``1e-3x`` teaches nothing. The form parses each field, then hands the values to the
engine's own check (``tuilab.core.views.check_train_settings``, passed in as ``check`` so this
screen stays free of PyTorch); a refused value keeps the form open with the message next to the
field that caused it. Device and dtype are the lab's current modes (change them in the
header): a run trains the live model where it is.

Dismisses with the settings dict, or ``None`` on cancel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static

from tuilab.app.screens.dialogs import Dialog, modal_frame_css

OPTIMIZERS = ("sgd", "adam", "adamw")
LOSSES = ("cross_entropy", "mse", "bce_with_logits")
#: The Select value meaning "the task's own loss" (TrainConfig.loss = None).
AUTO_LOSS = "auto"

INT_FIELDS = ("steps", "batch_size", "val_every", "seed", "processes")
FLOAT_FIELDS = ("lr", "weight_decay", "momentum")
OPTIONAL_FLOAT_FIELDS = ("grad_clip",)
OPTIONAL_INT_FIELDS = ("threads",)

HELP = {
    "lr": "learning rate",
    "batch_size": "samples per step",
    "steps": "optimizer steps",
    "weight_decay": "L2 penalty",
    "momentum": "SGD only",
    "grad_clip": "max grad norm (blank: off)",
    "seed": "batch order, dropout",
    "val_every": "validate every N steps (0: never)",
    "threads": "torch threads (blank: auto)",
    "processes": "more than 1: torchrun",
}


class TrainSettingsScreen(Dialog[dict[str, Any] | None]):
    """Edit the fields of ``TrainConfig`` and the task; Enter starts, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Start"),
    ]

    DEFAULT_CSS = modal_frame_css("TrainSettingsScreen", box="#form", width="76",
                                  max_width=None) + """
    TrainSettingsScreen #title {
        text-style: bold;
        margin-bottom: 1;
    }
    TrainSettingsScreen #fields {
        grid-size: 3;
        grid-columns: 14 1fr 24;
        grid-rows: 3;
        height: auto;
    }
    TrainSettingsScreen #fields Label {
        height: 3;
        content-align: left middle;
    }
    TrainSettingsScreen .help {
        color: $text-muted;
    }
    TrainSettingsScreen Input.-invalid, TrainSettingsScreen Select.-invalid {
        border: tall $error;
    }
    TrainSettingsScreen #error {
        color: $error;
        height: auto;
    }
    TrainSettingsScreen #mode {
        color: $text-muted;
    }
    TrainSettingsScreen #buttons {
        height: 3;
        align-horizontal: right;
    }
    """

    def __init__(self, defaults: Mapping[str, Any], tasks: Sequence[str],
                 check: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.defaults = dict(defaults)
        self.tasks = list(tasks)
        task = self.defaults.get("task")
        if task and task not in self.tasks:
            self.tasks.append(str(task))  # a user's data file
        self.check = check

    # --- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        d = self.defaults
        with Vertical(id="form"):
            yield Static("Training run", id="title")
            # The error sits above the fields: below them, a tall form cut it off at 120×40.
            yield Static("", id="error")
            with Grid(id="fields"):
                yield Label("task")
                yield Select([(t, t) for t in self.tasks], value=d.get("task") or Select.NULL,
                             allow_blank=False, id="task")
                yield Label("what to fit", classes="help")
                yield Label("optimizer")
                yield Select([(o, o) for o in OPTIMIZERS], value=d.get("optimizer", "adam"),
                             allow_blank=False, id="optimizer")
                yield Label("sgd / adam / adamw", classes="help")
                yield Label("loss")
                loss = d.get("loss") or AUTO_LOSS
                yield Select([("auto (the task's)", AUTO_LOSS), *((x, x) for x in LOSSES)],
                             value=loss, allow_blank=False, id="loss")
                yield Label("None: the task's own", classes="help")
                for key in ("steps", "lr", "batch_size", "weight_decay", "momentum",
                            "grad_clip", "seed", "val_every", "threads", "processes"):
                    value = d.get(key)
                    yield Label(key)
                    yield Input("" if value is None else f"{value}", id=key,
                                placeholder={"grad_clip": "off", "threads": "auto"}.get(key, ""))
                    yield Label(HELP[key], classes="help")
            yield Static(f"device {d.get('device', 'cpu')} · dtype {d.get('dtype', 'float32')}"
                         " (the lab's current modes)", id="mode")
            with Horizontal(id="buttons"):
                yield Button("Start", variant="primary", id="start")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#steps", Input).focus()

    # --- reading the form ---------------------------------------------------------------
    def read(self) -> dict[str, Any]:
        """The form's values as TrainConfig fields; ValueError names the field it is about."""
        values: dict[str, Any] = {}
        for key in ("task", "optimizer", "loss"):
            value = self.query_one(f"#{key}", Select).value
            if value is Select.NULL:
                raise _FieldError(key, f"choose a {key}")
            values[key] = value
        if values["loss"] == AUTO_LOSS:
            values["loss"] = None
        whole = INT_FIELDS + OPTIONAL_INT_FIELDS
        for key in whole + FLOAT_FIELDS + OPTIONAL_FLOAT_FIELDS:
            text = self.query_one(f"#{key}", Input).value.strip()
            if (key in OPTIONAL_FLOAT_FIELDS + OPTIONAL_INT_FIELDS
                    and text.lower() in ("", "none", "off", "auto")):
                values[key] = None
                continue
            try:
                values[key] = int(text) if key in whole else float(text)
            except ValueError:
                kind = "a whole number" if key in whole else "a number"
                raise _FieldError(key, f"{key} must be {kind}, got {text!r}") from None
        for key in ("device", "dtype"):
            if key in self.defaults:
                values[key] = self.defaults[key]
        return values

    def _show_error(self, field: str | None, message: str) -> None:
        for widget in self.query(".-invalid"):
            widget.remove_class("-invalid")
        if field:
            for widget in self.query(f"#{field}"):
                widget.add_class("-invalid")
                widget.focus()
        self.query_one("#error", Static).update(message)

    # --- actions ------------------------------------------------------------------------
    def action_submit(self) -> None:
        try:
            values = self.read()
            if self.check is not None:
                checked = self.check(values)
                values = {k: checked.get(k, v) for k, v in values.items()}
        except _FieldError as err:
            self._show_error(err.field, err.message)
            return
        except Exception as err:  # the engine's ConfigError/ModeError name the field
            self._show_error(getattr(err, "where", None), str(err))
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    @on(Button.Pressed, "#start")
    def _start(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_cancel()


class _FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
