"""Where a learner is in each lesson, kept between sessions.

One small TOML file in the user data directory (`TUILAB_DATA_DIR` overrides it, as for the
autosave): for each lesson the step to come back to and the steps whose figure matched. It is
data only, written atomically; a missing or broken file is an empty record, never an error
that stops the lab (progress is a convenience, the lessons work without it).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tuilab.core.autosave import data_dir
from tuilab.core.errors import TuilabError
from tuilab.core.workspace import write_atomic

FILE_NAME = "lessons-progress.toml"


@dataclass
class LessonProgress:
    step: int = 0
    matched: set[str] = field(default_factory=set)


def progress_path() -> Path:
    return data_dir() / FILE_NAME


def load_progress(path: Path | None = None) -> dict[str, LessonProgress]:
    path = path or progress_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    record = {}
    for lesson_id, entry in data.get("lessons", {}).items():
        if not isinstance(entry, dict):
            continue
        step = entry.get("step", 0)
        matched = entry.get("matched", [])
        record[str(lesson_id)] = LessonProgress(
            step=step if isinstance(step, int) and step >= 0 else 0,
            matched={str(m) for m in matched} if isinstance(matched, list) else set())
    return record


def save_progress(record: dict[str, LessonProgress], path: Path | None = None) -> None:
    """Write the record; a folder that cannot be written loses only the progress."""
    path = path or progress_path()
    data = {"lessons": {lesson_id: {"step": entry.step, "matched": sorted(entry.matched)}
                        for lesson_id, entry in sorted(record.items())}}
    with contextlib.suppress(OSError, TuilabError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, tomli_w.dumps(data))
