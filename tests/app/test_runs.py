"""The run side in the real app: real keys, real workers, the lab and the inspector as the proof.

Each test builds the app with ``make_app(lab=...)`` (the factory the CLI uses), presses the keys a
user would, waits for the workers, and checks what changed in the lab (its runs, snapshot and
code log) and on screen (tables, progress, plot, notifications). Runs are short (tiny models,
a few dozen steps); a run that must be stopped is stopped after its first batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, ProgressBar, Static

from tuilab.app.app import make_app
from tuilab.app.screens.train_settings import TrainSettingsScreen
from tuilab.app.widgets.heatmap import Heatmap
from tuilab.app.widgets.loss_plot import LossPlot
from tuilab.app.widgets.run_panel import RunPanel
from tuilab.core.introspect import diff
from tuilab.core.lab import Lab
from tuilab.core.workspace import load_preset

SIZE = (120, 40)


async def wait_for(pilot: Pilot[Any], predicate: Callable[[], bool], timeout: float = 30.0,
                   what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def ready(pilot: Pilot[Any]) -> RunPanel:
    """The app with its run panel mounted; notifications recorded in ``app.notes``."""
    app = pilot.app
    await wait_for(pilot, lambda: bool(app.query(RunPanel)), what="the run panel")
    notes: list[tuple[str, str]] = []
    original = app.notify

    def notify(message: str, *args: Any, **kwargs: Any) -> None:
        notes.append((str(message), str(kwargs.get("severity", "information"))))
        original(message, *args, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    app.notes = notes  # type: ignore[attr-defined]
    await pilot.pause()
    return app.query_one(RunPanel)


def table_rows(panel: RunPanel, table_id: str) -> list[list[str]]:
    table = panel.query_one(table_id, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(panel: RunPanel, widget_id: str) -> str:
    return str(panel.query_one(widget_id, Static).render())


async def start_run(pilot: Pilot[Any], steps: int) -> None:
    """Press t, type the steps into the settings form, press enter."""
    await pilot.press("t")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, TrainSettingsScreen),
                   what="the settings form")
    await pilot.pause()
    await pilot.press(*str(steps), "enter")
    await wait_for(pilot, lambda: not isinstance(pilot.app.screen, TrainSettingsScreen),
                   what="the form to close")


# --------------------------------------------------------------------------------------------
# training


async def test_a_run_shows_progress_and_plot_stops_and_keeps_its_history() -> None:
    lab = Lab(load_preset("mlp"))
    lab.train_settings = {"batch_size": 8, "val_every": 5}
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        plot = panel.query_one(LossPlot)
        draws = plot.draws
        await start_run(pilot, 100000)
        assert panel.running and lab.busy_reason
        run = lab.runs[-1]
        assert run.config["steps"] == 100000 and run.config["batch_size"] == 8
        await wait_for(pilot, lambda: panel.last_batch is not None and len(run.steps) > 10,
                       what="the first metrics")
        # Pause first: Pilot waits for the process to go idle after each key, which a running
        # loop never does (each press would cost Pilot's 1 s maximum wait, twice).
        await pilot.press("p")
        assert panel.paused
        # the model is locked while the run goes, and the lab says so
        await pilot.press("f")
        await pilot.pause()
        assert any("a training run is going" in m and s == "error" for m, s in app.notes)
        bar = panel.query_one(ProgressBar)
        # the bar and the line repaint on a timer (UI_INTERVAL): wait for it, however busy
        # the machine is, rather than assume it fired already
        await wait_for(pilot, lambda: bar.progress > 0, what="the progress bar")
        assert bar.total == 100000
        assert "steps/s" in text_of(panel, "#train-stats")
        await wait_for(pilot, lambda: plot.draws > draws, what="a replot")
        await pilot.press("x")
        await wait_for(pilot, lambda: not panel.running, what="the run to stop")
        assert run.status == "stopped" and 0 < len(run.steps) < 100000
        assert len(run.losses) == len(run.steps) and run.val_steps
        assert lab.busy_reason == ""
        assert any(f"{run.name} stopped" in m for m, _ in app.notes)
        assert app.last_update is not None and app.last_update.description == "after training"
        assert "opt = torch.optim.Adam(net.parameters(), lr=0.01)" in app.code_log.all_text
        kept = list(run.losses)

        # a second, short run is overlaid on the first, whose history stays
        await start_run(pilot, 30)
        await wait_for(pilot, lambda: not panel.running, what="the second run")
        second = lab.runs[-1]
        assert second is not run and second.status == "finished" and len(second.steps) == 30
        assert run.losses == kept
        assert [r.name for r in plot._runs] == [run.name, second.name]
        assert panel.query_one(ProgressBar).progress == 30


async def test_pause_then_resume_then_finish() -> None:
    lab = Lab(load_preset("mlp"))
    lab.train_settings = {"batch_size": 4, "val_every": 0}
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        await start_run(pilot, 100000)
        await wait_for(pilot, lambda: panel.last_batch is not None, what="a first batch")
        await pilot.press("p")
        assert panel.paused
        await pilot.pause(0.3)
        count = len(lab.runs[-1].steps)
        await pilot.pause(0.3)
        assert len(lab.runs[-1].steps) == count  # no step while paused
        assert "paused" in text_of(panel, "#run-status")
        await pilot.press("p")
        assert not panel.paused
        await wait_for(pilot, lambda: len(lab.runs[-1].steps) > count, what="steps again")
        panel.action_pause()  # so that the key below is not slowed by Pilot's idle wait
        await pilot.press("x")
        await wait_for(pilot, lambda: not panel.running, what="the stop")
        assert lab.runs[-1].status == "stopped"


async def test_a_nan_run_says_where_and_the_app_stays_up() -> None:
    lab = Lab(load_preset("mlp"))
    lab.train_settings = {"optimizer": "sgd", "lr": 1e6, "momentum": 0.0, "val_every": 0}
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        await start_run(pilot, 50)
        await wait_for(pilot, lambda: not panel.running, what="the failed run")
        run = lab.runs[-1]
        assert run.status == "failed"
        errors = [m for m, s in app.notes if s == "error"]
        assert errors and "step" in errors[-1] and "not finite" in errors[-1]
        batch = panel.last_batch
        assert batch is not None and batch.error and batch.error_path
        assert batch.error_path in errors[-1]
        assert run.losses  # the steps before the fault stay
        assert app.is_running and lab.busy_reason == ""
        await pilot.press("f")  # still usable
        await pilot.pause()
        assert table_rows(panel, "#forward-table")


async def test_a_run_that_cannot_start_is_a_message_not_a_crash() -> None:
    lab = Lab(load_preset("mlp"))  # 20 inputs: the 2-D moons task does not fit
    lab.train_settings = {"task": "moons"}
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        await start_run(pilot, 20)
        await wait_for(pilot, lambda: not panel.running, what="the failed start")
        run = lab.runs[-1]
        assert run.status == "failed" and "moons" in run.error
        assert any(s == "error" and "run 1 failed" in m and "moons" in m for m, s in app.notes)
        assert app.is_running and lab.busy_reason == ""
        lab.train_settings = {"task": "teacher"}
        await start_run(pilot, 20)  # the next run starts as usual
        await wait_for(pilot, lambda: not panel.running, what="the second run")
        assert lab.runs[-1].status == "finished"


async def test_a_2d_task_draws_the_decision_regions() -> None:
    from torch import nn

    module = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
    lab = Lab(module=module, input_shape=(8, 2), name="tiny")
    lab.train_settings = {"task": "moons", "lr": 0.05, "val_every": 10}
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        await start_run(pilot, 40)
        await wait_for(pilot, lambda: not panel.running, what="the run")
        heatmap = panel.query_one(Heatmap)
        await wait_for(pilot, lambda: heatmap.data is not None, what="the decision regions")
        assert lab.runs[-1].val_accuracy  # classification: accuracy on the right axis
        assert "decision regions" in text_of(panel, "#view-caption")
        assert heatmap.data.height == 48


async def test_quitting_during_a_run_stops_its_thread() -> None:
    lab = Lab(load_preset("mlp"))
    lab.train_settings = {"val_every": 0}
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        await start_run(pilot, 10**7)
        await wait_for(pilot, lambda: panel.last_batch is not None, what="a first batch")
        app.exit()
        done = panel._thread_done
    assert done.wait(120), "the training thread never left its step"
    assert lab.runs[-1].status == "stopped"
    assert lab.busy_reason == ""


async def test_a_cancelled_run_is_ended_only_once_its_thread_leaves_the_model() -> None:
    """Quitting cancels the run's worker at once, but its thread is still inside a step: the
    lab's refresh (reading every .grad) must wait until the step is over. Before, it ran at
    the cancel, beside the step's zero_grad/backward, and once segfaulted the process."""
    import threading

    lab = Lab(load_preset("mlp"))
    lab.train_settings = {"val_every": 0}
    hold, inside, release = threading.Event(), threading.Event(), threading.Event()

    def block_in_forward(module: Any, args: Any) -> None:
        if hold.is_set() and threading.current_thread() is not threading.main_thread():
            inside.set()
            release.wait(120)
            inside.clear()

    lab.model.register_forward_pre_hook(block_in_forward)
    refreshed_in_step: list[bool] = []
    after_run = lab.after_run

    def recording_after_run(run: Any) -> Any:
        refreshed_in_step.append(inside.is_set())
        return after_run(run)

    lab.after_run = recording_after_run  # type: ignore[method-assign]
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        await start_run(pilot, 10**7)
        await wait_for(pilot, lambda: panel.last_batch is not None, what="a first batch")
        hold.set()
        await wait_for(pilot, inside.is_set, what="the thread inside a step")
        worker = panel._worker
        assert worker is not None
        worker.cancel()  # what quitting or removing the panel does
        await pilot.pause()
        await pilot.pause()
        assert panel.running and refreshed_in_step == []  # not ended under the step's feet
        release.set()
        await wait_for(pilot, lambda: not panel.running, what="the run to end")
        assert refreshed_in_step == [False]
        assert lab.runs[-1].status == "stopped"


# --------------------------------------------------------------------------------------------
# one-off runs


async def test_forward_in_train_mode_moves_batchnorm_buffers_in_the_inspector() -> None:
    lab = Lab(load_preset("resnet"))
    assert lab.training
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        before = lab.snapshot
        shown = app.inspector.row_text("buffers", "bn.running_mean")
        await pilot.press("f")
        await pilot.pause()
        changed = diff(before, lab.snapshot).buffers.changed
        assert {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"} <= set(changed)
        assert app.last_update is not None and "bn.running_mean" in (
            app.last_update.diff.buffers.changed)
        assert app.inspector.row_text("buffers", "bn.running_mean") != shown
        assert text_of(panel, "#forward-header").startswith("TRAIN mode")
        rows = table_rows(panel, "#forward-table")
        # the input first, with its expression, then one row per module call
        assert rows[0][:2] == ["x (input)", lab.current_input.text]
        assert rows[1][0] == "(root)" and any(r[0] == "bn" for r in rows)
        assert text_of(panel, "#forward-output").startswith(
            f"x = {lab.current_input.text} · out = [")
        # the first forward also echoes its (fixed, seeded) input: `x = torch.rand(...)`
        assert lab.code_log[-1].endswith("\nout = net(x)") and "x = torch.rand(" in (
            lab.code_log[-1])

        await pilot.press("T")  # eval mode: the running statistics are only read
        await pilot.pause()
        before = lab.snapshot
        await pilot.press("f")
        await pilot.pause()
        assert not diff(before, lab.snapshot).buffers.changed
        assert text_of(panel, "#forward-header").startswith("EVAL mode")


async def test_backward_then_zero_grad() -> None:
    lab = Lab(load_preset("mlp"))
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        await pilot.press("b")
        await pilot.pause()
        rows = dict((r[0], r[1]) for r in table_rows(panel, "#backward-table"))
        assert set(rows) == {k for k, _ in lab.model.named_parameters()}
        for key, p in lab.model.named_parameters():
            assert float(rows[key]) == pytest.approx(p.grad.norm().item(), rel=1e-3)
        assert text_of(panel, "#backward-loss").startswith("loss ")
        assert all(row.has_grad for row in lab.snapshot.parameters.values())
        await pilot.press("g")
        await pilot.pause()
        assert not table_rows(panel, "#backward-table")
        assert all(p.grad is None for p in lab.model.parameters())
        assert not any(row.has_grad for row in lab.snapshot.parameters.values())


async def test_init_changes_the_parameter_statistics() -> None:
    lab = Lab(load_preset("mlp"))
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        before = lab.snapshot
        std_before = lab.model[0].weight.std().item()
        await pilot.press("I")
        await wait_for(pilot, lambda: app.screen is not app.screen_stack[0], what="the picker")
        await pilot.press("enter")  # the first scheme: normal(0, 0.01), zero bias
        await pilot.pause()
        changed = diff(before, lab.snapshot).parameters.changed
        assert {"0.weight", "0.bias", "2.weight", "2.bias"} <= set(changed)
        assert lab.model[0].weight.std().item() == pytest.approx(0.01, rel=0.1)
        assert std_before > 0.05
        rows = {r[0]: r for r in table_rows(panel, "#params-table")}
        assert float(rows["0.weight"][3]) == pytest.approx(0.01, rel=0.1)
        assert rows["0.bias"][6] == "100.0%"  # zeros
        assert any("net.apply(init_normal)" in line for line in lab.code_log)


async def test_hooks_stream_events_and_show_on_the_module() -> None:
    lab = Lab(load_preset("mlp"))
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        panel.focus()
        await pilot.press("k")
        await wait_for(pilot, lambda: app.screen is not app.screen_stack[0], what="the picker")
        await pilot.press("enter")  # forward hook printing shapes, on the whole model
        await pilot.pause()
        assert len(lab.model._forward_hooks) == 1
        assert lab.snapshot.modules[""].hook_count == 1
        assert table_rows(panel, "#hook-table")[0][1:] == ["(root)", "forward", "shapes"]
        await pilot.press("f")
        await wait_for(pilot, lambda: panel.hook_lines >= 1, what="the hook's event")
        await pilot.press("k", "down", "enter")  # a second one: forward hook printing stats
        await pilot.pause()
        assert len(lab.model._forward_hooks) == 2
        panel.query_one("#hook-table", DataTable).focus()
        await pilot.press("delete")  # the highlighted (first) hook goes
        await pilot.pause()
        assert len(lab.model._forward_hooks) == 1
        assert [r[3] for r in table_rows(panel, "#hook-table")] == ["stats"]
        await pilot.press("H")
        await pilot.pause()
        assert not lab.model._forward_hooks and not table_rows(panel, "#hook-table")
        assert lab.snapshot.modules[""].hook_count == 0


async def test_grad_cam_on_lenet_draws_over_the_digit() -> None:
    lab = Lab(load_preset("lenet"))
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        panel.focus()
        await pilot.press("G")
        await wait_for(pilot, lambda: app.screen is not app.screen_stack[0], what="the picker")
        await pilot.press("backspace", "5", "enter")
        heatmap = panel.query_one(Heatmap)
        await wait_for(pilot, lambda: heatmap.data is not None, what="the Grad-CAM")
        caption = text_of(panel, "#view-caption")
        assert "image 5" in caption and "conv2" in caption
        # the digit on the left, the blend on the right: 32 + gap + 32 columns of pixels
        assert heatmap.data.height == 32 and heatmap.data.width > 64
        await pilot.press("B")  # not a 2-D task: said, not raised
        await wait_for(pilot, lambda: any("2-D" in m for m, _ in app.notes), what="a refusal")
        assert app.is_running


# --------------------------------------------------------------------------------------------
# the widgets' own logic


def test_downsample_averages_buckets_and_drops_non_finite_points() -> None:
    from tuilab.app.widgets.loss_plot import downsample

    xs, ys = downsample(list(range(1, 11)), [float(v) for v in range(1, 11)], 5)
    assert xs == [2, 4, 6, 8, 10] and ys == [1.5, 3.5, 5.5, 7.5, 9.5]
    xs, ys = downsample([1, 2, 3], [1.0, float("nan"), float("inf")], 10)
    assert xs == [1] and ys == [1.0]


def test_heatmap_scales_whole_pixels_and_places_points() -> None:
    heatmap = Heatmap()
    heatmap.show_classes([[0, 1], [1, 0]], points=[(0.99, 0.0, 2)])
    matrix = heatmap.scaled(8, 4)  # room for 8 x 8 pixels: each grid cell becomes 4 x 4
    assert len(matrix) == 8 and len(matrix[0]) == 8
    assert matrix[0][0] == matrix[3][3] != matrix[0][4]
    assert matrix[0][7] != matrix[0][6]  # the point, drawn in its class's strong colour
    heatmap.show_heat([[0.0, 1.0]], base=[[1.0, 0.0]])
    assert heatmap.data is not None and heatmap.data.width > 4  # image, gap, blend


async def test_the_training_form_sets_the_threads_and_the_run_line_shows_them() -> None:
    """Blank: chosen from the model's size (mlp: one thread); a number: that many."""
    lab = Lab(load_preset("mlp"))
    lab.train_settings = {"batch_size": 8, "val_every": 0}
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        for typed, threads in (("", 1), ("2", 2)):
            await pilot.press("t")
            await wait_for(pilot, lambda: isinstance(app.screen, TrainSettingsScreen),
                           what="the settings form")
            field = app.screen.query_one("#threads")
            assert field.value == ""  # auto unless set
            field.value = typed
            app.screen.query_one("#steps").value = "100000"
            await pilot.press("enter")
            await wait_for(pilot, lambda: panel.last_batch is not None and panel.running
                           and len(lab.runs[-1].steps) > 5, what="the first metrics")
            await pilot.press("p")
            panel._show_progress()
            word = "thread" if threads == 1 else "threads"
            assert f"steps/s · {threads} {word} · " in text_of(panel, "#train-stats")
            assert panel.last_batch.threads == threads
            assert lab.runs[-1].config.get("threads") == (threads if typed else None)
            await pilot.press("x")
            await wait_for(pilot, lambda: not panel.running, what="the run to stop")
            lab.train_settings.pop("threads", None)  # the next form starts blank again


def test_a_panel_not_yet_composed_takes_another_lab_without_raising() -> None:
    """A lesson opens its lab right after the first one: the run panel may not be composed
    yet. `set_lab` raised NoMatches there, the app removed the panel mid-mount, and Textual's
    tabs failed with "No Tab with id '--content-tab-tab-training'" (seen in CI under load)."""
    panel = RunPanel(Lab(load_preset("mlp")))
    other = Lab(load_preset("lenet"))
    panel.set_lab(other)
    assert panel.lab is other
