"""Text a user wrote, made safe to show on a terminal.

A name may reach the screen through the CLI, the app's header, a tree label or a dialog. A
control character in it would be obeyed by the terminal rather than shown: ``ESC [2J`` clears
the screen, ``ESC ]0;…BEL`` sets the window title, a bidi override reorders what follows.
So names refuse control characters when they enter (a file, an edit: :func:`check_printable`)
and whatever comes from elsewhere (a user's module, a run's stored error) is shown through
:func:`printable`, which writes each control character as a visible escape (``\\x1b``).

(Markup is the other half: rich and Textual read ``[bold]`` or ``[link=…]`` in a plain string as
markup. Everything user-written is passed to them as ``Text``/``markup=False``, never a str.)
"""

from __future__ import annotations

import re

from tuilab.core.errors import EditError

__all__ = ["check_printable", "printable"]

# C0 and C1 controls, DEL, and the bidi embedding/override/isolate characters.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every control character written as a visible escape (``\\x1b``).

    ``lines`` keeps newlines and tabs (a multi-line message); otherwise they are escaped too.
    """
    pattern = _CONTROL_BUT_LINES if lines else _CONTROL
    return pattern.sub(_escape, text)


def check_printable(text: str, *, what: str, where: str, lines: bool = False) -> None:
    """Refuse ``text`` (an :class:`EditError` naming ``what``) when it holds a control
    character; ``lines`` allows newlines and tabs (a description)."""
    pattern = _CONTROL_BUT_LINES if lines else _CONTROL
    found = pattern.search(text)
    if found:
        raise EditError(
            f"{what} '{printable(text)[:40]}' holds the control character "
            f"{_escape(found)}; names and descriptions are plain text", where=where)
