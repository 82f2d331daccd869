"""Training beside a CPU hog: tuilab's trainer, with the thread count it chooses itself, against
the bare loop at torch's default threads, both while other processes keep every core busy.

Why this row: a laptop is rarely idle, and torch's default (one intra-op thread per core)
collapses there: each operator ends in a barrier that waits for a thread the scheduler gave
to someone else (measured on a 2-core Xeon at load 5: `tuilab train mlp` 33 steps/s with the
default, 743 with one thread). The other training rows run both sides at the same thread
count, to measure tuilab's own overhead; this one measures what the user gets from
`core/threads.py` on a busy machine — the ratio is tuilab ÷ a loop written without thought
for threads.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace

from tuilab.bench.harness import Comparison, alternate
from tuilab.bench.training import calibrate, prepare_case, run_bare, run_trainer

HOG_GOAL = 1.0
"""tuilab beside a hog must be at least as fast as the bare loop at torch's default threads."""

HOG_CODE = "while True: pass"


def hog_count() -> int:
    """One busy process per core (at most 4): the load of a laptop compiling something."""
    return max(1, min(4, os.cpu_count() or 1))


@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` processes spinning a core each, killed (each by its own handle) on exit."""
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            hogs.append(subprocess.Popen([sys.executable, "-c", HOG_CODE],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL))
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


def compare_beside_hog(preset: str, *, rounds: int, seconds: float, warmup: int,
                       default_threads: int, hogs: int | None = None) -> Comparison:
    """tuilab's trainer (threads: its own choice) vs the bare loop at `default_threads`
    (torch's default), alternating, with `hogs` busy processes running throughout."""
    from tuilab.core.threads import intra_op_threads, resolve_threads

    count = hog_count() if hogs is None else hogs
    comparison = Comparison(
        name=f"train {preset} (cpu, beside {count} CPU hog{'s' if count != 1 else ''})",
        a_label="tuilab train(), threads chosen", b_label="bare loop, torch default threads",
        unit="steps/s", higher_is_better=True,
    )
    with intra_op_threads(default_threads), cpu_hogs(count):
        case = prepare_case(preset)
        case = calibrate(replace(case, config=replace(case.config, threads=None)), seconds)
        alternate(lambda: run_trainer(case)[0], lambda: run_bare(case)[0], rounds=rounds,
                  warmup=warmup, comparison=comparison)
    choice = resolve_threads(None, case.fresh_model(), case.data.x_train, case.config.batch_size,
                             available=default_threads)
    comparison.note = (f"{case.config.steps} steps a run; tuilab: {choice.label()}; bare loop: "
                       f"{default_threads} threads; {count} hogs (python -c '{HOG_CODE}')")
    return comparison
