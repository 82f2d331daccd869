"""Small modal dialogs: confirm, text prompt, a pick-one list, and the unsaved-work question.

Each returns its answer through `dismiss`, so callers use `push_screen(dialog, callback)` and
the App never blocks waiting for the user. Every modal of the lab derives from `Dialog`, which
takes one answer only (see there), and whose default answer never destroys work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import ClassVar, TypeVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult, ScreenStackError
from textual.await_complete import AwaitComplete
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from tuilab.app.widgets.footer import LabFooter


def modal_frame_css(name: str, *, box: str = "Vertical", width: str = "80%",
                    max_width: str | None = "90", height: str = "auto",
                    max_height: str | None = "90%") -> str:
    """The frame every modal of the lab shares: centred over it, a thick border on the
    surface colour. A dialog adds its own rules after it; None leaves a limit out."""
    sizes = {"width": width, "max-width": max_width, "height": height, "max-height": max_height}
    declared = " ".join(f"{key}: {value};" for key, value in sizes.items() if value is not None)
    return (f"{name} {{ align: center middle; }}\n"
            f"{name} > {box} {{\n    {declared}\n"
            f"    border: thick $primary; background: $surface; padding: 0 1;\n}}\n")


ResultType = TypeVar("ResultType")


class Dialog(ModalScreen[ResultType]):
    """A modal that answers once.

    Keys typed faster than the app draws are queued: a second Enter (or a click and a key)
    reaches the dialog after its first answer, before it has left the screen. Textual would
    run the caller's callback again and pop a screen that is not this one (the main screen:
    `ScreenStackError`, the app gone). So a dialog that has answered, or that is not the top
    screen, ignores any later answer.
    """

    answered: bool = False
    """True once `dismiss` has run: later answers are dropped, and forms stop submitting."""
    has_own_footer: ClassVar[bool] = True
    """Its footer (see `on_mount`) covers the lab's: the lab's waits (`LabFooter.covered`)."""

    @property
    def on_top(self) -> bool:
        """Is this the screen the keys go to (not one under another dialog, not gone)?"""
        try:
            return self.app.screen is self
        except ScreenStackError:
            return False

    def on_mount(self) -> None:
        """Its own footer, over the lab's: the keys that work now are this dialog's (the
        lab's are off while it is open), so show those: Esc, y/n, s/d…"""
        self.mount(LabFooter())

    def dismiss(self, result: ResultType | None = None) -> AwaitComplete:
        if self.answered or not self.on_top:
            return AwaitComplete.nothing()
        self.answered = True
        return super().dismiss(result)


def dialog_css(name: str) -> str:
    """The frame and the parts (title, body, buttons, error line) of the dialogs here."""
    return modal_frame_css(name) + f"""
{name} .dialog-title {{ text-style: bold; margin-bottom: 1; }}
{name} .dialog-body {{ height: auto; margin-bottom: 1; }}
{name} .dialog-buttons {{ height: auto; align-horizontal: right; }}
{name} Button {{ margin-left: 1; }}
{name} .dialog-error {{ color: $error; height: auto; }}
"""


class ConfirmScreen(Dialog[bool]):
    """A yes/no question; escape answers no. Enter answers `default` (the focused button):
    no, unless yes is the answer that keeps the work (restoring an autosave)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
    ]
    DEFAULT_CSS = dialog_css("ConfirmScreen")

    def __init__(self, title: str, body: str, *, yes: str = "Yes", no: str = "No",
                 default: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.yes = yes
        self.no = no
        self.default = default
        # the footer names the answers as the buttons do ("y Restore  n Discard it")
        self._bindings.key_to_bindings["y"] = [Binding("y", "answer(True)", yes)]
        self._bindings.key_to_bindings["n"] = [Binding("n", "answer(False)", no)]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Static(self.body, classes="dialog-body", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.yes, variant="primary", id="yes")
                yield Button(self.no, id="no")

    def on_mount(self) -> None:
        self.query_one("#yes" if self.default else "#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    def action_cancel(self) -> None:
        """Escape: no (its own action, so the footer shows esc beside n)."""
        self.dismiss(False)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class TextPrompt(Dialog[str | None]):
    """Ask for one line of text (a name, a path); escape answers None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = dialog_css("TextPrompt")

    def __init__(self, title: str, value: str = "", *, placeholder: str = "",
                 hint: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.placeholder = placeholder
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            if self.hint:
                yield Static(self.hint, classes="dialog-body", markup=False)
            yield Static("", classes="dialog-error", id="prompt-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    empty_message = "type something, or escape to cancel"

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        text = self.query_one(Input).value.strip()
        if not text:
            self.query_one("#prompt-error", Static).update(self.empty_message)
            return
        self.accept(text)

    def accept(self, text: str) -> None:
        """The answer (a subclass may check it first, and stay open with an error)."""
        self.dismiss(text)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class ChoiceScreen(Dialog[str | None]):
    """Pick one of a list; items that cannot be chosen are shown greyed with the reason."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = dialog_css("ChoiceScreen") + """
    ChoiceScreen OptionList { height: auto; max-height: 20; }
    """

    def __init__(self, title: str, choices: Sequence[tuple[str, str, bool]],
                 current: str | None = None) -> None:
        """`choices`: (value, description, available)."""
        super().__init__()
        self.title_text = title
        self.choices = list(choices)
        self.current = current

    def compose(self) -> ComposeResult:
        options = []
        for value, description, available in self.choices:
            prompt = Text.assemble((value, "bold"), "  ",
                                   (description, "dim" if available else "dim italic"))
            if value == self.current:
                prompt.append("  (current)", style="green")
            options.append(Option(prompt, id=value, disabled=not available))
        with Vertical():
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield OptionList(*options, id="choices")

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        option_list.focus()
        if self.current is not None:
            with contextlib.suppress(Exception):  # not among the choices
                option_list.highlighted = option_list.get_option_index(self.current)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class UnsavedScreen(Dialog[str]):
    """The work is not saved: answers "save", "discard" or "cancel"."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer('cancel')", "Cancel"),
        Binding("s", "answer('save')", "Save"),
        Binding("d", "answer('discard')", "Discard"),
    ]
    DEFAULT_CSS = dialog_css("UnsavedScreen")

    def __init__(self, what: str = "quit", *, title: str = "Unsaved changes",
                 body: str = "The model has changes that are not saved.") -> None:
        super().__init__()
        self.what = what
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Static(f"{self.body} Save them before you {self.what}?",
                         classes="dialog-body", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Discard", variant="error", id="discard")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def action_answer(self, answer: str) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")
