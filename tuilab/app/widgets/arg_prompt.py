"""A node's arguments, edited in the header's line and checked before the model changes.

Why the header's line, not a form on a modal screen: see `line_prompt.py` (and the model being
edited stays in view). Each field shows the current value as text (`Arg.text`); the field being
edited is marked, with a cursor, and the line's end says what it allows (`Arg.allowed`) and
what it is. On Enter each changed field is first checked on its own (`Arg.coerce`, pure data);
then the strings go to `submit`, which calls `lab.edit("set_args", ...)`. A refusal (a bad
value, a cross-argument check, the constructor itself) is shown at the line's end, the field
it names is marked, and the prompt stays open with the model unchanged. Fields that do not fit
the line scroll: the marked one is always shown, with … where fields are left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from tuilab.app.widgets.line_prompt import LinePrompt, key_hints
from tuilab.core.arguments import Arg
from tuilab.core.errors import TuilabError
from tuilab.core.safe_text import printable

KEYS = key_hints(("⏎", "apply"), ("esc", "cancel"), ("⇥", "next field"))
_ARG_NAME = re.compile(r"argument '(\w+)'")


@dataclass
class Field:
    arg: Arg
    initial: str
    text: str
    cursor: int


class ArgPrompt(LinePrompt):
    """Edit a node's arguments; `applied` is True once an edit went through."""

    closes_on_outside_click = False  # a click elsewhere must not throw away what was typed

    def __init__(self, title: str, args: Sequence[tuple[Arg, Any]],
                 submit: Callable[[dict[str, str]], None]) -> None:
        self.title = title
        self.fields = [Field(arg, arg.text(value), arg.text(value), len(arg.text(value)))
                       for arg, value in args]
        self.current = 0
        self.submit = submit
        self.error: str | None = None
        """Why the last Enter was refused, shown at the line's start of the tail (the
        header also says it in full, in a notification)."""
        self.applied = False
        self.done = False
        self._spans: list[tuple[int, int, int]] = []
        """(field index, start, end column) of each field drawn, for clicks."""

    @property
    def field(self) -> Field:
        return self.fields[self.current]

    def values(self) -> dict[str, str]:
        """The fields the user changed, as typed."""
        return {field.arg.name: field.text for field in self.fields
                if field.text.strip() != field.initial.strip()}

    def go_to(self, index: int) -> None:
        self.current = index % len(self.fields)
        self.field.cursor = len(self.field.text)

    # --- LinePrompt ----------------------------------------------------------------------
    def press(self, key: str, character: str | None) -> bool:
        if self.done:
            return True  # keys queued behind the Enter that applied: dropped
        field = self.field
        if key == "enter":
            return self.apply()
        if key == "escape":
            self.cancel()
            return True
        if key in ("tab", "down"):
            self.go_to(self.current + 1)
        elif key in ("shift+tab", "up"):
            self.go_to(self.current - 1)
        elif key == "left":
            field.cursor = max(field.cursor - 1, 0)
        elif key == "right":
            field.cursor = min(field.cursor + 1, len(field.text))
        elif key == "home":
            field.cursor = 0
        elif key == "end":
            field.cursor = len(field.text)
        elif key == "backspace" and field.cursor > 0:
            field.text = field.text[:field.cursor - 1] + field.text[field.cursor:]
            field.cursor -= 1
        elif key == "delete":
            field.text = field.text[:field.cursor] + field.text[field.cursor + 1:]
        elif key == "ctrl+u":
            field.text, field.cursor = "", 0
        elif character is not None and character.isprintable():
            self.type(character)
        return False

    def paste(self, text: str) -> None:
        self.type(text)

    def type(self, text: str) -> None:
        """Insert `text` at the cursor (a key, or a paste: its first line)."""
        field = self.field
        text = printable(text.splitlines()[0] if text else "")
        field.text = field.text[:field.cursor] + text + field.text[field.cursor:]
        field.cursor += len(text)

    def click(self, column: int) -> bool:
        for index, start, end in self._spans:
            if start <= column < end:
                self.go_to(index)
                break
        return False

    def cancel(self) -> None:
        self.done = True

    def apply(self) -> bool:
        """Check, then edit; True when done (applied, or nothing was changed)."""
        self.error = None
        values = self.values()
        if not values:
            self.done = True
            return True
        for index, field in enumerate(self.fields):
            if field.arg.name in values:
                try:
                    field.arg.coerce(values[field.arg.name], where=field.arg.name)
                except TuilabError as error:
                    return self._refused(error.message, index)
        try:
            self.submit(values)
        except TuilabError as error:
            match = _ARG_NAME.search(error.message)
            name = match.group(1) if match else next(
                (n for n in values if f"'{n}'" in error.message or f" {n} " in error.message),
                None)
            index = next((i for i, f in enumerate(self.fields) if f.arg.name == name), None)
            return self._refused(str(error), index)
        except Exception as error:  # last resort: the prompt stays, the app stays up
            return self._refused(f"{type(error).__name__}: {error}", None)
        self.applied = self.done = True
        return True

    def _refused(self, message: str, index: int | None) -> bool:
        self.error = message
        if index is not None:
            self.go_to(index)
        return False

    # --- drawing -------------------------------------------------------------------------
    def render(self, width: int) -> Text:
        head = Text(f"{self.title}  ", style="bold", no_wrap=True)
        tail = Text(" ", no_wrap=True)
        if self.error is not None:  # first: it must be seen, even at 80 columns
            tail.append(f"✗ {self.error}   ", style="bold red")
        arg = self.field.arg
        tail.append(f"{arg.name}: {arg.allowed()}   ", style="italic")
        tail.append_text(KEYS)
        if arg.doc:
            tail.append(f"   {arg.doc}", style="dim italic")
        pieces = [self._field_text(index) for index in range(len(self.fields))]
        room = max(width - head.cell_len - min(tail.cell_len, max(30, width // 3)), 12)
        first, last = self._window(pieces, room)
        line = head.copy()
        line.no_wrap, line.overflow = True, "ellipsis"
        self._spans = []
        if first > 0:
            line.append("… ", style="dim")
        for index in range(first, last):
            start = line.cell_len
            line.append_text(pieces[index])
            self._spans.append((index, start, line.cell_len))
            line.append("  ")
        if last < len(pieces):
            line.append("… ", style="dim")
        line.append_text(tail)
        line.truncate(width, overflow="ellipsis")
        return line

    def _field_text(self, index: int) -> Text:
        field = self.fields[index]
        text = Text(f"{field.arg.name}=", style="dim")
        if index != self.current:
            text.append(field.text or "∅")
            return text
        before, after = field.text[:field.cursor], field.text[field.cursor:]
        text.append(before, style="reverse")
        text.append(after[:1] or " ", style="reverse underline bold")  # the cursor
        text.append(after[1:], style="reverse")
        return text

    def _window(self, pieces: list[Text], room: int) -> tuple[int, int]:
        """The fields to draw: as many as fit in `room`, the current one among them."""
        widths = [piece.cell_len + 2 for piece in pieces]
        first = last = self.current
        used = widths[self.current]
        while True:
            grew = False
            if last + 1 < len(pieces) and used + widths[last + 1] <= room:
                last += 1
                used += widths[last]
                grew = True
            if first > 0 and used + widths[first - 1] <= room:
                first -= 1
                used += widths[first]
                grew = True
            if not grew:
                return first, last + 1
