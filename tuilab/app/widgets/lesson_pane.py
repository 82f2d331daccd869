"""The lesson pane: one step of a seed text, the figure it expects and the lab's own figure.

It only draws what the App hands it (a `Lesson`, the step's index and a `StepResult`); the
App runs the steps through `core.lessons`. The expected and the lab's figures stand side by
side with a mark, so a learner sees at once whether the lab shows what the text says.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from tuilab.core.lessons import Lesson, StepResult


class LessonPane(VerticalScroll):
    """The current step's explanation, the keys to press, and expected vs. got."""

    DEFAULT_CSS = """
    LessonPane { height: 1fr; background: $surface; padding: 0 1; }
    LessonPane > #lesson-body { width: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lesson: Lesson | None = None
        self.index = 0
        self.result: StepResult | None = None
        self.off_path = False
        """The learner left the lesson's model (opened another): R brings the step back."""

    def compose(self):  # type: ignore[override]
        yield Static("", id="lesson-body", markup=False)

    def show(self, lesson: Lesson, index: int, result: StepResult | None, *,
             off_path: bool = False) -> None:
        self.lesson, self.index, self.result, self.off_path = lesson, index, result, off_path
        self._redraw()

    def on_mount(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        for body in self.query("#lesson-body").results(Static):  # none before it is composed
            body.update(self.render_step())

    def render_step(self) -> Group:
        """What the pane shows (tests read it as text)."""
        lesson = self.lesson
        if lesson is None:
            return Group(Text("no lesson open: o opens one"))
        step = lesson.steps[self.index]
        head = Text.assemble(
            (f"Lesson {lesson.id} · step {self.index + 1}/{len(lesson.steps)}  ", "bold"),
            (step.title, "bold cyan"))
        parts: list = [head]
        if step.section:
            parts.append(Text(f"seed {lesson.seed}, §{step.section}", style="dim"))
        parts.append(Text(step.text))
        if step.note:
            parts.append(Text(f"Note: {step.note}", style="italic yellow"))
        figures = Table.grid(padding=(0, 2))
        figures.add_column(style="bold")
        figures.add_column()
        figures.add_row("expected", Text(step.expected_text))
        result = self.result
        if result is None:
            figures.add_row("the lab", Text("…", style="dim"))
        else:
            mark = ("✓ matches", "bold green") if result.ok else ("✗ not yet", "bold red")
            figures.add_row("the lab", Text.assemble(result.got, "  ", mark))
        parts.append(figures)
        if self.off_path:
            parts.append(Text("You left the lesson's model: R brings this step back.",
                              style="bold yellow"))
        keys = f"press {step.keys}, or " if step.keys else ""
        done = result is not None and result.ok
        parts.append(Text(f"{keys}n to let the lab do it" if not done
                          else "n: next step", style="dim")
                     + Text("   N: previous   R: restart the step", style="dim"))
        return Group(*parts)
