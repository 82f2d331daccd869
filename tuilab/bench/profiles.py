"""How much to measure: `--quick` (a smoke run, under a minute) and the full run (minutes).

Kept apart from the sections so a test can shrink every knob to a tiny run, and so the
trade-off (rounds against wall time on a 2-core machine) is in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tuilab.bench.edits import EDIT_PRESETS, EDITS
from tuilab.bench.training import PRESETS


@dataclass(frozen=True)
class Profile:
    """Rounds and run lengths of every section; a section with no presets is skipped."""

    name: str
    train_presets: tuple[str, ...] = PRESETS
    train_app_presets: tuple[str, ...] = PRESETS
    train_rounds: int = 7
    train_app_rounds: int = 5
    train_seconds: float = 1.0
    train_app_seconds: float = 2.0
    edit_presets: tuple[str, ...] = EDIT_PRESETS
    edits: tuple[str, ...] = EDITS
    edit_rounds: int = 5
    startup_rounds: int = 6
    scale_rounds: int = 3
    scale_real: bool = True
    warmup: int = 1
    torch_threads: int | None = None
    """Intra-op threads for the training rows (both sides); None: torch's own default."""
    hog_presets: tuple[str, ...] = ("mlp",)
    """Presets trained beside a CPU hog (bench/loaded.py); () skips the row."""
    hog_rounds: int = 5
    hog_seconds: float = 1.0


def training_threads() -> int | None:
    """1 unless TUILAB_BENCH_THREADS says otherwise (0 or "default": torch's own choice).

    Why 1: with torch's default of one thread per core, any other process on a 2-core machine
    makes OpenMP's barriers stall; the bare MLP loop measured 160-790 steps/s with 2 threads
    and 2,450-2,630 with 1 on a busy machine, which would measure the neighbours, not tuilab.
    Both sides always run with the same setting. On an idle machine set
    TUILAB_BENCH_THREADS=default to measure torch's default too.
    """
    value = os.environ.get("TUILAB_BENCH_THREADS", "1").strip().lower()
    if value in ("", "0", "default"):
        return None
    return max(1, int(value))


FULL = Profile(name="full")
QUICK = Profile(
    name="quick", train_app_presets=("mlp",), train_rounds=2, train_app_rounds=1,
    train_seconds=0.15, train_app_seconds=0.3, edit_presets=("mlp", "transformer"), edit_rounds=1,
    startup_rounds=1, scale_rounds=1, scale_real=False, warmup=1, hog_rounds=2,
    hog_seconds=0.3,
)
