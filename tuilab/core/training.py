"""The trainer: a plain generator that fits a model to a task and yields batches of metrics.

Why a generator and not a class with callbacks: the app runs it in a thread worker and posts
each batch to the UI, the CLI drives a progress bar with it, and the tests iterate it directly —
none of them needs to know the others exist, and nothing here knows Textual. The caller
passes a ``threading.Event``; setting it ends the run after the current step.

Design points, each for a reason:

* **Speed.** A run in the lab should be as fast as the loop the user would write by hand
  (the benchmark holds us to ≥ 0.97 of a bare loop's steps/s on a 20→256→10 MLP). So the data
  goes to the device once, each epoch gathers one shuffled copy, and a batch is a slice (a
  view, no copy) of it; a step is zero_grad, forward, loss, ``loss.item()``, backward,
  optional clip, step — nothing else but two ``Event.is_set()`` calls and a clock read.
  Metrics are batched: a :class:`MetricsBatch` carries every step's loss since the last one
  and is yielded at most every ``flush_every_s`` (0.2 s), so no point is lost and the UI is
  not flooded.
* **Thread-local state.** autocast and grad mode belong to the thread that enters them, so
  they are entered inside the generator's body, around each stretch of steps between two
  yields — never held across a ``yield``, where they would leak into the consumer's code.
  (Entering autocast once per stretch instead of once per step saves a few microseconds a
  step; its weight cache is switched off, since that cache lives until the region exits.)
* **Precision.** ``float32`` / ``float64``: the weights are in that dtype (the caller moves
  the model with ``runtime.change_mode``) and the inputs are cast to match. ``bfloat16`` /
  ``float16`` with float32 weights: mixed precision — ``torch.autocast(device, dtype)``, plus
  ``torch.amp.GradScaler`` for float16. Float16 autocast needs a GPU: on the CPU of torch 2.13
  it works for Linear/Conv but fails inside LSTM ("could not create a primitive descriptor")
  and ran ~1.8x slower than float32 on the MLP, so it is refused with a pointer to bfloat16
  rather than failing half-way into someone's run. ``bfloat16`` / ``float16`` with weights
  already in that dtype (the user cast the model, as seed 002's ``.half()`` does): the weights
  are trained as they are, no autocast. That works for bfloat16 (float32's range); float16
  weights with Adam/AdamW are refused, because Adam's eps=1e-8 rounds to 0 in float16 and the
  second step divides 0 by 0 (measured: NaN at step 2) — SGD is allowed. In every low-precision
  case the loss is computed in float32 against float32 targets.
* **Faults keep the history.** A non-finite loss stops the run before its backward (so the
  weights are the ones that produced it) and names the step and the first module whose output
  was not finite; out-of-memory frees the caches and says so; any other exception in a step
  becomes a one-line message (no traceback), with the module that raised when a forward raised.
  In every case the generator ends with a final batch (``done=True``) and what was yielded
  before stays with the caller.
* **Reproducible.** The batch order comes from a ``torch.Generator`` seeded with
  ``config.seed``: each epoch uses ``torch.randperm(n, generator=g)`` and the batches are
  consecutive slices of that permutation, the last partial batch dropped. The global RNG (used
  by Dropout) is seeded with ``config.seed`` for the run and put back as it was afterwards.
* **State.** The model is trained in place (the caller decides about copies), in train mode,
  and each module's ``training`` flag is restored afterwards. Every call builds a fresh
  optimizer, so momentum / Adam moments start from zero on each run — which is also what makes
  a device or dtype change between runs safe.
"""

from __future__ import annotations

import gc
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from tuilab.core.dtype_probe import check_dtype
from tuilab.core.errors import ModeError, TuilabError
from tuilab.core.outputs import prediction
from tuilab.core.runtime import (
    DTYPES,
    LOSSES,
    dtype_name,
    error_line,
    first_tensor,
    make_loss,
    model_device,
    model_dtype,
    parse_device,
    parse_dtype,
    restore_training,
    training_flags,
)
from tuilab.core.threads import MAX_THREADS, ThreadChoice, resolve_threads

__all__ = [
    "OPTIMIZERS",
    "TASK_DEFAULTS",
    "ConfigError",
    "MetricsBatch",
    "TrainConfig",
    "check_config",
    "evaluate",
    "make_optimizer",
    "task_defaults",
    "train",
]

OPTIMIZERS = ("sgd", "adam", "adamw")

#: Settings per task that make the loss fall well below its start within ``steps`` for every
#: preset that uses the task (measured on 2 CPU cores, seed 0); used by the CLI and the app
#: under whatever the user sets.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "teacher": {"optimizer": "adam", "lr": 1e-2, "steps": 300, "batch_size": 64},
    "spirals": {"optimizer": "adam", "lr": 1e-2, "steps": 500, "batch_size": 64},
    "moons": {"optimizer": "adam", "lr": 1e-2, "steps": 300, "batch_size": 64},
    "circles": {"optimizer": "adam", "lr": 1e-2, "steps": 300, "batch_size": 64},
    "xor": {"optimizer": "adam", "lr": 1e-2, "steps": 300, "batch_size": 64},
    "blobs": {"optimizer": "adam", "lr": 1e-2, "steps": 200, "batch_size": 64},
    "sine": {"optimizer": "adam", "lr": 1e-2, "steps": 300, "batch_size": 64},
    "sine_seq": {"optimizer": "adam", "lr": 3e-3, "steps": 300, "batch_size": 64},
    "tokens": {"optimizer": "adam", "lr": 3e-3, "steps": 300, "batch_size": 64},
    "digits": {"optimizer": "adam", "lr": 1e-2, "steps": 200, "batch_size": 64},
}
_USER_DATA_SUFFIXES = (".csv", ".npz", ".pt")
#: Adam's rate for a BatchNorm model on the teacher task. At 1e-2 Adam grows the weights in
#: front of each BatchNorm faster than its running statistics (momentum 0.1) follow, so the
#: eval-mode validation of a ResNet blows up (measured: val loss 5e2 on a small ResNet at step
#: 10 while the training loss was 0.03; 3.7e8 on resnet18); at 1e-3 validation follows training.
BATCHNORM_TEACHER_LR = 1e-3


def task_defaults(task: str, model: nn.Module | None = None) -> dict[str, Any]:
    """``TASK_DEFAULTS[task]``, with the teacher's rate lowered for a model with BatchNorm."""
    values = dict(TASK_DEFAULTS.get(task, {}))
    if task == "teacher" and model is not None and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        values["lr"] = min(values.get("lr", BATCHNORM_TEACHER_LR), BATCHNORM_TEACHER_LR)
    return values


def _nonfinite_advice(model: nn.Module, step: int, config: TrainConfig) -> str:
    """What to do about a non-finite loss. The learning rate is to blame only once an update
    has happened: weights that already hold NaN or inf (loaded, or reinterpreted from another
    dtype), or that overflow on the very first step, are a problem of the weights."""
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if (tensor.is_floating_point() and not tensor.is_meta
                and not isinstance(tensor, nn.parameter.UninitializedTensorMixin)
                and not bool(torch.isfinite(tensor).all())):
            when = "before the first update" if step == 1 else "now"
            return (f"the weights themselves hold NaN or inf values {when} ({name}): load "
                    f"finite weights or re-initialise the model")
    if step == 1:
        return ("it happened before any update, so the learning rate is not the cause: the "
                "weights are too large for this input (loaded from another model or dtype?); "
                "re-initialise them or load others")
    return f"lower the learning rate (lr={config.lr:g}) or clip gradients"


class ConfigError(TuilabError):
    """A training setting that is out of range; ``where`` names the TrainConfig field."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run. ``loss=None`` means the task's own loss."""

    task: str = "teacher"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 64
    steps: int = 200
    weight_decay: float = 0.0
    momentum: float = 0.9
    grad_clip: float | None = None
    loss: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    val_every: int = 25
    threads: int | None = None
    """torch's intra-op threads for the run; None: chosen from the step's size (threads.py)."""


@dataclass(frozen=True)
class MetricsBatch:
    """What happened since the previous batch; together the batches hold every step once.

    ``steps``/``losses``: each training step's number (1-based) and loss, in order.
    ``val_*``: the validations run since the last batch (``val_accuracy`` only for
    classification and next-token tasks, else empty). ``step`` is the number of finished
    steps; ``error_path`` names the module involved in a fault, when one could be found.
    """

    steps: tuple[int, ...]
    losses: tuple[float, ...]
    val_steps: tuple[int, ...]
    val_losses: tuple[float, ...]
    val_accuracy: tuple[float, ...]
    step: int
    total_steps: int
    steps_per_s: float
    eta_s: float
    done: bool
    stopped: bool
    error: str | None
    error_path: str | None
    output: str = ""
    """Which tensor of a tuple/dict/dataclass output the loss uses (``output.logits``)."""
    threads: int = 0
    """torch's intra-op threads the run uses (0 when unknown)."""
    nonfinite_loss: bool = False
    """The run stopped on a NaN or infinite loss (the caller may put back finite weights)."""


# --------------------------------------------------------------------------------------------
# configuration


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def check_config(config: TrainConfig) -> TrainConfig:
    """Validate every field; return the config with device and dtype in canonical form.

    Raises ConfigError (a ValueError) or ModeError, ``where`` naming the field.
    """
    from tuilab.core.tasks import TASKS

    if not isinstance(config, TrainConfig):
        raise ConfigError(f"expected a TrainConfig, got {type(config).__name__}", where="config")
    task = config.task
    if not isinstance(task, str) or not task or (
        task not in TASKS and not task.lower().endswith(_USER_DATA_SUFFIXES)
    ):
        raise ConfigError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)} "
                          f"(or a .csv/.npz/.pt data file)", where="task")
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {config.optimizer!r}; choose one of: "
                          f"{', '.join(OPTIMIZERS)}", where="optimizer")
    if not _is_number(config.lr) or config.lr <= 0:
        raise ConfigError(f"lr must be a positive number, got {config.lr!r}", where="lr")
    if not _is_int(config.batch_size) or config.batch_size < 1:
        raise ConfigError(f"batch_size must be an int >= 1, got {config.batch_size!r}",
                          where="batch_size")
    if not _is_int(config.steps) or config.steps < 1:
        raise ConfigError(f"steps must be an int >= 1, got {config.steps!r}", where="steps")
    if not _is_number(config.weight_decay) or config.weight_decay < 0:
        raise ConfigError(f"weight_decay must be a number >= 0, got {config.weight_decay!r}",
                          where="weight_decay")
    if not _is_number(config.momentum) or not 0 <= config.momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1), got {config.momentum!r}",
                          where="momentum")
    if config.grad_clip is not None and (not _is_number(config.grad_clip)
                                         or config.grad_clip <= 0):
        raise ConfigError(f"grad_clip must be a positive number or None, got "
                          f"{config.grad_clip!r}", where="grad_clip")
    if config.loss is not None and config.loss not in LOSSES:
        raise ConfigError(f"unknown loss {config.loss!r}; choose one of: {', '.join(LOSSES)} "
                          f"(or None for the task's own)", where="loss")
    if not _is_int(config.seed) or not 0 <= config.seed < 2**63:
        raise ConfigError(f"seed must be an int >= 0, got {config.seed!r}", where="seed")
    if not _is_int(config.val_every) or config.val_every < 0:
        raise ConfigError(f"val_every must be an int >= 0 (0: never), got "
                          f"{config.val_every!r}", where="val_every")
    if config.threads is not None and (not _is_int(config.threads)
                                       or not 1 <= config.threads <= MAX_THREADS):
        raise ConfigError(f"threads must be an int from 1 to {MAX_THREADS} (None: chosen "
                          f"from the model's size), got {config.threads!r}", where="threads")
    device = parse_device(config.device)
    dtype = parse_dtype(config.dtype)
    if dtype is torch.float64 and device.type == "mps":
        raise ModeError("MPS has no float64; use float32 or bfloat16", where="dtype")
    return replace(config, device=str(device), dtype=dtype_name(dtype))


def make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``config.optimizer`` with PyTorch's defaults for everything not set."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ConfigError(f"unknown optimizer {config.optimizer!r}", where="optimizer")


# --------------------------------------------------------------------------------------------
# evaluation


def _accuracy_kind(kind: str, loss: str) -> str | None:
    if kind in ("classification", "tokens") and loss == "cross_entropy":
        return "argmax"
    if kind == "classification" and loss == "bce_with_logits":
        return "sign"
    return None


def _eval_tensors(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[..., Tensor],
                  batch_size: int, accuracy: str | None,
                  amp: Callable[[], AbstractContextManager[Any]]) -> tuple[float, float | None]:
    """Mean loss (and accuracy) over (x, y) in eval mode under no_grad; one sync at the end."""
    flags = training_flags(model)
    model.eval()
    try:
        total_loss = torch.zeros((), dtype=torch.float64, device=x.device)
        correct = torch.zeros((), dtype=torch.float64, device=x.device)
        counted = 0
        n = x.shape[0]
        with torch.no_grad(), amp():
            for lo in range(0, n, batch_size):
                xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
                out = model(xb)
                if not isinstance(out, Tensor):
                    out = _prediction(out)[0]
                if out.is_floating_point() and out.dtype not in (torch.float32, torch.float64):
                    out = out.float()
                total_loss += loss_fn(out, yb).double() * xb.shape[0]
                if accuracy == "argmax":
                    pred = out.argmax(dim=-1)
                    correct += (pred == yb.reshape(pred.shape)).double().sum()
                    counted += pred.numel()
                elif accuracy == "sign":
                    pred = (out > 0).reshape(yb.shape)
                    correct += (pred == yb.bool()).double().sum()
                    counted += yb.numel()
        values = torch.stack([total_loss / n, correct / max(counted, 1)]).tolist()
    finally:
        restore_training(flags)
    return values[0], (values[1] if accuracy is not None else None)


def evaluate(model: nn.Module, data: Any, loss: str | Callable[..., Tensor] | None = None, *,
             batch_size: int = 256, split: str = "val") -> tuple[float, float | None]:
    """Mean loss and accuracy (None for regression) of ``model`` on the task's val/train split.

    Runs on the model's device and dtype, in eval mode under ``no_grad``; each module's
    ``training`` flag is restored afterwards. ``loss`` is a name, a function, or None for the
    task's own loss.
    """
    if split not in ("val", "train"):
        raise ValueError(f"split must be 'val' or 'train', got {split!r}")
    name = data.loss if loss is None else loss
    loss_fn = make_loss(name) if isinstance(name, str) else name
    x, y = (data.x_val, data.y_val) if split == "val" else (data.x_train, data.y_train)
    device, dtype = model_device(model), model_dtype(model)
    target = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    x = x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)
    y = y.to(device=device, dtype=target) if y.is_floating_point() else y.to(device)
    accuracy = _accuracy_kind(data.kind, name) if isinstance(name, str) else None
    return _eval_tensors(model, x, y, loss_fn, batch_size, accuracy, nullcontext)


# --------------------------------------------------------------------------------------------
# locating a fault


def _probe_forward(model: nn.Module, x: Tensor) -> tuple[str | None, str | None]:
    """Re-run a failing batch with hooks: (first module with a non-finite output, module that
    raised). Run only after a fault, so its cost does not matter."""
    paths: dict[int, list[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), []).append(path)
    calls: dict[int, int] = {}
    stack: list[str] = []
    found: dict[str, str] = {}
    handles = []

    def pre(module: nn.Module, args: Any) -> None:
        n = calls.get(id(module), 0)
        calls[id(module)] = n + 1
        names = paths.get(id(module), ["?"])
        stack.append(names[n % len(names)] or "(root)")

    def post(module: nn.Module, args: Any, output: Any) -> None:
        path = stack.pop() if stack else "?"
        if "nonfinite" in found:
            return
        t = first_tensor(output)
        if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            found["nonfinite"] = path

    seen: set[int] = set()
    for module in model.modules():
        if id(module) not in seen:
            seen.add(id(module))
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
    raised = None
    # The probe runs in train mode to reproduce the fault; keep BatchNorm's running statistics
    # (and any other buffer a forward updates) as they were.
    buffers = [(b, b.clone()) for b in model.buffers()]
    try:
        with torch.no_grad():
            model(x)
    except Exception:
        raised = stack[-1] if stack else None
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for b, before in buffers:
                b.copy_(before)
    return found.get("nonfinite"), raised


def _prediction(out: Any) -> tuple[Tensor, str]:
    """The tensor of a tuple/dict/dataclass output the loss is computed on, and its label."""
    tensor, label = prediction(out)
    if tensor is None:
        raise TypeError(f"the model returned {type(out).__name__} with no floating-point tensor "
                        "in it: there is nothing to compute a loss on")
    return tensor, label


def _is_oom(err: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(err, oom):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class _Run:
    """Everything prepared before the first step (in the caller's thread)."""

    model: nn.Module
    config: TrainConfig
    device: torch.device
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    batch_size: int
    params: list[nn.Parameter]
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    accuracy: str | None
    amp_dtype: torch.dtype | None
    upcast: bool
    scaler: Any
    optimizer: torch.optim.Optimizer
    threads: ThreadChoice


def _prepare(model: nn.Module, data: Any, config: TrainConfig) -> _Run:
    device = torch.device(config.device)
    dtype = DTYPES[config.dtype]
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise ModeError("the model is on the meta device (shapes only, no values) and cannot "
                        "be trained; build it on a real device", where="device")
    here = model_device(model)
    if here != device:
        raise ModeError(
            f"the model is on {here} but the run is set to {device}: move it first "
            f"(net.to(\"{device}\"), runtime.change_mode)", where="device",
        )
    weights = model_dtype(model)
    low = dtype in (torch.float16, torch.bfloat16)
    mixed = low and weights == torch.float32
    if mixed and dtype is torch.float16 and device.type == "cpu":
        raise ModeError(
            "float16 mixed precision needs a CUDA GPU: on the CPU, float16 autocast fails "
            "for some layers (LSTM) and is slower than float32; use bfloat16 (autocast) or "
            "float32 on the CPU", where="dtype",
        )
    if not mixed and weights != dtype:
        if low:
            raise ModeError(
                f"a {config.dtype} run trains float32 weights under autocast, or "
                f"{config.dtype} weights as they are; the model's weights are "
                f"{dtype_name(weights)}: cast it (net.to(torch.float32))", where="dtype",
            )
        raise ModeError(
            f"the model's weights are {dtype_name(weights)} but the run is set to "
            f"{config.dtype}: cast it first (net.to(torch.{config.dtype}), runtime.change_mode)",
            where="dtype",
        )
    if weights is torch.float16 and config.optimizer in ("adam", "adamw"):
        raise ModeError(
            f"{config.optimizer} cannot train float16 weights: its eps=1e-8 rounds to 0 in "
            "float16 and the update divides 0 by 0 (NaN from the second step); keep float32 "
            "weights and use float16 mixed precision on a GPU, use bfloat16, or use sgd",
            where="optimizer",
        )
    # Before the first step: a layer without a kernel for this dtype here is a refusal that
    # names it, not a run failing at step 1.
    check_dtype(model, dtype, device, backward=True, autocast=mixed)
    loss_name = config.loss or data.loss
    loss_fn = make_loss(loss_name)
    n = int(data.x_train.shape[0])
    if n < 1 or int(data.x_val.shape[0]) < 1:
        raise ConfigError("the task has no training or no validation samples", where="task")

    def move(t: Tensor, dtype: torch.dtype) -> Tensor:
        if t.is_floating_point():
            return t.to(device=device, dtype=dtype)
        return t.to(device)

    # Inputs in the weights' dtype; targets stay float32 in low precision (the loss is float32).
    target_dtype = torch.float32 if low else weights
    x_train, y_train = move(data.x_train, weights), move(data.y_train, target_dtype)
    x_val, y_val = move(data.x_val, weights), move(data.y_val, target_dtype)

    if any(nn.parameter.is_lazy(p) for p in model.parameters()):
        # Lazy layers learn their shapes from the first batch; the optimizer needs real ones.
        with torch.no_grad():
            model(x_train[:2])
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: the model has no parameters, or every one is "
                          "frozen", where="model")
    scaler = None
    if mixed and dtype is torch.float16:
        scaler = torch.amp.GradScaler(device.type)
    # Built here, not in the timed loop: the first optimizer of a process imports
    # torch._dynamo (~1.5 s), which would otherwise count against steps/s.
    optimizer = make_optimizer(params, config)
    threads = resolve_threads(config.threads, model, x_train, min(config.batch_size, n))
    return _Run(
        model=model, config=config, device=device,
        x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
        batch_size=min(config.batch_size, n), params=params, loss_fn=loss_fn,
        accuracy=_accuracy_kind(data.kind, loss_name),
        amp_dtype=dtype if mixed else None, upcast=low, scaler=scaler, optimizer=optimizer,
        threads=threads,
    )


def train(model: nn.Module, data: Any, config: TrainConfig, *, stop: threading.Event,
          pause: threading.Event | None = None,
          flush_every_s: float = 0.2) -> Iterator[MetricsBatch]:
    """Train ``model`` in place on ``data`` (a ``tasks.TaskData``); yield batches of metrics.

    The config is checked, the data moved to the device and the optimizer built right here
    (ConfigError / ModeError for a run that cannot start, e.g. the model on another device);
    the steps run as the returned iterator is consumed — call this inside the worker thread.
    Setting ``stop`` ends the run after the current step; while ``pause`` is set the run waits
    (after yielding what it has). The last batch has ``done=True``.
    """
    config = check_config(config)
    if not (isinstance(flush_every_s, (int, float)) and flush_every_s >= 0):
        raise ConfigError(f"flush_every_s must be a number >= 0, got {flush_every_s!r}",
                          where="flush_every_s")
    run = _prepare(model, data, config)
    return _steps(run, stop, pause, float(flush_every_s))


EPOCH_COPY_BYTES = 1 << 20
"""Up to this size the training set is copied in shuffled order once an epoch and the batches
are views of the copy (an index per step costs a small model ~4 %); above it each batch is
gathered when it is used, while it is still in cache (a per-epoch copy of the 5.6 MB digits
set cost lenet ~1.5 %). Both give the same batches."""


def _steps(run: _Run, stop: threading.Event, pause: threading.Event | None,
           flush_every_s: float) -> Iterator[MetricsBatch]:
    model, config, device = run.model, run.config, run.device
    total, batch, loss_fn = config.steps, run.batch_size, run.loss_fn
    opt = run.optimizer
    scaler, params, clip = run.scaler, run.params, config.grad_clip
    amp_dtype, upcast = run.amp_dtype, run.upcast
    val_every = config.val_every
    x_all, y_all = run.x_train, run.y_train
    n = x_all.shape[0]
    per_epoch = n // batch
    order = torch.Generator(device="cpu")
    order.manual_seed(config.seed)

    def amp() -> AbstractContextManager[Any]:
        if amp_dtype is None:
            return nullcontext()
        # One autocast region spans many steps, and autocast's cache of low-precision weight
        # copies is only cleared when the region exits: with the cache on, every forward
        # after the first would use the weights from before the optimizer steps.
        return torch.autocast(device.type, dtype=amp_dtype, cache_enabled=False)

    # Pending metrics since the last batch.
    steps: list[int] = []
    losses: list[float] = []
    val_steps: list[int] = []
    val_losses: list[float] = []
    val_accuracy: list[float] = []
    state: dict[str, Any] = {"step": 0, "active": 0.0, "output": ""}

    def make_batch(*, done: bool = False, stopped: bool = False, error: str | None = None,
                   error_path: str | None = None, nonfinite_loss: bool = False) -> MetricsBatch:
        finished = state["step"]
        rate = finished / state["active"] if state["active"] > 0 else 0.0
        eta = (total - finished) / rate if rate > 0 else math.inf
        if done:
            eta = 0.0
        out = MetricsBatch(
            steps=tuple(steps), losses=tuple(losses), val_steps=tuple(val_steps),
            val_losses=tuple(val_losses), val_accuracy=tuple(val_accuracy), step=finished,
            total_steps=total, steps_per_s=rate, eta_s=eta, done=done, stopped=stopped,
            error=error, error_path=error_path, output=state["output"],
            threads=run.threads.threads, nonfinite_loss=nonfinite_loss,
        )
        steps.clear()
        losses.clear()
        val_steps.clear()
        val_losses.clear()
        val_accuracy.clear()
        return out

    def validate(at: int) -> None:
        # Chunks of the training batch size: some models (the seed's FixedHiddenMLP) return
        # one value per batch, so their loss only means something at that size.
        loss, acc = _eval_tensors(model, run.x_val, run.y_val, loss_fn, batch, run.accuracy,
                                  amp)
        val_steps.append(at)
        val_losses.append(loss)
        if acc is not None:
            val_accuracy.append(acc)

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(run.threads.threads)  # this thread only; put back in `finally`
    rng_cpu = torch.get_rng_state()
    rng_cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    flags = training_flags(model)
    torch.manual_seed(config.seed)
    model.train()
    isfinite = math.isfinite
    perf = time.perf_counter
    step = 0
    pos = per_epoch
    perm = torch.empty(0, dtype=torch.long)
    xs = ys = x_all
    copy_epoch = x_all.nbytes + y_all.nbytes <= EPOCH_COPY_BYTES
    stopped = False
    error: str | None = None
    error_path: str | None = None
    nonfinite_loss = False
    try:
        while True:
            start = perf()
            deadline = start + flush_every_s
            paused = False
            phase = "step"
            xb = None
            try:
                with torch.enable_grad(), amp():
                    while step < total:
                        if stop.is_set():
                            stopped = True
                            break
                        if pause is not None and pause.is_set():
                            paused = True
                            break
                        if pos == per_epoch:
                            perm = torch.randperm(n, generator=order).to(device)
                            if copy_epoch:
                                xs, ys = x_all[perm], y_all[perm]
                            pos = 0
                        lo = pos * batch
                        if copy_epoch:
                            xb, yb = xs[lo:lo + batch], ys[lo:lo + batch]
                        else:
                            idx = perm[lo:lo + batch]
                            xb, yb = x_all[idx], y_all[idx]
                        pos += 1
                        step += 1
                        opt.zero_grad(set_to_none=True)
                        out = model(xb)
                        if not isinstance(out, Tensor):
                            out, state["output"] = _prediction(out)
                        if upcast and out.dtype != torch.float32:
                            out = out.float()
                        loss = loss_fn(out, yb)
                        value = loss.item()
                        if not isfinite(value):
                            nonfinite, _ = _probe_forward(model, xb)
                            if nonfinite is None:
                                nonfinite = ("(input)" if xb.is_floating_point()
                                             and not bool(torch.isfinite(xb).all())
                                             else "(loss)")
                            error_path = nonfinite
                            nonfinite_loss = True
                            where = (f"the first module whose output was not finite is "
                                     f"{nonfinite}" if not nonfinite.startswith("(")
                                     else "every module's output was finite; the loss itself "
                                     "overflowed" if nonfinite == "(loss)"
                                     else "the input batch holds non-finite values")
                            error = (f"step {step}: the loss is {value} ({where}); "
                                     + _nonfinite_advice(model, step, config))
                            break
                        if scaler is None:
                            loss.backward()
                            if clip is not None:
                                torch.nn.utils.clip_grad_norm_(params, clip)
                            opt.step()
                        else:
                            scaler.scale(loss).backward()
                            if clip is not None:
                                scaler.unscale_(opt)
                                torch.nn.utils.clip_grad_norm_(params, clip)
                            scaler.step(opt)
                            scaler.update()
                        steps.append(step)
                        losses.append(value)
                        if val_every and (step % val_every == 0 or step == total):
                            phase = "validation"
                            validate(step)
                            phase = "step"
                        if perf() >= deadline:
                            break
            except Exception as err:
                if _is_oom(err):
                    error = (f"step {step}: out of memory on {device} (batch_size {batch}); "
                             f"the model is intact — try a smaller batch_size")
                    out = loss = None
                    opt.zero_grad(set_to_none=True)
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                else:
                    what = "validation after step" if phase == "validation" else "step"
                    error = f"{what} {step}: {type(err).__name__}: {error_line(err)}"
                    if phase == "step" and xb is not None:
                        try:
                            with amp():
                                _, error_path = _probe_forward(model, xb)
                        except Exception:
                            error_path = None
                        if error_path is not None:
                            error += f" (raised in {error_path})"
            state["active"] += perf() - start
            state["step"] = step if error is None or phase == "validation" else step - 1
            if error is not None or stopped or step >= total:
                yield make_batch(done=True, stopped=stopped, error=error,
                                 error_path=error_path, nonfinite_loss=nonfinite_loss)
                return
            if paused:
                yield make_batch()
                while pause is not None and pause.is_set() and not stop.is_set():
                    stop.wait(0.05)
                continue
            yield make_batch()
    finally:
        torch.set_num_threads(saved_threads)
        restore_training(flags)
        torch.set_rng_state(rng_cpu)
        if rng_cuda is not None:
            torch.cuda.set_rng_state(rng_cuda, device)
