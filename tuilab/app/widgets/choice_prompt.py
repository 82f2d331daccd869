"""The choice prompt: pick one of a few (the precision, the device) in the header's line.

Why the header's line: see `line_prompt.py`. The long lists (presets, lessons) stay in a modal
list, where there is room for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.text import Text

from tuilab.app.widgets.line_prompt import LinePrompt, key_hints

KEYS = key_hints(("⏎", "apply"), ("esc", "cancel"))
"""After the choices, whose marks (▸◂) show that the arrows move between them: short, so
that the keys fit at 80 columns."""
UNANSWERED = object()


@dataclass(frozen=True)
class Choice:
    value: str
    description: str
    available: bool = True


class ChoicePrompt(LinePrompt):
    """A title, the choices (the highlighted one marked, the current one ticked, those that
    cannot be chosen struck out), the keys, and what the highlighted choice is, or why it
    cannot be chosen: the arrows reach every choice, so that reason is one key away."""

    def __init__(self, title: str, choices: Sequence[tuple[str, str, bool]],
                 current: str | None, on_answer: Callable[[str | None], None]) -> None:
        """`choices`: (value, description, available)."""
        self.title = title
        self.choices = [Choice(*choice) for choice in choices]
        self.current = current
        values = [choice.value for choice in self.choices]
        self.highlighted = values.index(current) if current in values else 0
        self._on_answer: Callable[[str | None], None] | None = on_answer
        self._answer: object = UNANSWERED
        self._spans: list[tuple[int, int]] = []
        """Where each choice was drawn (start, end columns), for clicks."""

    @property
    def answered(self) -> bool:
        return self._on_answer is None

    @property
    def picked(self) -> str | None:
        """The highlighted choice, or None when it cannot be chosen."""
        choice = self.choices[self.highlighted] if self.choices else None
        return choice.value if choice is not None and choice.available else None

    def move(self, step: int) -> None:
        """Highlight the choice `step` away, wrapping around."""
        if self.choices:
            self.highlighted = (self.highlighted + step) % len(self.choices)

    def highlight(self, value: str) -> None:
        self.highlighted = [choice.value for choice in self.choices].index(value)

    def value_at(self, column: int) -> str | None:
        """The choice drawn at `column`, if one that can be chosen is there."""
        for index, (start, end) in enumerate(self._spans):
            if start <= column < end and self.choices[index].available:
                return self.choices[index].value
        return None

    # --- LinePrompt ----------------------------------------------------------------------
    def press(self, key: str, character: str | None) -> bool:
        if key in ("left", "up", "shift+tab"):
            self.move(-1)
        elif key in ("right", "down", "tab"):
            self.move(1)
        elif key == "enter":
            if self.picked is None:
                return False  # the line says why it cannot be chosen
            self._answer = self.picked
            return True
        elif key == "escape":
            self.cancel()
            return True
        return False

    def click(self, column: int) -> bool:
        value = self.value_at(column)
        if value is None:
            return False
        self._answer = value
        return True

    def cancel(self) -> None:
        self._answer = None

    def closed(self) -> None:
        """Hand the answer to the opener, once: a second answer (keys queued behind the
        first) is dropped."""
        on_answer, self._on_answer = self._on_answer, None
        if on_answer is not None and self._answer is not UNANSWERED:
            on_answer(self._answer)  # type: ignore[arg-type]

    def render(self, width: int) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{self.title} ", style="bold")
        self._spans = []
        for index, choice in enumerate(self.choices):
            line.append(" ")
            start = line.cell_len
            label = choice.value + ("✓" if choice.value == self.current else "")
            style = "" if choice.available else "dim strike"
            if index == self.highlighted:
                line.append(f"▸{label}◂", style=f"reverse bold {style}")
            else:
                line.append(f" {label} ", style=style)
            self._spans.append((start, line.cell_len))
        line.append("   ")
        line.append_text(KEYS)
        if self.choices:
            shown = self.choices[self.highlighted]
            line.append(f"   {shown.value}: {shown.description}", style="italic")
        line.truncate(width, overflow="ellipsis")
        return line
