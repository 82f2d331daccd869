"""A run on several processes from the run panel: the form's `processes` field starts the
exported script under torchrun, and the panel shows it like any run (progress, plot, table).

Proof that it is the same training: the losses and the trained weights match a local run of
the same settings from the same weights (1e-4 relative), and the lab's model holds them after
the run, as after a local one.
"""

from __future__ import annotations

import threading

import pytest
import torch
from test_runs import SIZE, ready, wait_for

from tuilab.app.app import make_app
from tuilab.app.screens.train_settings import TrainSettingsScreen
from tuilab.app.widgets.loss_plot import LossPlot
from tuilab.core.lab import Lab
from tuilab.core.workspace import load_preset

STEPS = 30
SETTINGS = {"batch_size": 8, "val_every": 10}


def local_run(start: dict[str, torch.Tensor], settings: dict[str, object]
              ) -> tuple[list[float], dict[str, torch.Tensor]]:
    lab = Lab(load_preset("mlp"))
    lab.model.load_state_dict(start)
    run = lab.start_run({k: v for k, v in settings.items() if k != "processes"})
    for _ in lab.train(run, threading.Event()):
        pass
    return run.losses, lab.model.state_dict()


async def test_the_run_panel_starts_a_torchrun_run_and_plots_the_local_curve() -> None:
    lab = Lab(load_preset("mlp"))
    lab.train_settings = dict(SETTINGS)
    app = make_app(lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        panel = await ready(pilot)
        start = {k: v.clone() for k, v in lab.model.state_dict().items()}
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, TrainSettingsScreen),
                       what="the settings form")
        await pilot.pause()
        await pilot.press(*str(STEPS), *["tab"] * 9, "2", "enter")
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, TrainSettingsScreen),
                       what="the form to close")
        run = lab.runs[-1]
        assert run.config["processes"] == 2 and panel.running
        await wait_for(pilot, lambda: not panel.running, timeout=240, what="the run to end")
        assert run.status == "finished", run.error
        assert run.steps == list(range(1, STEPS + 1))
        assert run.val_steps == [10, 20, 30]
        assert run in panel.query_one(LossPlot)._runs
    expected, weights = local_run(start, run.config)
    for got, want in zip(run.losses, expected, strict=True):
        assert got == pytest.approx(want, rel=1e-4)
    for key, value in lab.model.state_dict().items():
        torch.testing.assert_close(value, weights[key], rtol=1e-4, atol=1e-6)


def test_processes_are_refused_for_a_users_own_module() -> None:
    from torch import nn

    from tuilab.core.training import ConfigError

    lab = Lab(module=nn.Linear(2, 2), input_shape=(4, 2), name="mine")
    with pytest.raises(ConfigError, match="needs a model built in the lab"):
        lab.start_run({"task": "teacher", "processes": 2})
    with pytest.raises(ValueError, match="processes must be an int from 1 to 64"):
        Lab(load_preset("mlp")).start_run({"task": "teacher", "processes": 0})
