"""How many intra-op threads a training run uses: chosen from the size of one step.

Why: torch starts with one intra-op thread per core, and splits every operator across them.
For a small step the split saves little, and on a busy machine it is ruinous: each operator
ends in a barrier that waits for the slowest thread, and a thread that the scheduler has given
to another process makes every step wait a time slice. Issue 13 measured it on a 2-core Xeon
at load 5: `tuilab train mlp` ran 33 steps/s with torch's default 2 threads, 743 with one.
So a run whose step is too small to split gets one thread; a bigger one keeps torch's default
(where splitting pays on an idle machine); the user may set the number (CLI `--threads`, the
app's training form, a workspace's ``[training] threads``).

The rule. Measured on the 2-core Xeon this was written on, which was never idle (other
work kept the load at 9–10), batch 64, Adam, steps/s with 1 thread and with 2::

    MLP 20→64→64→10        2.4 MFLOP/step   708 vs 24   (2 threads: 0.03×)
    MLP 20→256→256→10       28 MFLOP/step   377 vs 32   (0.08×)
    MLP 20→1024→1024→10    415 MFLOP/step    25 vs 16   (0.65×)
    MLP 20→2048→2048→10    1.6 GFLOP/step    11 vs 4    (0.39×)

On a busy machine a second thread never paid. On an idle one it pays once an operator has
enough work to split: a step below ``SPLIT_FLOPS`` (200 MFLOP) is a few milliseconds of one
core's work, the order of a scheduler's time slice, so one pre-empted thread costs more than
the split can save; above it torch's default is kept, since a big model on an idle machine is
where the second core pays (an idle machine was not available to measure that side here; the
user can set the number, and `tuilab bench` measures the rule beside a CPU hog wherever it
runs).

torch's thread count belongs to the calling thread here (OpenMP keeps it per thread): the
run sets it in the thread that iterates the trainer and puts it back when the run ends, so
the app's UI thread is never affected. That thread has its own rule, one thread for the
small work of an edit (:func:`one_thread_for_keys`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

SPLIT_FLOPS = 200_000_000
"""FLOPs per training step below which a run uses one thread (see the table above)."""

_KNOWN_CODE = ("torch", "tuilab")
"""Packages whose modules' forward may be run to count MACs (no effects of their own)."""

MAX_THREADS = 256
"""The most threads a user may ask for (a typo like 1000 is refused, not obeyed)."""


@dataclass(frozen=True)
class ThreadChoice:
    """The threads a run uses, and why: shown in the CLI's summary and the app's run line."""

    threads: int
    flops: int | None
    """Estimated FLOPs of one training step (forward + backward), None when unknown."""
    chosen_by: str
    """"auto" (from the step's size) or "user" (set in the settings)."""

    def label(self) -> str:
        """``1 thread (auto, 2.4 MFLOP/step)`` / ``4 threads (set)``."""
        words = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        if self.chosen_by == "user":
            return f"{words} (set)"
        if self.flops is None:
            return f"{words} (auto)"
        return f"{words} (auto, {format_flops(self.flops)}/step)"


def format_flops(flops: int) -> str:
    for unit, size in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if flops >= size:
            return f"{flops / size:.3g} {unit}"
    return f"{flops} FLOP"


def choose_threads(flops: int | None, available: int) -> int:
    """One thread for a step too small to split; else ``available`` (torch's default).

    An unknown size keeps torch's default: guessing small would slow a big model down far
    more than guessing big slows a small one on an idle machine.
    """
    if flops is not None and flops < SPLIT_FLOPS:
        return 1
    return max(1, available)


def step_flops(model: nn.Module, x: Tensor, batch_size: int) -> int | None:
    """FLOPs of one training step of ``batch_size`` samples shaped like ``x``'s rows.

    2 FLOPs per multiply-accumulate, and a backward pass costs about twice the forward (a
    gradient for the input and one for the weights), so a step is ~6× the forward MACs. The
    MACs come from the shape engine (a meta-device copy: no values, no time), but only for a
    model made of torch's and tuilab's own modules: counting runs ``forward``, and a user's
    forward may have effects of its own (print, count its calls) that a training run must not
    add to. Any other model is estimated as 6 × parameters × batch, exact for Linear layers.
    """
    from tuilab.core.shapes import summarize_module

    shape = (int(batch_size), *(int(d) for d in x.shape[1:]))
    macs = 0
    if all(type(m).__module__.split(".")[0] in _KNOWN_CODE for m in model.modules()):
        try:
            summary = summarize_module(model, shape, takes_tokens=not x.is_floating_point())
            macs = summary.total_macs if summary.error is None else 0
        except Exception:
            macs = 0
    if macs > 0:
        return 6 * macs
    params = sum(p.numel() for p in model.parameters() if not nn.parameter.is_lazy(p))
    return 6 * params * int(batch_size) if params else None


def resolve_threads(requested: int | None, model: nn.Module, x: Tensor, batch_size: int,
                    available: int | None = None) -> ThreadChoice:
    """The user's number when set, else the rule applied to the model's step."""
    if requested is not None:
        return ThreadChoice(int(requested), None, "user")
    flops = step_flops(model, x, batch_size)
    here = torch.get_num_threads() if available is None else available
    return ThreadChoice(choose_threads(flops, here), flops, "auto")


@contextlib.contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` in this thread, put back afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def one_thread_for_keys() -> Iterator[None]:
    """One intra-op thread for the calling thread (the app's, which answers keys) while it
    lasts; threads started meanwhile (runs, summaries, values) still get torch's default.

    Why: an edit's torch work on that thread is small (a layer built, a probe forward on two
    samples, a cast), and it comes after the user paused. With a second thread, the first
    operator after a pause waits for OpenMP to wake its sleeping worker: on a 2-core AMD
    EPYC, a 2×20 @ 20×256 linear took 4-15 ms after 50-200 ms idle, 0.15-0.3 ms with one
    thread (0.01 ms hot), which was most of a dtype edit's key-to-frame time.

    torch keeps the count per thread, plus one process-wide number that a thread starts with;
    ``torch.set_num_threads`` writes both. The number is put back from a short-lived thread
    of its own, so only the calling thread keeps one.
    """
    saved = torch.get_num_threads()
    with intra_op_threads(1):
        _set_in_a_thread_of_its_own(saved)
        yield


def _set_in_a_thread_of_its_own(threads: int) -> None:
    setter = threading.Thread(target=torch.set_num_threads, args=(threads,),
                              name="tuilab-threads")
    setter.start()
    setter.join()
