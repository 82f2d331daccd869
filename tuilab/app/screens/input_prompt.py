"""The chosen-input prompt (X): type the input `x` in the input language.

The text is parsed by tuilab's own grammar (`core.expressions`, never `eval`); a text outside
the language is refused with its message and a caret under the position, the dialog stays open
with the text as typed, and nothing runs. Accepted, the input is fixed — forward after forward
uses the same tensor — its shape becomes the input shape (an undoable edit), the code log
echoes `x = ...`, and the workspace saves it. "Random" goes back to a seeded random input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Static

from tuilab.app.screens.dialogs import TextPrompt, dialog_css
from tuilab.app.widgets.values import error_text

HINT = ("numbers and nested lists; torch.tensor / arange / zeros / ones / full / rand / randn / "
        "randint / linspace / eye; .view .reshape .float() .long() .T .unsqueeze; + - * / with "
        "numbers. Random calls are seeded. Its shape becomes the input shape.")


class InputPrompt(TextPrompt):
    """The prompt; `submit` applies the text (None: a random input) and raises to refuse it."""

    DEFAULT_CSS = dialog_css("InputPrompt") + """
    InputPrompt .dialog-error { height: auto; max-height: 5; }
    """
    empty_message = "type an expression, Random for a random input, or escape to cancel"

    def __init__(self, value: str, submit: Callable[[str | None], None]) -> None:
        super().__init__("Input x (X)", value, placeholder="torch.arange(9.).view(3, 3)",
                         hint=HINT)
        self.submit = submit

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            yield Static(self.hint, classes="dialog-body", markup=False)
            yield Static("", classes="dialog-error", id="prompt-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Use it", variant="primary", id="ok")
                yield Button("Random", id="random")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        prompt = self.query_one(Input)
        prompt.cursor_blink = False
        prompt.focus()

    @on(Button.Pressed, "#random")
    def _random(self) -> None:
        self.accept(None)

    def accept(self, text: str | None) -> None:
        try:
            self.submit(text)
        except Exception as error:  # refused: say why and where; the dialog stays open
            self.query_one("#prompt-error", Static).update(error_text(error, text or ""))
            return
        self.dismiss(text)


def open_input_prompt(app: Any) -> None:
    """Push the prompt over the app; an accepted input is shown like any other change."""
    lab = app.lab
    if lab is None:
        return
    try:
        current = lab.current_input.text  # the chosen one, or the seeded random default
    except Exception:
        current = ""

    def submit(text: str | None) -> None:
        update = lab.set_input(text) if text is not None else lab.clear_input()
        app._apply(update)
        app.notify(f"input x = {text}" if text else "input x: a seeded random tensor",
                   markup=False)

    app.push_screen(InputPrompt(current, submit))
