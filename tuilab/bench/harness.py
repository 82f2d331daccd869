"""Side-by-side A/B timing: the one way every figure of `tuilab bench` is measured.

Why paired, alternating rounds and median ratios: on a shared 2-core machine the speed of
the CPU drifts by several percent over seconds (turbo, other processes, the page cache), so
an absolute time measured once, or A measured after all of B, says more about the moment
than about the code. Running A and B back to back in the same process, flipping their order
every round (ABBA...), exposes both to the same drift; each round yields one ratio A/B, and
the median of those ratios ignores the odd round that a background process spoiled. The
absolute medians are kept for reference only.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# A ratio whose rounds disagree by more than this (interquartile range) cannot decide a goal
# of 0.97 or 0.99: the machine was busy with something else. The bench says so instead of
# judging; likewise when the goal lies inside the median's confidence interval (`verdict`).
NOISE_IQR = 0.10
# How sure a verdict must be that the median ratio is on its side of the goal.
CONFIDENCE = 0.95
# Fewer paired rounds than this (the --quick smoke run) give a ratio but decide no goal.
MIN_ROUNDS_TO_JUDGE = 3


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values (a section that could not run keeps its row)."""
    return statistics.median(values) if values else float("nan")


def median_interval(values: Sequence[float],
                    confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A distribution-free confidence interval for the median: the order statistics
    x(k) and x(n+1-k) for the largest k whose coverage, 1 - 2·P(Binomial(n, ½) < k), is at
    least `confidence` (the whole range when even that falls short, as with 5 rounds).

    Unlike the quartiles it narrows as rounds are added, so a longer run can decide a ratio
    that sits within a percent of its goal: 25 rounds give x(8)..x(18).
    """
    xs = sorted(values)
    n = len(xs)
    if not n:
        return float("nan"), float("nan")
    k = 1
    while k < (n + 1) // 2:
        below = sum(math.comb(n, i) for i in range(k + 1)) / 2**n  # P(Binomial < k + 1)
        if 1 - 2 * below < confidence:
            break
        k += 1
    return xs[k - 1], xs[n - k]


@dataclass
class Comparison:
    """One A/B figure: paired samples of A and B and their per-round ratio A/B.

    ``unit`` says what a sample is ("steps/s", "s", "ms"); with ``higher_is_better`` the
    ratio reads as "A reaches this fraction of B's speed", otherwise as "A takes this many
    times B's time".
    """

    name: str
    a_label: str
    b_label: str
    unit: str
    higher_is_better: bool
    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ratios(self) -> list[float]:
        return [x / y for x, y in zip(self.a, self.b, strict=False) if y]

    @property
    def ratio(self) -> float:
        """The median of the per-round ratios A/B (NaN when no round ran)."""
        return median(self.ratios)

    @property
    def spread(self) -> tuple[float, float]:
        """Lowest and highest per-round ratio, to show how noisy the figure was."""
        ratios = self.ratios
        return (min(ratios), max(ratios)) if ratios else (float("nan"), float("nan"))

    @property
    def quartiles(self) -> tuple[float, float]:
        """First and third quartiles of the per-round ratios: how far to trust the median.

        With fewer than four rounds they are the lowest and highest ratio.
        """
        ratios = sorted(self.ratios)
        if len(ratios) < 4:
            return (ratios[0], ratios[-1]) if ratios else (float("nan"), float("nan"))
        low, _, high = statistics.quantiles(ratios, n=4)
        return low, high

    @property
    def iqr(self) -> float:
        low, high = self.quartiles
        return high - low

    @property
    def interval(self) -> tuple[float, float]:
        """The median ratio's confidence interval (`median_interval`)."""
        return median_interval(self.ratios)

    def to_json(self) -> dict[str, Any]:
        low, high = self.spread
        return {
            "name": self.name, "a": self.a_label, "b": self.b_label, "unit": self.unit,
            "higher_is_better": self.higher_is_better, "rounds": len(self.ratios),
            "ratio": _finite(self.ratio), "ratio_min": _finite(low), "ratio_max": _finite(high),
            "ratio_iqr": _finite(self.iqr), "ratio_q1": _finite(self.quartiles[0]),
            "ratio_q3": _finite(self.quartiles[1]),
            "ratio_ci_low": _finite(self.interval[0]), "ratio_ci_high": _finite(self.interval[1]),
            "a_median": _finite(median(self.a)), "b_median": _finite(median(self.b)),
            "a_samples": list(self.a), "b_samples": list(self.b), "note": self.note,
        }


def _finite(value: float) -> float | None:
    """JSON has no NaN: a figure that was not measured is null."""
    return None if math.isnan(value) else value


def alternate(run_a: Callable[[], float], run_b: Callable[[], float], *, rounds: int,
              warmup: int = 1, comparison: Comparison) -> Comparison:
    """Run A and B `rounds` times each, alternating ABBA, after `warmup` unrecorded pairs.

    Each callable does one measurement and returns its value in the comparison's unit. The
    warm-up pairs pay for first-call costs (lazy imports, allocator growth, kernel choice)
    that neither side should be charged with.
    """
    for _ in range(warmup):
        run_a()
        run_b()
    for i in range(rounds):
        if i % 2 == 0:
            a = run_a()
            b = run_b()
        else:
            b = run_b()
            a = run_a()
        comparison.a.append(a)
        comparison.b.append(b)
    return comparison


async def alternate_async(run_a: Callable[[], Awaitable[float]],
                          run_b: Callable[[], Awaitable[float]], *, rounds: int,
                          warmup: int = 1, comparison: Comparison) -> Comparison:
    """`alternate` for measurements that must run inside the app's event loop."""
    for _ in range(warmup):
        await run_a()
        await run_b()
    for i in range(rounds):
        if i % 2 == 0:
            a = await run_a()
            b = await run_b()
        else:
            b = await run_b()
            a = await run_a()
        comparison.a.append(a)
        comparison.b.append(b)
    return comparison


def verdict(row: dict[str, Any], goal: float) -> tuple[bool | None, str]:
    """Whether a higher-is-better ratio row meets `goal`, or None with the reason it cannot say.

    Undecided when too few rounds ran (a smoke run), when the rounds scatter too widely (the
    machine was busy), or when the goal lies inside the median's 95 % confidence interval:
    then which side of the goal the median fell on is luck, and more rounds (`--rounds`)
    narrow the interval until it says.
    """
    ratio, iqr = row.get("ratio"), row.get("ratio_iqr")
    low, high = row.get("ratio_ci_low"), row.get("ratio_ci_high")
    if low is None and row.get("a_samples"):  # an older saved run: recompute from its samples
        again = Comparison("", "", "", "", True, list(row["a_samples"]), list(row["b_samples"]))
        low, high = again.interval
        iqr = again.iqr
    if ratio is None:
        return None, "–"
    if row.get("rounds", 0) < MIN_ROUNDS_TO_JUDGE:
        return None, f"{ratio:.3f} ({row.get('rounds', 0)} round(s): a smoke test, no verdict)"
    if iqr is not None and iqr > NOISE_IQR:
        return None, f"{ratio:.3f}, too noisy to judge (rounds' IQR {iqr:.2f}: a busy machine)"
    if low is not None and high is not None and low <= goal <= high:
        return None, (f"{ratio:.3f}, undecided: the goal lies within the median's 95 % "
                      f"interval {low:.3f}–{high:.3f} ({row.get('rounds')} rounds)")
    spread = "" if low is None or high is None else f" (95 % interval {low:.3f}–{high:.3f})"
    return ratio >= goal, f"{ratio:.3f}{spread}"


def timed(fn: Callable[[], Any]) -> float:
    """Seconds that one call of `fn` took (perf_counter: monotonic, sub-microsecond)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass(frozen=True)
class Goal:
    """One line of the final table: a figure, what it measured, the goal, and whether it met.

    ``met`` is None when the figure could not be measured here (no GPU, not enough memory):
    the table then says why in ``measured`` instead of pretending a pass or a failure.
    """

    figure: str
    measured: str
    goal: str
    met: bool | None

    def to_json(self) -> dict[str, Any]:
        return {"figure": self.figure, "measured": self.measured, "goal": self.goal,
                "met": self.met}


def mark(met: bool | None) -> str:
    """✓, ✗ or – (not measured) for the goals table."""
    return "–" if met is None else ("✓" if met else "✗")
