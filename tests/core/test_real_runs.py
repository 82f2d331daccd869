"""Runs on models no one here wrote: outputs that are tuples, dicts or dataclasses, token
models, the run's task for backward, the teacher on BatchNorm models, a slow model's pace.

Each of these failed before: training refused a dataclass output (or trained on the wrong
tensor of a dict), a token model defaulted to the teacher task, backward always used the
teacher, the teacher's BatchNorm normalised nothing, and a ResNet's pace read "0 steps/s".
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import pytest
import realish_models as R
import torch
from torch import nn

from tuilab.core.outputs import first_tensor, prediction
from tuilab.core.tasks import make_task
from tuilab.core.training import BATCHNORM_TEACHER_LR, TrainConfig, task_defaults, train
from tuilab.core.units import rate_text
from tuilab.core.usercode import module_lab
from tuilab.core.views import train_defaults


@dataclass
class _ModelOutput(OrderedDict):  # transformers' ModelOutput: a dataclass *and* a dict
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


def test_prediction_prefers_logits_then_the_first_float_tensor() -> None:
    logits = torch.rand(2, 3)
    assert prediction(logits) == (logits, "")
    loss = torch.tensor(1.0)
    out = _ModelOutput(loss=loss, logits=logits)
    out["loss"], out["logits"] = loss, logits  # as ModelOutput.__post_init__ does
    tensor, label = prediction(out)
    assert tensor is logits and label == "output.logits"
    assert first_tensor(out) is loss  # the hook's view: the first one
    tensor, label = prediction(R.LMOutput(logits=logits))
    assert tensor is logits and label == "output.logits"
    features, scores = torch.rand(2, 4), torch.rand(2, 2)
    assert prediction({"features": features, "logits": scores}) == (scores, "output['logits']")
    assert prediction({"a": features, "b": scores}) == (features, "output['a']")
    ids = torch.tensor([1, 0])
    assert prediction((ids, scores)) == (scores, "output[1]")
    assert prediction((ids,)) == (None, "")
    assert prediction([[None, (features,)]])[1] == "output[0][1][0]"


@pytest.mark.parametrize(("name", "task", "label"), [
    ("TinyLM", "tokens", "output.logits"),
    ("DictNet", "teacher", "output['logits']"),
    ("TupleNet", "teacher", "output[1]"),
])
def test_training_and_backward_accept_structured_outputs(name: str, task: str,
                                                         label: str) -> None:
    lab = module_lab(getattr(R, name)(), name)
    assert lab.default_task == task
    settings = {**train_defaults(lab), "steps": 6, "val_every": 3, "batch_size": 8}
    assert settings["task"] == task
    run = lab.start_run(settings)
    batches = list(lab.train(run, threading.Event()))
    assert run.status == "finished", run.error
    assert len(run.losses) == 6 and len(run.val_losses) == 2
    assert run.output == label and batches[-1].output == label
    assert run.to_data()["output"] == label
    report, _ = lab.backward()
    assert report.output == label and report.grad_norms


def test_token_training_equals_a_hand_loop_on_the_logits() -> None:
    torch.manual_seed(0)
    model = R.TinyLM()
    twin = R.TinyLM()
    twin.load_state_dict(model.state_dict())
    data = make_task("tokens", input_shape=(8,), vocab_size=50, samples=64)
    config = TrainConfig(task="tokens", steps=3, batch_size=16, val_every=0, optimizer="sgd",
                         lr=0.1, momentum=0.0)
    losses = [v for b in train(model, data, config, stop=threading.Event()) for v in b.losses]
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    order = torch.Generator().manual_seed(0)
    perm = torch.randperm(data.train_size, generator=order)
    twin.train()
    torch.manual_seed(0)
    hand = []
    for step in range(3):
        idx = perm[step * 16:(step + 1) * 16]
        opt.zero_grad()
        logits = twin(data.x_train[idx]).logits
        loss = nn.functional.cross_entropy(logits.reshape(-1, 50), data.y_train[idx].reshape(-1))
        loss.backward()
        opt.step()
        hand.append(loss.item())
    assert losses == pytest.approx(hand, rel=1e-5)


def test_backward_uses_the_runs_task() -> None:
    lab = module_lab(nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2)), "mlp")
    teacher_report, _ = lab.backward()
    lab.train_settings = {"task": "moons"}
    moons_report, _ = lab.backward()
    data = lab.task_data("moons", samples=8)
    with torch.no_grad():
        out = lab.model(data.x_train[:1])
    expected = nn.functional.cross_entropy(out, data.y_train[:1]).item()
    assert moons_report.loss == pytest.approx(expected, rel=1e-5)
    assert moons_report.loss != pytest.approx(teacher_report.loss)


def test_teacher_batchnorm_normalises_the_tasks_inputs() -> None:
    """The teacher's BatchNorm statistics come from its inputs: each target feature has mean
    ~0 and variance ~1 (before: mean 0 / variance 1 defaults, so BatchNorm did nothing and
    the targets kept the Linear's variance of ~1/3)."""
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5))
    task = make_task("teacher", model=model, samples=1000)
    y = torch.cat([task.y_train, task.y_val])
    assert y.mean(0).abs().max() < 0.05
    assert (y.var(0, unbiased=False) - 1).abs().max() < 0.05
    assert "BatchNorm statistics measured" in task.description
    assert model.training and model[1].momentum == 0.1  # the student is untouched
    assert int(model[1].num_batches_tracked) == 0


def test_teacher_on_a_resnet_validates_like_it_trains() -> None:
    """On a ResNet the teacher's validation loss stays of the training loss's order (it was
    3.7e8 on resnet18: Adam at 1e-2 outran BatchNorm's running statistics)."""
    torch.manual_seed(0)
    lab = module_lab(R.ResNetish(), "resnet", "2, 3, 16, 16")
    settings = {**train_defaults(lab), "steps": 10, "val_every": 5, "batch_size": 16}
    assert settings["lr"] == BATCHNORM_TEACHER_LR
    run = lab.start_run(settings)
    list(lab.train(run, threading.Event()))
    assert run.status == "finished", run.error
    assert max(run.val_losses) < 10 * max(run.losses)


def test_teacher_lr_is_lowered_only_for_batchnorm_models() -> None:
    assert task_defaults("teacher", nn.Linear(2, 2))["lr"] == 1e-2
    assert task_defaults("teacher", R.ResNetish())["lr"] == BATCHNORM_TEACHER_LR
    assert task_defaults("moons", R.ResNetish())["lr"] == 1e-2
    assert task_defaults("teacher") == task_defaults("teacher", None)


@pytest.mark.parametrize(("rate", "text"), [
    (0.0, "measuring…"), (0.4, "2.5 s/step"), (2.46, "2.5 steps/s"), (743.2, "743 steps/s"),
    (12_345.0, "12,345 steps/s"),
])
def test_a_slow_pace_is_shown_not_rounded_to_zero(rate: float, text: str) -> None:
    assert rate_text(rate) == text


class _TokenClassifier(nn.Module):
    """Token ids in, one row of class scores per sequence out (BERT for classification)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.embed(ids).mean(1))}


def test_a_token_classifier_defaults_to_the_teacher_not_next_token() -> None:
    lab = module_lab(_TokenClassifier(), "classifier")
    assert lab.takes_tokens and lab.default_task == "teacher"
    report, _ = lab.backward()
    assert report.output == "output['logits']"


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_transformers_models_from_a_config_open_train_and_backward(kind: str) -> None:
    """Small configs, built offline (`realish_models.gpt2` …): nothing comes from a hub."""
    pytest.importorskip("transformers")  # in the test extra; skipped only where absent
    model = getattr(R, kind)()
    lab = module_lab(model, kind)
    assert lab.input_guess is not None and lab.input_guess.ok and lab.summary().ok
    assert lab.default_task == ("teacher" if kind == "bert" else "tokens")
    run = lab.start_run({**train_defaults(lab), "steps": 2, "val_every": 2, "batch_size": 4})
    list(lab.train(run, threading.Event()))
    assert run.status == "finished", run.error
    assert run.output == "output.logits"
    assert lab.backward()[0].output == "output.logits"
