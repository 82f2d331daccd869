"""Training overhead: tuilab's trainer against the loop a user would write by hand.

Both sides get the same thing, so that the ratio measures only what tuilab adds: a model
built from the preset and loaded with the same initial weights, the same task tensors, the
same optimizer and learning rate, the same seed, the same batch order (one seeded
``randperm`` per epoch, consecutive batches, the last partial one dropped) and one
``loss.item()`` per step. Validation is off on both sides (``val_every=0``): it is the same
work whoever runs it, and would only dilute the overhead. Because the two runs are the same
computation, their losses must agree; the largest difference is reported with the ratio as
proof that the comparison is fair.

Each timed run lasts about ``seconds`` (the step count is calibrated on the bare loop), and
includes everything from the call to the last step: building the optimizer, moving the data,
and for the trainer its config check and its metric batches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tuilab.bench.harness import Comparison, alternate

if TYPE_CHECKING:
    from torch import Tensor, nn

    from tuilab.core.spec import ModelSpec
    from tuilab.core.tasks import TaskData
    from tuilab.core.training import TrainConfig

PRESETS = ("mlp", "lenet", "lstm", "transformer")
# The goals: an MLP step takes well under a millisecond, so any Python in the loop shows.
GOALS = {"mlp": 0.97, "lenet": 0.99, "lstm": 0.99, "transformer": 0.99}


@dataclass
class TrainCase:
    """One preset ready to train: its spec, initial weights, task tensors and config."""

    preset: str
    spec: ModelSpec
    initial: dict[str, Tensor]
    data: TaskData
    config: TrainConfig
    device: str

    def fresh_model(self) -> nn.Module:
        """A new module with the case's initial weights (built outside any timed region)."""
        from tuilab.core.build import build

        model = build(self.spec, device=self.device)
        model.load_state_dict(self.initial)
        return model

    def with_steps(self, steps: int) -> TrainCase:
        return replace(self, config=replace(self.config, steps=int(steps)))


def prepare_case(preset: str, *, device: str = "cpu", steps: int = 200,
                 seed: int = 0) -> TrainCase:
    """Build `preset` once, remember its weights, and make its task as the lab would."""
    import torch

    from tuilab.core.build import build
    from tuilab.core.tasks import make_task
    from tuilab.core.training import TrainConfig
    from tuilab.core.workspace import load_preset

    spec = load_preset(preset)
    torch.manual_seed(seed)
    model = build(spec, device=device)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # The same call as Lab.task_data: the trainer's input in the app is exactly this.
    data = make_task(spec.task, input_shape=spec.input_shape[1:], vocab_size=spec.vocab_size,
                     model=model, seed=seed)
    # The trainer runs at the thread count the bare loop gets (this thread's), never at one
    # of its own choosing: these rows measure tuilab's overhead, not the thread rule
    # (bench/loaded.py measures that).
    config = TrainConfig(task=spec.task, optimizer="adam", lr=1e-3, batch_size=64,
                         steps=steps, device=device, dtype="float32", seed=seed, val_every=0,
                         threads=torch.get_num_threads())
    return TrainCase(preset, spec, initial, data, config, device)


# --- the two sides ----------------------------------------------------------------------------
def _sync(device: str) -> None:
    """CUDA runs asynchronously: stop the clock only when the GPU has finished."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_trainer(case: TrainCase, model: nn.Module | None = None) -> tuple[float, list[float]]:
    """tuilab's trainer on a fresh copy: (steps per second, every step's loss)."""
    from tuilab.core.training import train

    model = model if model is not None else case.fresh_model()
    losses: list[float] = []
    _sync(case.device)
    start = time.perf_counter()
    for batch in train(model, case.data, case.config, stop=threading.Event()):
        losses.extend(batch.losses)
        if batch.error:
            raise RuntimeError(f"{case.preset}: the trainer failed: {batch.error}")
    _sync(case.device)
    elapsed = time.perf_counter() - start
    return len(losses) / elapsed, losses


def _bare_loss(kind: str, loss: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss a user writes for this task, in plain torch.nn.functional."""
    import torch.nn.functional as F

    if loss == "cross_entropy":
        if kind == "tokens":
            return lambda out, y: F.cross_entropy(out.flatten(0, 1), y.flatten())
        return F.cross_entropy
    if loss == "mse":
        return lambda out, y: F.mse_loss(out, y.view(out.shape))
    return lambda out, y: F.binary_cross_entropy_with_logits(out, y.view(out.shape).float())


def make_case_task(case: TrainCase, model: nn.Module) -> TaskData:
    """The task exactly as `Lab.train` makes it at the start of a run in the app."""
    from tuilab.core.tasks import make_task

    spec = case.spec
    return make_task(case.config.task, input_shape=spec.input_shape[1:],
                     vocab_size=spec.vocab_size, model=model, seed=case.config.seed)


def run_bare(case: TrainCase, model: nn.Module | None = None, *, make_data: bool = False,
             steady: bool = False) -> tuple[float, list[float]]:
    """The hand-written loop on a fresh copy: (steps per second, every step's loss), at the
    trainer's thread count (run in the app's own thread, which computes on one, it would
    otherwise do a different computation from the trainer's).

    With `make_data` the task is made inside the timed region, as the app's run does it;
    with `steady` the clock starts at the first step (the trainer's own steps/s does too).
    """
    from contextlib import nullcontext

    from tuilab.core.threads import intra_op_threads

    threads = case.config.threads
    with intra_op_threads(threads) if threads is not None else nullcontext():
        return _bare_loop(case, model, make_data=make_data, steady=steady)


def _bare_loop(case: TrainCase, model: nn.Module | None, *, make_data: bool,
               steady: bool) -> tuple[float, list[float]]:
    import torch

    model = model if model is not None else case.fresh_model()
    config, device = case.config, torch.device(case.device)
    losses: list[float] = []
    _sync(case.device)
    start = time.perf_counter()
    data = make_case_task(case, model) if make_data else case.data
    loss_fn = _bare_loss(data.kind, data.loss)
    x, y = data.x_train.to(device), data.y_train.to(device)
    n, batch = x.shape[0], min(config.batch_size, x.shape[0])
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model.train()
    if steady:
        start = time.perf_counter()
    step = 0
    while step < config.steps:
        perm = torch.randperm(n, generator=order).to(device)
        for lo in range(0, n - batch + 1, batch):
            idx = perm[lo:lo + batch]
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = loss_fn(out, yb)
            losses.append(loss.item())
            loss.backward()
            opt.step()
            step += 1
            if step == config.steps:
                break
    _sync(case.device)
    elapsed = time.perf_counter() - start
    return step / elapsed, losses


def loss_gap(a: list[float], b: list[float]) -> float:
    """Largest |difference| between two runs' losses: ~0 when both did the same computation."""
    if len(a) != len(b) or not a:
        return float("inf")
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def calibrate(case: TrainCase, seconds: float, probes: int = 3) -> TrainCase:
    """The case with a step count that makes one bare run last about `seconds`.

    The fastest of a few short probes sets the count: a probe slowed by another process
    would otherwise make every run too short to measure anything but noise.
    """
    probe = case.with_steps(20)
    run_bare(probe)  # first call: allocator, kernels, lazy imports
    rate = max(run_bare(probe)[0] for _ in range(probes))
    return case.with_steps(max(20, int(rate * seconds)))


# --- the comparison ---------------------------------------------------------------------------
def compare_headless(preset: str, *, device: str = "cpu", rounds: int, seconds: float,
                     warmup: int = 1) -> Comparison:
    """Trainer vs bare loop on `preset`, alternating, `rounds` pairs of ~`seconds` runs."""
    case = calibrate(prepare_case(preset, device=device), seconds)
    comparison = Comparison(
        name=f"train {preset} ({device}, headless)", a_label="tuilab train()",
        b_label="bare PyTorch loop", unit="steps/s", higher_is_better=True,
    )
    gaps: list[float] = []
    last: dict[str, list[float]] = {}

    def ours() -> float:
        rate, last["a"] = run_trainer(case)
        return rate

    def bare() -> float:
        rate, last["b"] = run_bare(case)
        if "a" in last:
            gaps.append(loss_gap(last["a"], last["b"]))
        return rate

    alternate(ours, bare, rounds=rounds, warmup=warmup, comparison=comparison)
    comparison.note = (f"{case.config.steps} steps a run, batch {case.config.batch_size}, "
                       f"adam lr {case.config.lr:g}; max |loss difference| "
                       f"{max(gaps) if gaps else float('nan'):.2e}")
    return comparison


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def as_row(comparison: Comparison, preset: str, mode: str, device: str) -> dict[str, Any]:
    """A comparison plus the keys the training table and the goals need."""
    return {**comparison.to_json(), "preset": preset, "mode": mode, "device": device,
            "goal": GOALS[preset]}
