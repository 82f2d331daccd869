"""Training overhead with the app open: the run panel's worker against the bare loop.

The app side is the real thing, headless: `make_app(lab=...)` under `run_test`, and each run
started through the run panel's `start_training` (what the settings form calls on submit), so
the worker thread posts its metric batches, the progress bar and the status line update, and
the live loss plot redraws on its timer, all competing with the training thread for the GIL
and the two cores as they do on screen.

Two figures, because they have different causes and different fixes:

* **steady state**: steps per second while steps run. The app side is the trainer's own
  `MetricsBatch.steps_per_s` (steps over the time spent in its step loop, wall clock, so every
  stall the UI causes is in it); the bare loop's clock likewise starts at its first step.
* **start and end of a run**: wall time of a 2-step run from `start_training` to the worker's
  end, against a 2-step bare loop that also makes the task (as `Lab.train` does): the fixed
  cost the UI adds to every run, which dominates short runs.

The bare loop runs on the UI thread between app runs, blocking the (idle) app: that is a
script with nothing else in the process, the baseline the issue asks for.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from tuilab.bench.harness import Comparison, alternate_async, median
from tuilab.bench.training import (
    TrainCase,
    calibrate,
    loss_gap,
    prepare_case,
    run_bare,
)

APP_SIZE = (160, 48)
"""Big enough that the loss plot has room to draw (the default 80x24 hides most of it)."""
SHORT_STEPS = 2


def _settings(case: TrainCase) -> dict[str, Any]:
    """The run settings as the settings form hands them over (device/dtype: the lab's)."""
    fields = dataclasses.asdict(case.config)
    fields.pop("device", None)
    fields.pop("dtype", None)
    return {k: v for k, v in fields.items() if v is not None}


async def compare_in_app(preset: str, *, device: str = "cpu", rounds: int, seconds: float,
                         warmup: int = 1) -> tuple[Comparison, Comparison]:
    """(steady-state steps/s, fixed cost of a run) in the running app vs the bare loop."""
    from tuilab.app.app import make_app
    from tuilab.core.lab import Lab

    case = calibrate(prepare_case(preset, device=device), seconds)
    short = case.with_steps(SHORT_STEPS)
    lab = Lab(case.spec)
    if device != "cpu":
        lab.set_device(device)
    steady = Comparison(
        name=f"train {preset} ({device}, app open)", a_label="tuilab app run",
        b_label="bare PyTorch loop", unit="steps/s", higher_is_better=True,
    )
    fixed = Comparison(
        name=f"{SHORT_STEPS}-step run {preset} ({device}, app open)", a_label="tuilab app run",
        b_label="bare loop + task", unit="ms", higher_is_better=False,
    )
    gaps: list[float] = []
    ui_share: list[float] = []
    app = make_app(lab=lab)
    async with app.run_test(size=APP_SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        panel: Any = app.run_panel()
        if panel is None:
            raise RuntimeError("the app has no run panel: cannot start a run through it")
        plot = panel.query_one("#loss-plot")
        draws_before = plot.draws

        async def app_run(run_case: TrainCase) -> tuple[float, float, list[float]]:
            """(steady steps/s, wall seconds, losses) of one run through the run panel."""
            lab.model.load_state_dict(run_case.initial)
            await pilot.pause()
            ui_start = time.thread_time()  # this is the UI thread: the app's event loop
            start = time.perf_counter()
            worker = panel.start_training(_settings(run_case))
            if worker is None:
                raise RuntimeError(f"{preset}: the run panel refused to start a run")
            await worker.wait()
            wall = time.perf_counter() - start
            run = lab.runs[-1]
            if run.status != "finished":
                raise RuntimeError(f"{preset}: the app's run ended {run.status}: {run.error}")
            if run_case is case:
                ui_share.append((time.thread_time() - ui_start) / wall)
            await pilot.pause()  # the last metrics message, and _finish_run's refresh
            await app.workers.wait_for_complete()
            batch = panel.last_batch
            if batch is None or not batch.done:
                raise RuntimeError(f"{preset}: the run panel never showed the run's end")
            return batch.steps_per_s, wall, list(run.losses)

        losses: dict[str, list[float]] = {}

        async def ours() -> float:
            rate, _, losses["a"] = await app_run(case)
            return rate

        async def bare() -> float:
            rate, losses["b"] = run_bare(case, steady=True)
            if "a" in losses:
                gaps.append(loss_gap(losses["a"], losses["b"]))
            return rate

        async def ours_short() -> float:
            return (await app_run(short))[1] * 1000

        async def bare_short() -> float:
            start = time.perf_counter()
            run_bare(short, make_data=True)
            return (time.perf_counter() - start) * 1000

        await alternate_async(ours, bare, rounds=rounds, warmup=warmup, comparison=steady)
        await alternate_async(ours_short, bare_short, rounds=max(rounds, 2), warmup=warmup,
                              comparison=fixed)
        draws = plot.draws - draws_before
    steady.note = (f"{case.config.steps} steps a run via RunPanel.start_training; UI thread "
                   f"busy {median(ui_share):.0%} of a run (CPU); loss plot redrawn {draws} "
                   f"times; max |loss difference| "
                   f"{max(gaps) if gaps else float('nan'):.2e}")
    fixed.note = "start_training → worker done, vs make_task + 2 bare steps"
    return steady, fixed
