"""The header line: which model, in which mode, how big, and whether it is saved.

Everything comes from the lab's attributes and its snapshot totals (plain numbers), so the
header redraws in microseconds after every change. While a prompt is open (the precision, the
device, a node's arguments: `line_prompt.py`) the line is that prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import events
from textual.reactive import reactive
from textual.widget import Widget

from tuilab.app.widgets.line_prompt import LinePrompt
from tuilab.core.safe_text import printable
from tuilab.core.units import size_text

if TYPE_CHECKING:
    from tuilab.core.lab import Lab
    from tuilab.core.memory import MemoryPlan


class LabHeader(Widget):
    """One line: • name │ train/eval │ device │ dtype │ params (trainable) │ memory │ a training
    step's peak and whether it fits the device │ file."""

    DEFAULT_CSS = """
    LabHeader {
        height: 1;
        background: $panel;
        color: $text;
        padding: 0 1;
    }
    """

    status: reactive[str] = reactive("loading PyTorch…")
    """Shown instead of the model line while no lab is loaded (or when loading failed)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lab: Lab | None = None
        self.memory: MemoryPlan | None = None
        """The last memory plan (a training step's peak, and where it fits), or None."""
        self.prompt: LinePrompt | None = None
        """The question asked in this line (`line_prompt.py`), while it is open."""

    def ask(self, prompt: LinePrompt) -> bool:
        """Show `prompt` in this line until it is done. Returns False (and does nothing) while
        another is open: a key pressed twice asks once."""
        if self.prompt is not None:
            return False
        self.prompt = prompt
        self.app.capture_mouse(self)  # every click comes here meanwhile: see on_click
        self.refresh()
        return True

    def press(self, key: str, character: str | None = None) -> None:
        """A key for the open prompt."""
        prompt = self.prompt
        if prompt is None:
            return
        error = prompt.error
        if prompt.press(key, character):
            self.close()
            return
        self.refresh()
        if prompt.error is not None and prompt.error != error:
            # in full: at 80 columns the line has room for its start only
            self.notify(prompt.error, severity="error", markup=False)

    def paste(self, text: str) -> None:
        if self.prompt is not None:
            self.prompt.paste(text)
            self.refresh()

    def cancel(self) -> None:
        """Drop the open prompt: nothing changes."""
        if self.prompt is not None:
            self.prompt.cancel()
            self.close()

    def close(self) -> None:
        """Show the model again (in this frame), then let the prompt deliver its answer."""
        prompt, self.prompt = self.prompt, None
        if prompt is None:
            return
        if self.app.mouse_captured is self:
            self.app.capture_mouse(None)
        self.refresh()
        prompt.closed()

    def on_click(self, event: events.Click) -> None:
        """While a prompt is open the header has the mouse, so every click comes here, and
        none reaches what is under it (as with a modal, nothing there starts an edit or a run
        meanwhile): one on the line goes to the prompt (a choice picks it, a field is marked),
        one outside closes a choice with no change."""
        prompt = self.prompt
        if prompt is None:
            return
        event.stop()
        if not self.size.region.contains(event.x, event.y):
            if prompt.closes_on_outside_click:
                self.cancel()
            return
        if prompt.click(event.x - self.styles.padding.left):
            self.close()
        else:
            self.refresh()

    def show_memory(self, plan: MemoryPlan | None) -> None:
        """Show a new memory plan (None hides it: the shapes failed or need real values)."""
        self.memory = plan
        self.refresh()

    def show(self, lab: Lab | None) -> None:
        """Redraw from `lab` (call after every change), in the frame after the edit's own.

        The header is the top line: repainted in the edit's frame, it stretched that frame's
        dirty area (the box around every changed region) over the whole screen's height, and
        every widget inside the box is asked for its lines. `text` is current at once.
        """
        self.lab = lab
        self.call_after_refresh(self.refresh)

    @property
    def text(self) -> str:
        """The header as plain text (tests read it)."""
        return self.render().plain

    def render(self) -> Text:
        if self.prompt is not None:
            return self.prompt.render(max(self.content_size.width, 20))
        lab = self.lab
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append("tuilab ", style="bold")
        if lab is None:
            line.append(self.status, style="italic")
            return line
        snap = lab.snapshot
        line.append("• " if lab.dirty else "  ", style="bold yellow")
        line.append(printable(lab.name), style="bold")
        if not lab.editable:
            line.append(" (your module)", style="dim")
        sep = (" │ ", "dim")
        line.append(*sep)
        line.append("train" if lab.training else "eval",
                    style="green" if lab.training else "yellow")
        line.append(*sep)
        line.append(lab.device)
        line.append(*sep)
        line.append(lab.dtype_name)
        line.append(*sep)
        line.append(f"{snap.total_params:,} params")
        line.append(f" ({snap.trainable_params:,} trainable)", style="dim")
        line.append(*sep)
        line.append(size_text(snap.param_bytes))
        plan = self.memory
        if plan is not None:
            line.append(*sep)
            line.append(f"step {size_text(plan.peak_for(lab.device))}")
            fits = plan.fits.get(lab.device, plan.fits.get("cpu"))
            if fits is not None:
                line.append(" fits" if fits else " too big", style="green" if fits else
                            "bold red")
        if lab.path is not None:
            line.append(*sep)
            line.append(str(lab.path), style="dim")
        return line
