"""The code log: the PyTorch line of every action, so the user learns the API by watching.

Lines are kept as text as well as drawn (syntax-highlighted), so `y` can copy the last one and
`Y` the whole session.
"""

from __future__ import annotations

from rich.syntax import Syntax
from textual.widgets import RichLog


class CodeLog(RichLog):
    """A RichLog of Python lines, highlighted; :attr:`lines_text` keeps them as text."""

    DEFAULT_CSS = """
    CodeLog { height: 1fr; background: $surface; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, wrap=False, markup=False, highlight=False, max_lines=2000)
        self.lines_text: list[str] = []
        """Every line written, oldest first."""

    def add(self, code: str) -> None:
        """Append one action's code (skipping empty ones)."""
        code = code.rstrip()
        if not code:
            return
        self.lines_text.append(code)
        self.write(Syntax(code, "python", theme="ansi_dark", background_color="default",
                          word_wrap=False))

    @property
    def last(self) -> str:
        return self.lines_text[-1] if self.lines_text else ""

    @property
    def all_text(self) -> str:
        return "\n".join(self.lines_text) + ("\n" if self.lines_text else "")
