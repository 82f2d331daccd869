"""After a run that diverges (NaN or inf loss) the model gets its last finite weights back,
so the next run can start (before: every later run failed at step 1 on the NaN weights)."""

from __future__ import annotations

import threading

import pytest
import torch

from tuilab.core import finite_weights
from tuilab.core.finite_weights import FiniteWeights, all_finite
from tuilab.core.lab import Lab
from tuilab.core.training import MetricsBatch
from tuilab.core.workspace import load_workspace_arg


def _run(lab: Lab, **settings: object):
    run = lab.start_run({"val_every": 0, **settings})
    for _ in lab.train(run, threading.Event()):
        pass
    return run


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_diverging_run_leaves_finite_weights_and_the_next_run_trains() -> None:
    lab = Lab.from_workspace(load_workspace_arg("mlp"))
    before = _weights(lab.model)
    diverged = _run(lab, optimizer="sgd", lr=1e6, steps=200)
    assert diverged.status == "failed" and "the loss is" in diverged.error
    assert "back to the last finite ones (before this run)" in diverged.error
    assert all_finite(lab.model)
    # the run diverged within its first batch: the only proven weights are those it started from
    for name, tensor in lab.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    after = _run(lab, optimizer="adam", lr=1e-3, steps=20)
    assert after.status == "finished" and len(after.steps) == 20


def _batch(step: int, *, error: str | None = None, nonfinite: bool = False,
           done: bool = False) -> MetricsBatch:
    return MetricsBatch(steps=(), losses=(), val_steps=(), val_losses=(), val_accuracy=(),
                        step=step, total_steps=100, steps_per_s=0.0, eta_s=0.0,
                        done=done or error is not None, stopped=False, error=error,
                        error_path=None, nonfinite_loss=nonfinite)


def test_the_newest_copy_whose_next_step_was_finite_goes_back() -> None:
    """The copy taken just before the diverging step holds the weights that diverged: the
    one before it is restored; a copy followed by finite steps is itself restored."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    guard = FiniteWeights(model)
    guard.keep(0)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    at_5 = _weights(model)
    assert guard.after(_batch(5)) == _batch(5)  # a good batch: kept, unchanged
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
        model[1].running_mean.fill_(float("inf"))
    # step 6 diverged (5 steps finished): the copy after step 5 was never proven
    failed = guard.after(_batch(5, error="step 6: the loss is nan", nonfinite=True))
    assert failed.error == "step 6: the loss is nan; the weights are back to the last finite " \
                           "ones (before this run)"
    assert all_finite(model) and not torch.equal(model[0].weight, at_5["0.weight"])
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    # step 9 diverged (8 finished): steps 6..8 ran finite from the copy after step 5
    failed = guard.after(_batch(8, error="step 9: the loss is inf", nonfinite=True))
    assert failed.error is not None and failed.error.endswith("(after step 5)")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, at_5[name]), name


def test_non_finite_weights_that_cannot_be_restored_are_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(finite_weights, "MAX_COPY_BYTES", 0)
    model = torch.nn.Linear(3, 2)
    guard = FiniteWeights(model)
    guard.keep(0)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    failed = guard.after(_batch(3, error="step 4: the loss is nan", nonfinite=True))
    assert failed.error is not None and "re-initialise them (I)" in failed.error
    assert "too large" in failed.error


def test_other_faults_and_good_weights_are_left_alone() -> None:
    model = torch.nn.Linear(3, 2)
    guard = FiniteWeights(model)
    guard.keep(0)
    with torch.no_grad():
        model.weight.fill_(2.0)
    batch = _batch(4, error="step 5: RuntimeError: boom")
    assert guard.after(batch) is batch
    assert bool((model.weight == 2.0).all())
