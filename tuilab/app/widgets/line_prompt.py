"""What the lab asks in the header's line: a choice (`choice_prompt.py`) or a node's arguments
(`arg_prompt.py`).

Why the header's line and not a modal screen, as the questions about work (unsaved, restore)
are: these are edits, made many times an hour, and the frame that shows an edit should cost
what it changes. When a screen is popped, Textual repaints every cell of the screen under it,
in the very frame that shows the edit (~6.5 ms at 160×48 on a 2-core machine, more than a
whole cursor move). Panels drawn inside the lab were measured too, and were slower still: one
that takes the focus restyles the lab's `:focus-within` panes on the way in and out, and the
panels it covered draw afresh when it goes, after a relayout. The header shows the model's
name, mode, device and precision, and changes with every edit anyway. A prompt asked there
leaves the focus where it was, and closing it repaints that one line and lays nothing out.
The model stays in view while it is asked, too.

It is modal like a dialog. While it is open the lab's keys are off (`TuilabApp.check_action`),
and every key reaches the prompt: navigation keys through priority bindings of the lab's
screen that step aside when no prompt is open, the rest through `MainScreen.on_key`. The
header holds the mouse meanwhile, so no click reaches the lab under it. A prompt answers once,
and Escape answers "no change". A dialog opened over the lab (quit, help) drops it.
"""

from __future__ import annotations

from rich.text import Text

NAVIGATION_KEYS = ("left", "right", "up", "down", "home", "end", "tab", "shift+tab", "enter",
                   "escape", "backspace", "delete", "ctrl+u")
"""Keys a focused panel would act on first (its own bindings, or an Input's editing): the
lab's screen binds them with priority while a prompt is open."""


class LinePrompt:
    """One question in the header's line. `press` and `click` say when it is done; the header
    then shows the model again and calls `closed`, where an answer is delivered."""

    closes_on_outside_click = True
    """A click outside the line closes it (a choice); a form keeps what was typed."""
    error: str | None = None
    """Why the last answer was refused, if it was (the prompt stays open)."""

    def render(self, width: int) -> Text:
        """The line, `width` cells wide at most."""
        raise NotImplementedError

    def press(self, key: str, character: str | None) -> bool:
        """A key (`character` when it types one); True when the prompt is done."""
        raise NotImplementedError

    def click(self, column: int) -> bool:
        """A click at `column` of the line; True when the prompt is done."""
        return False

    def paste(self, text: str) -> None:
        """Pasted text (a prompt with a text field takes it)."""

    def cancel(self) -> None:
        """Escape, or dropped (a dialog opened over the lab): nothing changes."""

    def closed(self) -> None:
        """After the line shows the model again: deliver the answer, if any."""


def key_hints(*pairs: tuple[str, str]) -> Text:
    """The prompt's keys, as the footer writes them ("⏎ apply  esc cancel")."""
    line = Text()
    for key, meaning in pairs:
        if line:
            line.append("  ")
        line.append(key, style="bold")
        line.append(f" {meaning}")
    line.stylize("dim")
    return line
