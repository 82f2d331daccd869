"""The live loss plot: training and validation loss (and accuracy) of this run and earlier ones.

Why it throttles itself: plotext rebuilds the whole canvas on every render (~40 ms for 2,000
points on this machine; turning its ANSI text into strips adds a third), and the training
worker delivers a batch of metrics twice a second. Each redraw holds the GIL that the training
thread needs (the benchmark holds the app to ≥ 0.99 of a bare loop's steps/s), so callers only
*ask* for a replot (:meth:`request_replot`), and a one-shot timer draws once both
``min_interval`` has passed and the last whole draw's cost is at most ``budget`` of the time
since it (a 10 ms draw waits 2 s at the default 0.5 %, never more than ``max_interval``).
Nothing wakes up while nothing changes. Each series is averaged down to at most
``max_points`` points.

It reads the runs' histories (``RunRecord``-like objects with ``steps``, ``losses``,
``val_steps``, ``val_losses``, ``val_accuracy``, ``name``), never tensors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from textual.binding import Binding, BindingType
from textual.geometry import Region
from textual.reactive import reactive
from textual.strip import Strip
from textual.timer import Timer
from textual_plotext import PlotextPlot

#: One colour per run (the latest runs keep the earliest colours' order stable by index).
RUN_COLOURS: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (23, 190, 207), (227, 119, 194), (188, 189, 34),
)


class RunHistory(Protocol):
    """What the plot reads from a run (``tuilab.core.lab.RunRecord`` fits)."""

    name: str
    status: str
    steps: list[int]
    losses: list[float]
    val_steps: list[int]
    val_losses: list[float]
    val_accuracy: list[float]


def step_ticks(low: float, high: float, count: int = 6) -> list[int]:
    """Whole-step ticks for the x axis, about `count` of them, 1, 2 or 5 times a power of ten
    apart (plotext's own ticks fall between steps: "12.5" is no step a run has)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        return []
    span = max(high - low, 1.0)
    raw = span / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    spacing = next((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), 1)
    spacing = max(1, int(spacing))
    first = math.ceil(low / spacing) * spacing
    return list(range(int(first), math.floor(high) + 1, spacing))


def downsample(xs: Sequence[float], ys: Sequence[float],
               max_points: int) -> tuple[list[float], list[float]]:
    """Bucket means of the finite points, at most ``max_points`` of them; the last point kept.

    Averaging (not striding) keeps the trend of a noisy loss honest when 10,000 steps are
    drawn in 100 columns.
    """
    pairs = [(x, y) for x, y in zip(xs, ys, strict=False)
             if isinstance(y, (int, float)) and math.isfinite(y)]
    if len(pairs) <= max_points:
        return [p[0] for p in pairs], [p[1] for p in pairs]
    size = math.ceil(len(pairs) / max_points)
    out_x: list[float] = []
    out_y: list[float] = []
    for start in range(0, len(pairs), size):
        chunk = pairs[start:start + size]
        out_x.append(chunk[-1][0])
        out_y.append(sum(p[1] for p in chunk) / len(chunk))
    return out_x, out_y


class LossPlot(PlotextPlot):
    """Loss curves of up to ``max_runs`` runs overlaid, one colour per run, with a legend.

    Training loss is a line, validation loss dots in the same colour; validation accuracy
    (classification) goes on the right axis.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("L", "toggle_log", "Log scale", show=False)]

    DEFAULT_CSS = """
    LossPlot {
        width: 1fr;
        height: 1fr;
        min-height: 8;
    }
    """

    log_scale: reactive[bool] = reactive(False)
    """Draw the loss on a log axis (losses that span orders of magnitude)."""

    def __init__(self, *, max_runs: int = 4, max_points: int = 200,
                 min_interval: float = 0.25, max_interval: float = 3.0, budget: float = 0.005,
                 name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.max_runs = max_runs
        self.max_points = max_points
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.budget = budget
        self._timer: Timer | None = None
        self._runs: list[Any] = []
        self._dirty = True
        self._last_draw = 0.0
        self._render_cost = 0.0
        self._prepare_cost = 0.0
        self._rendered = False
        self.draws = 0
        """How many times the plot was rebuilt (the tests check the throttle with it)."""

    def on_mount(self) -> None:
        super().on_mount()
        self.replot()

    def render(self) -> Any:
        self._rendered = True
        return super().render()

    def render_lines(self, crop: Region) -> list[Strip]:
        """Time a draw whole: plotext's canvas (`render`) is only ~¾ of it; turning the ANSI
        text into styled strips is the rest, and all of it holds the GIL."""
        start = time.perf_counter()
        self._rendered = False
        lines = super().render_lines(crop)
        if self._rendered:  # a new canvas, not the cached one
            self._render_cost = self._prepare_cost + time.perf_counter() - start
        return lines

    # --- public API ---------------------------------------------------------------------
    def set_runs(self, runs: Sequence[RunHistory]) -> None:
        """Show these runs (the last ``max_runs`` of them); drawn on the next tick."""
        self._runs = list(runs)[-self.max_runs:]
        self.request_replot()

    def request_replot(self) -> None:
        """Ask for a redraw: it happens when the throttle allows, not now."""
        self._dirty = True
        if self._timer is not None or not self.is_mounted:
            return
        wait = min(self.max_interval, max(
            self.min_interval, self._render_cost / self.budget if self.budget else 0.0))
        delay = max(0.02, self._last_draw + wait - time.monotonic())  # 0 breaks Timer
        self._timer = self.set_timer(delay, self._tick, name="loss-plot-replot")

    def _tick(self) -> None:
        self._timer = None
        if self._dirty:
            self.replot()

    def replot(self) -> None:
        """Rebuild the plot from the runs' histories now."""
        start = time.perf_counter()
        self._dirty = False
        self._last_draw = time.monotonic()
        self.draws += 1
        plt = self.plt
        plt.clear_data()
        plt.title("loss" + (" (log)" if self.log_scale else ""))
        plt.xlabel("step")
        plt.yscale("log" if self.log_scale else "linear")
        any_accuracy = False
        steps = [step for run in self._runs for step in (run.steps[:1] + run.steps[-1:])]
        ticks = step_ticks(min(steps), max(steps)) if steps else []
        if ticks:
            plt.xticks(ticks, [str(tick) for tick in ticks])
        for index, run in enumerate(self._runs):
            colour = RUN_COLOURS[index % len(RUN_COLOURS)]
            xs, ys = downsample(run.steps, self._positive(run.losses), self.max_points)
            if xs:
                plt.plot(xs, ys, color=colour, marker="braille", label=f"{run.name} train")
            vx, vy = downsample(run.val_steps, self._positive(run.val_losses),
                                self.max_points)
            if vx:
                plt.plot(vx, vy, color=colour, marker="dot", label=f"{run.name} val")
            ax, ay = downsample(run.val_steps, run.val_accuracy, self.max_points)
            if ax:
                any_accuracy = True
                plt.plot(ax, ay, color=colour, marker="x", yside="right",
                         label=f"{run.name} acc")
        if any_accuracy:
            plt.ylabel("accuracy", yside="right")
            plt.ylim(0, 1, yside="right")
        self._prepare_cost = time.perf_counter() - start
        self.refresh()

    def _positive(self, values: Sequence[float]) -> list[float]:
        if not self.log_scale:
            return list(values)
        return [v if v > 0 else math.nan for v in values]

    # --- watchers and actions -----------------------------------------------------------
    def watch_log_scale(self) -> None:
        self.request_replot()

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale
