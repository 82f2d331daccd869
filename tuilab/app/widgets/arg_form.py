"""The argument form: one Input per block argument, checked before the model changes.

Each field shows the current value as text (`Arg.text`) and what is allowed (`Arg.allowed`).
On submit, each changed field is first checked on its own (`Arg.coerce`, pure data), so a bad
value gets its message beside its field; then the form hands the strings to the App's
`submit` callback, which calls `lab.edit("set_args", ...)`. A refusal there (a cross-argument
check, or the constructor itself) is shown beside the field it names, or under the form, and
the dialog stays open with the model unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from tuilab.app.screens.dialogs import Dialog, modal_frame_css
from tuilab.core.arguments import Arg
from tuilab.core.errors import TuilabError

_ARG_NAME = re.compile(r"argument '(\w+)'")


class ArgForm(Dialog[bool]):
    """Edit a node's arguments; dismisses with True when the edit was applied."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Apply", priority=True),
    ]

    DEFAULT_CSS = modal_frame_css("ArgForm", width="90%", max_width="100") + """
    ArgForm #form-title { text-style: bold; margin-bottom: 1; }
    ArgForm VerticalScroll { height: auto; max-height: 70vh; }
    ArgForm .arg-row { height: 1; }
    ArgForm .arg-name { width: 20; padding: 0 1 0 0; text-align: right; text-style: bold; }
    ArgForm .arg-input { width: 1fr; border: none; height: 1; padding: 0 1; }
    ArgForm .arg-input:focus { border: none; background: $boost; }
    ArgForm .arg-hint { color: $text-muted; padding: 0 0 0 20; height: auto; }
    ArgForm .arg-error { color: $error; padding: 0 0 0 20; height: auto; display: none; }
    ArgForm .arg-error.-shown { display: block; }
    ArgForm #form-error { color: $error; height: auto; }
    ArgForm #form-buttons { height: auto; align-horizontal: right; margin-top: 1; }
    ArgForm Button { margin-left: 1; }
    """

    def __init__(self, title: str, args: Sequence[tuple[Arg, Any]],
                 submit: Callable[[dict[str, str]], None]) -> None:
        super().__init__()
        self.form_title = title
        self.args = list(args)
        self.initial = {arg.name: arg.text(value) for arg, value in self.args}
        self.submit = submit

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.form_title, id="form-title", markup=False)
            with VerticalScroll(can_focus=False):
                for arg, _ in self.args:
                    with Horizontal(classes="arg-row"):
                        yield Label(arg.name, classes="arg-name")
                        yield Input(self.initial[arg.name], id=f"arg-{arg.name}",
                                    classes="arg-input")
                    hint = arg.allowed() + (f" — {arg.doc}" if arg.doc else "")
                    yield Static(hint, classes="arg-hint", markup=False)
                    yield Static("", id=f"error-{arg.name}", classes="arg-error", markup=False)
            yield Static("", id="form-error", markup=False)
            with Horizontal(id="form-buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        inputs = self.query(Input)
        if inputs:
            inputs.first().focus()

    def values(self) -> dict[str, str]:
        """The fields the user changed, as typed."""
        changed = {}
        for arg, _ in self.args:
            text = self.query_one(f"#arg-{arg.name}", Input).value
            if text.strip() != self.initial[arg.name].strip():
                changed[arg.name] = text
        return changed

    def show_error(self, name: str | None, message: str) -> None:
        """Put `message` beside field `name` (or under the form when no field is named)."""
        if name is not None and any(arg.name == name for arg, _ in self.args):
            error = self.query_one(f"#error-{name}", Static)
            error.update(message)
            error.add_class("-shown")
            self.query_one(f"#arg-{name}", Input).focus()
        else:
            self.query_one("#form-error", Static).update(message)

    def _clear_errors(self) -> None:
        for error in self.query(".arg-error"):
            error.remove_class("-shown")
            if isinstance(error, Static):
                error.update("")
        self.query_one("#form-error", Static).update("")

    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#apply")
    @on(Input.Submitted)
    def action_submit(self) -> None:
        if self.answered:
            return  # a second Enter queued behind the first: the edit is done once
        self._clear_errors()
        values = self.values()
        if not values:
            self.dismiss(False)
            return
        failed = False
        for arg, _ in self.args:
            if arg.name in values:
                try:
                    arg.coerce(values[arg.name], where=arg.name)
                except TuilabError as error:
                    self.show_error(arg.name, error.message)
                    failed = True
        if failed:
            return
        try:
            self.submit(values)
        except TuilabError as error:
            match = _ARG_NAME.search(error.message)
            name = match.group(1) if match else next(
                (n for n in values if f"'{n}'" in error.message or f" {n} " in error.message),
                None)
            self.show_error(name, str(error))
            return
        except Exception as error:  # last resort: the form stays, the app stays up
            self.show_error(None, f"{type(error).__name__}: {error}")
            return
        self.dismiss(True)
