"""Walking a lesson in the app: which step, its lab, and the figure after every change.

The App owns one `LessonController`. Opening a step builds its lab off the UI thread
(`core.lessons.lab_for_step`) and shows it like any opened model; `n` lets the lab do the
step's actions (the same `core.lessons.act` the headless check runs) or, once the figure
matches, goes on; every change the App applies re-reads the figure. Leaving the lesson's lab
(opening another model) marks the pane off the path; `R` rebuilds the step. Where the learner
got to is saved between sessions (`core.lesson_progress`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuilab.core.errors import TuilabError

if TYPE_CHECKING:
    from tuilab.app.widgets.lesson_pane import LessonPane
    from tuilab.core.lab import Lab, LabUpdate
    from tuilab.core.lessons import Lesson, StepResult


class LessonController:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.lesson: Lesson | None = None
        self.index = 0
        self.lab: Lab | None = None
        """The lab the current step runs on; another lab in the app means off the path."""
        self.result: StepResult | None = None
        self._before: Any = None
        self._busy = False
        self._did_actions = False
        """`n` already did this step's actions: the next `n` goes on, matched or not."""

    @property
    def active(self) -> bool:
        return self.lesson is not None

    # --- opening --------------------------------------------------------------------------
    def open(self, lesson_id: str, step: int | None = None) -> None:
        """Open a lesson at `step` (default: where the learner left it)."""
        from tuilab.core.lesson_progress import load_progress
        from tuilab.core.lessons import find_lesson

        try:
            lesson = find_lesson(lesson_id)
        except TuilabError as error:
            self.app.notify(str(error), severity="error", markup=False)
            return
        if step is None:
            step = load_progress().get(lesson.id, None)
            step = step.step if step is not None else 0
        self.lesson = lesson
        self._pane()  # mounts the tab
        self.go(min(max(step, 0), len(lesson.steps) - 1))

    def go(self, index: int) -> None:
        """Build the lab of step `index` in a worker; the pane shows it when ready."""
        if self.lesson is None or self._busy:
            return
        if not 0 <= index < len(self.lesson.steps):
            self.app.notify("that was the last step: o opens another lesson"
                            if index >= len(self.lesson.steps) else "this is the first step",
                            markup=False)
            return
        self._busy = True
        lesson = self.lesson
        self.app.run_worker(lambda: self._build(lesson, index), thread=True,
                            group="lesson", exit_on_error=False)

    def _build(self, lesson: Lesson, index: int) -> None:
        from tuilab.core.lessons import baseline, lab_for_step

        try:
            lab = lab_for_step(lesson, index)
            before = baseline(lab, lesson.steps[index])
        except Exception as error:  # a step that cannot be set up says so, the app stays
            self.app.call_from_thread(self._failed, error)
            return
        self.app.call_from_thread(self._built, lesson, index, lab, before)

    def _failed(self, error: BaseException) -> None:
        self._busy = False
        self.app.notify(f"lesson step: {error}", severity="error", markup=False)

    def _built(self, lesson: Lesson, index: int, lab: Lab, before: Any) -> None:
        self._busy = False
        if lesson is not self.lesson:
            return
        self.index, self.lab, self._before, self.result = index, lab, before, None
        self._did_actions = False
        self._remember(index)
        self.app._lab_ready(lab, announce=False)
        self.app.code_log.add(f"# lesson {lesson.id}, step {index + 1}: "
                              f"{lesson.steps[index].title}")
        self.refresh()

    # --- the learner's keys ---------------------------------------------------------------
    def next(self) -> None:
        """`n`: do the step for the learner, or go on once its figure matches."""
        if self.lesson is None:
            self.app.notify("no lesson open: o opens one", severity="warning")
            return
        if self.lab is None or self._busy:
            return
        if self.app.lab is not self.lab:
            self.restart()
            return
        matched = self.result is not None and self.result.ok
        if matched or self._did_actions or not self.step.actions:
            self.go(self.index + 1)
            return
        self._busy = self._did_actions = True
        lab, step = self.lab, self.step
        self.app.run_worker(lambda: self._act(lab, step), thread=True, group="lesson",
                            exit_on_error=False)

    def _act(self, lab: Lab, step: Any) -> None:
        from tuilab.core.lessons import do_action

        updates: list[LabUpdate] = []
        try:
            for action in step.actions:
                updates.append(do_action(lab, action))
        except Exception as error:
            self.app.call_from_thread(self._acted, lab, updates, error)
            return
        self.app.call_from_thread(self._acted, lab, updates, None)

    def _acted(self, lab: Lab, updates: list[LabUpdate], error: BaseException | None) -> None:
        self._busy = False
        for update in updates:
            self.app._apply(update)
        if error is not None:
            self.app.notify(f"lesson step: {error}", severity="error", markup=False)
        self.refresh()

    def previous(self) -> None:
        if self.lesson is not None:
            self.go(self.index - 1)

    def restart(self) -> None:
        if self.lesson is not None:
            self.go(self.index)

    # --- the figure -----------------------------------------------------------------------
    @property
    def step(self) -> Any:
        assert self.lesson is not None
        return self.lesson.steps[self.index]

    def refresh(self) -> None:
        """Re-read the lab's figure (after every change the App applies) and redraw."""
        if self.lesson is None or self.lab is None:
            return
        from tuilab.core.lessons import compare

        off_path = self.app.lab is not self.lab
        if not off_path:
            self.result = compare(self.lab, self.step, before=self._before)
            if self.result.ok:
                self._remember(self.index, matched=self.step.id)
        self._pane().show(self.lesson, self.index, self.result, off_path=off_path)

    def _remember(self, index: int, matched: str | None = None) -> None:
        from tuilab.core.lesson_progress import LessonProgress, load_progress, save_progress

        assert self.lesson is not None
        record = load_progress()
        entry = record.setdefault(self.lesson.id, LessonProgress())
        if entry.step == index and (matched is None or matched in entry.matched):
            return
        entry.step = index
        if matched is not None:
            entry.matched.add(matched)
        save_progress(record)

    def _pane(self) -> LessonPane:
        from textual.widgets import TabbedContent, TabPane

        from tuilab.app.widgets.lesson_pane import LessonPane

        panes = self.app.query(LessonPane)
        if panes:
            return panes.first()
        pane = LessonPane(id="lesson-pane")
        tabs = self.app.query_one("#bottom", TabbedContent)
        tabs.add_pane(TabPane("Lesson", pane, id="lesson-tab"), before="log-tab")
        tabs.active = "lesson-tab"
        return pane
