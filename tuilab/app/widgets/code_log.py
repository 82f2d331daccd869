"""The code log: the PyTorch line of every action, so the user learns the API by watching.

Lines are kept as text as well as drawn (syntax-highlighted), so `y` can copy the last one and
`Y` the whole session as a script (`core.codelog.script_text`): the preamble, then what each
action ran, including what a line needs and the log does not show (the definition of
`build_model()` behind `net = build_model()`).

The text is kept at once; the drawing waits for the frame after the one that shows the edit
itself. A new log line grows the log's virtual size, which makes Textual lay the whole screen
out again, and the log sits at the bottom of the screen, so drawing it in the edit's frame
made that frame repaint every widget between the builder and the log (an edit on mlp: ~30 ms
of frame instead of ~14). Lines written in a burst of keys are drawn together, in order.
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
        self.script_entries: list[str] = []
        """What each line runs in the script: the line itself, or more where it needs it."""
        self._undrawn: list[str] = []

    def add(self, code: str, script: str | None = None) -> None:
        """Append one action's code (skipping empty ones); `script` is what the session's
        script holds for it, when that is more than the line shown."""
        code = code.rstrip()
        if not code:
            return
        self.lines_text.append(code)
        self.script_entries.append(script if script is not None else code)
        if not self._undrawn:
            self.call_after_refresh(self._draw_undrawn)
        self._undrawn.append(code)

    @property
    def undrawn(self) -> int:
        """Lines kept but not drawn yet (they are, after the next frame)."""
        return len(self._undrawn)

    def _draw_undrawn(self) -> None:
        lines, self._undrawn = self._undrawn, []
        for code in lines:
            self.write(Syntax(code, "python", theme="ansi_dark", background_color="default",
                              word_wrap=False))

    @property
    def last(self) -> str:
        return self.lines_text[-1] if self.lines_text else ""

    @property
    def all_text(self) -> str:
        """The session as a script that replays it with plain PyTorch."""
        from tuilab.core.codelog import script_text

        return script_text(self.script_entries)
