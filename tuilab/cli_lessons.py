"""`tuilab lessons [--check] [--json]` and `tuilab lesson ID`: the seed texts as guided steps.

`lessons` lists the lessons; `--check` runs every step headless on the same engine as the app
and compares each figure (exit 0 only when all match; the test suite runs it). `lesson ID`
opens the app on a lesson, its pane beside the builder.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from tuilab.cli_commands import EXIT_BAD_INPUT, EXIT_DOES_NOT_FIT, EXIT_OK, fail

if TYPE_CHECKING:
    from rich.console import Console


def add_parsers(sub: Any) -> None:
    """Register `lessons` and `lesson` on the CLI's subparsers."""
    lessons = sub.add_parser(
        "lessons", help="list the lessons (the seed texts as steps), or check them all",
        description="List the lessons, one per seed text. With --check, run every step "
        "without a screen and compare its figure with the expected one.")
    lessons.add_argument("--check", action="store_true",
                         help="run every step and compare its figure (default: only list)")
    lessons.add_argument("--json", action="store_true",
                         help="print one JSON document (default: a table)")
    lesson = sub.add_parser("lesson", help="open the lab on a lesson",
                            description="Open the lab on a lesson: its pane shows each step, "
                            "the expected figure and the lab's own, side by side.")
    lesson.add_argument("id", help="the lesson's id, e.g. 001 (tuilab lessons lists them)")
    lesson.add_argument("--step", type=int, default=None,
                        help="start at this step, counted from 1 (default: where you left "
                        "off, else the first)")


def cmd_lessons(console: Console, *, check: bool, as_json: bool,
                err_console: Console | None = None) -> int:
    from tuilab.core.errors import TuilabError
    from tuilab.core.lessons import check_all, check_report, load_lessons

    try:
        lessons = load_lessons()
    except TuilabError as error:
        return fail(console, err_console, str(error))
    if not check:
        if as_json:
            console.out(json.dumps([{"id": lesson.id, "seed": lesson.seed,
                                     "title": lesson.title, "steps": len(lesson.steps)}
                                    for lesson in lessons], indent=2), highlight=False)
            return EXIT_OK
        table = Table(title="lessons (tuilab lesson ID opens one)")
        for column in ("id", "seed", "title", "steps"):
            table.add_column(column, justify="right" if column == "steps" else "left")
        for lesson in lessons:
            table.add_row(lesson.id, lesson.seed, Text(lesson.title), str(len(lesson.steps)))
        console.print(table)
        return EXIT_OK
    report = check_report(check_all(lessons))
    if as_json:
        console.out(json.dumps(report, indent=2), highlight=False)
    else:
        _print_check(console, report)
    return EXIT_OK if report["passed"] == report["total"] else EXIT_DOES_NOT_FIT


def _print_check(console: Console, report: dict[str, Any]) -> None:
    table = Table(title="tuilab lessons --check")
    for column in ("step", "expected", "got", ""):
        table.add_column(column)
    for lesson in report["lessons"]:
        for step in lesson["steps"]:
            mark = Text("✓", style="green") if step["ok"] else Text("✗", style="bold red")
            table.add_row(Text(f"{lesson['id']}/{step['id']}"), Text(step["expected"]),
                          Text(step["got"]), mark)
    console.print(table)
    console.print(Text(f"{report['passed']} of {report['total']} steps match"))


def cmd_lesson(lesson_id: str, *, step: int | None,
               err_console: Console | None = None) -> int:
    from rich.console import Console as RichConsole

    from tuilab.core.errors import TuilabError
    from tuilab.core.lessons import find_lesson

    try:
        lesson = find_lesson(lesson_id)
    except TuilabError as error:
        return fail(err_console or RichConsole(stderr=True), None, str(error))
    if step is not None and not 1 <= step <= len(lesson.steps):
        return fail(err_console or RichConsole(stderr=True), None,
                    f"--step must be between 1 and {len(lesson.steps)}", EXIT_BAD_INPUT)
    from tuilab.app.launch import launch

    return launch("mlp", lesson=lesson.id, lesson_step=None if step is None else step - 1)
