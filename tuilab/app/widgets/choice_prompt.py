"""The choice prompt: pick one of a few (the precision, the device) in the header's own line.

Why not the modal list that the long lists (presets, lessons) use: a precision change is an
edit made many times an hour, and the frame that shows it should cost what it changes. When
a screen is popped, Textual repaints every cell of the screen under it (~6.5 ms at 160×48 on
a 2-core machine, more than a whole cursor move), in the very frame that shows the edit.
Panels drawn inside the lab were measured too, and were slower still: one that takes the
focus restyles the whole lab (its `:focus-within` rules) on the way in and out; one drawn over
other panels makes them render afresh when it goes, after a relayout of the screen. The
header line shows the precision and the device already, and changes with them anyway: asked
there, with the focus left where it was, closing the prompt repaints that one line, and lays
nothing out again.

Modal like a dialog: while it is open the lab's keys are off (`TuilabApp.check_action`), its
keys are priority bindings of the lab's screen (`MainScreen`), a click outside it closes it,
it answers once, and Escape answers "no change".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.text import Text


@dataclass(frozen=True)
class Choice:
    value: str
    description: str
    available: bool = True


KEYS = "⏎ apply  esc cancel"
"""After the choices, whose marks (▸◂) show that the arrows move between them: short, so
that the keys fit at 80 columns."""


class ChoicePrompt:
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
        self._spans: list[tuple[int, int]] = []
        """Where each choice was drawn (start, end columns), for clicks."""

    @property
    def answered(self) -> bool:
        return self._on_answer is None

    def move(self, step: int) -> None:
        """Highlight the choice `step` away, wrapping around."""
        if self.choices:
            self.highlighted = (self.highlighted + step) % len(self.choices)

    def highlight(self, value: str) -> None:
        self.highlighted = [choice.value for choice in self.choices].index(value)

    @property
    def picked(self) -> str | None:
        """The highlighted choice, or None when it cannot be chosen."""
        choice = self.choices[self.highlighted] if self.choices else None
        return choice.value if choice is not None and choice.available else None

    def value_at(self, column: int) -> str | None:
        """The choice drawn at `column`, if one that can be chosen is there."""
        for index, (start, end) in enumerate(self._spans):
            if start <= column < end and self.choices[index].available:
                return self.choices[index].value
        return None

    def answer(self, value: str | None) -> None:
        """Hand `value` to the opener, once: a second answer (keys queued behind the first)
        is dropped."""
        on_answer, self._on_answer = self._on_answer, None
        if on_answer is not None:
            on_answer(value)

    def render(self) -> Text:
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
        line.append(f"   {KEYS}", style="dim")
        if self.choices:
            shown = self.choices[self.highlighted]
            line.append(f"   {shown.value}: {shown.description}", style="italic")
        return line
