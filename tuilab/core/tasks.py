"""Training tasks: seeded, deterministic tensors with a train/validation split.

Why a module of its own: the trainer, the CLI and the UI all need the same data for the same
settings, and a run must be repeatable. So every task is a pure function of its arguments:
it draws from its own ``torch.Generator`` seeded by ``seed`` (never from the global RNG, which
it leaves as it found it), returns fresh tensors that share memory with nothing, and keeps
float data float32 and labels / token ids int64 on the CPU (the trainer moves them).

Tasks
-----
- ``spirals``, ``moons``, ``circles``, ``xor``, ``blobs``: 2-D points (N, 2), int64 labels.
- ``sine``: y = sin(x) + noise on x in [-pi, pi]; x (N, 1), y (N, 1).
- ``sine_seq``: windows of a noisy sine; predict the next value (for RNN/LSTM/GRU/TCN).
- ``tokens``: next-token prediction on a small learnable grammar.
- ``digits``: the real 8x8 handwritten digits shipped in ``assets/digits.npz`` (1,797 images).
- ``teacher``: fits any model: targets are the outputs of a re-initialised copy of it.

``load_user_data`` reads the user's own ``.csv``, ``.npz`` or ``.pt`` (the last only with
``weights_only=True``: a data file must never be able to run code).

Arguments a task does not use (``vocab_size`` for ``moons``, ``model`` for ``sine``...) are
ignored, so a form can send the same fields for every task; ``input_shape`` and, for the
classification tasks, ``num_classes`` are checked because a wrong one means a wrong model.
"""

from __future__ import annotations

import copy
import csv
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tuilab.core.outputs import prediction
from tuilab.core.paths import assets_dir

__all__ = [
    "DEFAULT_TASK_BYTES",
    "MAX_TASK_BYTES",
    "TASKS",
    "TaskData",
    "TaskInfo",
    "is_data_file",
    "list_tasks",
    "load_user_data",
    "make_task",
]

#: Default sample count for the synthetic tasks.
DEFAULT_SAMPLES = 1024
#: A task's tensors (train + validation, inputs + targets) may not exceed this: a typo in
#: ``samples`` or a 224x224 input must not exhaust the memory of the machine running the UI.
MAX_TASK_BYTES = 200 * 2**20
#: When ``samples`` is left to the task, big inputs get fewer samples so that building the task
#: (and, for ``teacher``, running the model over it) stays quick.
DEFAULT_TASK_BYTES = 64 * 2**20
#: Integer-valued CSV targets with at least this many classes are treated as regression values.
MAX_CSV_CLASSES = 1000
#: User files larger than this are refused before they are read.
MAX_USER_FILE_BYTES = 512 * 2**20


@dataclass(frozen=True, eq=False)
class TaskData:
    """A task's tensors and what the trainer needs to know to fit a model to them.

    ``eq=False``: comparing tensors with ``==`` gives a tensor, not a bool, so two tasks
    compare by identity; compare the tensors themselves with ``torch.equal``.
    """

    name: str
    kind: str  # "classification" | "regression" | "tokens"
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    loss: str  # "cross_entropy" | "mse" | "bce_with_logits"
    num_classes: int | None
    input_shape: tuple[int, ...]  # one sample's shape, without the batch dimension
    description: str

    @property
    def train_size(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def val_size(self) -> int:
        return int(self.x_val.shape[0])

    def __repr__(self) -> str:  # the default repr would print every tensor element
        return (
            f"TaskData(name={self.name!r}, kind={self.kind!r}, loss={self.loss!r}, "
            f"num_classes={self.num_classes}, input_shape={self.input_shape}, "
            f"x_train={_shape_dtype(self.x_train)}, y_train={_shape_dtype(self.y_train)}, "
            f"x_val={_shape_dtype(self.x_val)}, y_val={_shape_dtype(self.y_val)})"
        )


@dataclass(frozen=True)
class TaskInfo:
    """One line of the task list shown by the UI and the CLI."""

    name: str
    kind: str
    description: str


TASKS: dict[str, TaskInfo] = {
    info.name: info
    for info in (
        TaskInfo("spirals", "classification",
                 "Interleaved 2-D spirals (2 arms by default, num_classes sets the arms)."),
        TaskInfo("moons", "classification", "Two interleaving 2-D half circles."),
        TaskInfo("circles", "classification", "A 2-D ring around a smaller ring."),
        TaskInfo("xor", "classification",
                 "2-D points labelled by whether their coordinates' signs differ."),
        TaskInfo("blobs", "classification",
                 "Gaussian 2-D blobs around a circle (3 classes by default)."),
        TaskInfo("sine", "regression", "y = sin(x) + noise for x in [-pi, pi]; x (N,1)."),
        TaskInfo("sine_seq", "regression",
                 "Windows of a noisy sine (L=20 by default); predict the next value. "
                 "For RNN/LSTM/GRU (L,1) or TCN/Conv1d (1,L)."),
        TaskInfo("tokens", "tokens",
                 "Next-token prediction on noisy arithmetic progressions mod vocab_size "
                 "(16 by default), sequences of 16; y is x shifted by one."),
        TaskInfo("digits", "classification",
                 "UCI handwritten digits, 1,797 real 8x8 images, 10 classes; resized for "
                 "(1,32,32) LeNet, (1,224,224) AlexNet, flattened for (64,) or (784,)."),
        TaskInfo("teacher", "regression",
                 "Fits any model: targets are the outputs of a re-initialised copy of it "
                 "(needs the model)."),
    )
}


def list_tasks() -> list[TaskInfo]:
    """The built-in tasks in a stable order, for menus and ``tuilab --list-tasks``."""
    return list(TASKS.values())


# ----------------------------------------------------------------------------------------
# make_task


def make_task(
    name: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    samples: int | None = None,
    noise: float = 0.1,
    val_fraction: float = 0.2,
    seed: int = 0,
    vocab_size: int | None = None,
    num_classes: int | None = None,
    model: nn.Module | None = None,
    base: Path | None = None,
) -> TaskData:
    """Build the task ``name``: the same arguments always give the same tensors.

    A name ending in ``.csv``, ``.npz`` or ``.pt`` is the user's own data file (a workspace's
    ``task = "data.csv"``): it goes to :func:`load_user_data`, a relative path taken from
    ``base`` (the workspace's folder) when given.

    ``samples`` is the total before the split; ``None`` lets the task choose (1,024 for the
    synthetic tasks, all 1,797 images for ``digits``, fewer where a sample is big so the
    tensors stay under ``DEFAULT_TASK_BYTES``). An explicit count whose tensors would exceed
    ``MAX_TASK_BYTES`` is refused. ``val_fraction`` of the samples (rounded) go to validation;
    both parts hold at least one sample.
    """
    if is_data_file(name):
        path = Path(name).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        return load_user_data(path, val_fraction=val_fraction, seed=seed)
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)} (or a "
                         f".csv/.npz/.pt data file)")
    opts = _Options(
        name=name,
        input_shape=_check_shape(input_shape, name),
        samples=_check_samples(samples, name),
        noise=_check_noise(noise, name),
        val_fraction=_check_val_fraction(val_fraction, name),
        seed=_check_seed(seed, name),
        vocab_size=vocab_size,
        num_classes=num_classes,
        model=model,
    )
    return _BUILDERS[name](opts)


USER_DATA_SUFFIXES = (".csv", ".npz", ".pt")


def is_data_file(task: object) -> bool:
    """True for a task that names the user's own data file rather than a built-in task."""
    return isinstance(task, str) and task.lower().endswith(USER_DATA_SUFFIXES)


@dataclass(frozen=True)
class _Options:
    name: str
    input_shape: tuple[int, ...] | None
    samples: int | None
    noise: float
    val_fraction: float
    seed: int
    vocab_size: int | None
    num_classes: int | None
    model: nn.Module | None


def _check_shape(shape: object, task: str) -> tuple[int, ...] | None:
    if shape is None:
        return None
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or not shape or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(
            f"task {task!r}: input_shape must be a non-empty tuple of positive ints "
            f"(one sample, no batch dimension), got {shape!r}"
        )
    return tuple(shape)


def _check_samples(samples: object, task: str) -> int | None:
    if samples is None:
        return None
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 2:
        raise ValueError(
            f"task {task!r}: samples must be an int >= 2 (one for training, one for "
            f"validation at least), got {samples!r}"
        )
    return samples


def _check_noise(noise: object, task: str) -> float:
    if (
        not isinstance(noise, (int, float))
        or isinstance(noise, bool)
        or not math.isfinite(noise)
        or noise < 0
    ):
        raise ValueError(f"task {task!r}: noise must be a finite number >= 0, got {noise!r}")
    return float(noise)


def _check_val_fraction(val_fraction: object, task: str) -> float:
    if (
        not isinstance(val_fraction, (int, float))
        or isinstance(val_fraction, bool)
        or not 0 < val_fraction < 1
    ):
        raise ValueError(
            f"task {task!r}: val_fraction must be between 0 and 1 (exclusive), "
            f"got {val_fraction!r}"
        )
    return float(val_fraction)


def _check_seed(seed: object, task: str) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63 - 2:
        raise ValueError(f"task {task!r}: seed must be an int in [0, 2**63 - 2), got {seed!r}")
    return seed


def _check_classes(value: object, task: str, *, default: int, allowed: range) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value not in allowed:
        if len(allowed) == 1:
            what = f"{allowed.start} (or None)"
        else:
            what = f"an int from {allowed.start} to {allowed.stop - 1}"
        raise ValueError(f"task {task!r}: num_classes must be {what}, got {value!r}")
    return value


def _generator(seed: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


def _sample_count(opts: _Options, bytes_per_sample: int, default: int) -> tuple[int, str]:
    """Resolve ``samples``: the explicit count (refused if too big) or a default that fits.

    Returns the count and a note for the description when the default was reduced.
    """
    fit_max = max(2, MAX_TASK_BYTES // max(1, bytes_per_sample))
    if opts.samples is not None:
        if opts.samples > fit_max:
            raise ValueError(
                f"task {opts.name!r}: {opts.samples} samples of {bytes_per_sample:,} bytes "
                f"each would take {opts.samples * bytes_per_sample / 2**20:.0f} MB; at most "
                f"{fit_max} fit in {MAX_TASK_BYTES // 2**20} MB"
            )
        return opts.samples, ""
    fit_default = max(2, DEFAULT_TASK_BYTES // max(1, bytes_per_sample))
    if fit_default < default:
        return fit_default, (
            f" Samples limited to {fit_default} to keep the tensors under "
            f"{DEFAULT_TASK_BYTES // 2**20} MB (pass samples= for more, up to {fit_max})."
        )
    return default, ""


def _split(
    n: int,
    val_fraction: float,
    gen: torch.Generator,
    labels: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Random (train, validation) index tensors; class-stratified when labels are given.

    Validation gets ``round(n * val_fraction)`` samples, clamped so both parts are non-empty.
    """
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    order = torch.randperm(n, generator=gen)
    if labels is not None:
        order = _stratified_order(labels, order)
    val, train = order[:n_val], order[n_val:]
    # The stratified order cycles through the classes; shuffle so batches do not.
    train = train[torch.randperm(train.numel(), generator=gen)]
    val = val[torch.randperm(val.numel(), generator=gen)]
    return train, val


def _stratified_order(labels: Tensor, order: Tensor) -> Tensor:
    """Reorder ``order`` so that each of its prefixes holds every class in proportion.

    Each sample gets the key (rank within its class + 0.5) / class size; sorting by that key
    (stable, so the random order breaks ties) interleaves the classes evenly.
    """
    lab = labels[order]
    keys = torch.empty(order.numel(), dtype=torch.float64)
    for cls in torch.unique(lab):
        mask = lab == cls
        count = int(mask.sum())
        keys[mask] = (torch.arange(count, dtype=torch.float64) + 0.5) / count
    return order[torch.argsort(keys, stable=True)]


def _finish(
    opts: _Options,
    x: Tensor,
    y: Tensor,
    *,
    kind: str,
    loss: str,
    num_classes: int | None,
    description: str,
    stratify: bool = False,
    gen: torch.Generator,
) -> TaskData:
    train, val = _split(x.shape[0], opts.val_fraction, gen, y if stratify else None)
    return _split_task(opts.name, kind, x, y, train, val, loss=loss, num_classes=num_classes,
                       description=description)


def _split_task(name: str, kind: str, x: Tensor, y: Tensor, train: Tensor, val: Tensor, *,
                loss: str, num_classes: int | None, description: str) -> TaskData:
    """The task with its samples cut into the train and validation index sets."""
    return TaskData(
        name=name,
        kind=kind,
        x_train=x[train].contiguous(),
        y_train=y[train].contiguous(),
        x_val=x[val].contiguous(),
        y_val=y[val].contiguous(),
        loss=loss,
        num_classes=num_classes,
        input_shape=tuple(x.shape[1:]),
        description=description,
    )


# ----------------------------------------------------------------------------------------
# 2-D classification


def _require_shape(opts: _Options, allowed: tuple[int, ...]) -> None:
    if opts.input_shape is not None and opts.input_shape != allowed:
        raise ValueError(
            f"task {opts.name!r} has inputs of shape {allowed}; input_shape "
            f"{opts.input_shape} is not possible (use {allowed} or None)"
        )


def _points_2d(
    opts: _Options,
    num_classes: int,
    draw: Callable[[Tensor, torch.Generator], Tensor],
    description: str,
) -> TaskData:
    """Shared frame of the 2-D tasks: balanced labels, a base shape, then noise jitter."""
    _require_shape(opts, (2,))
    n, note = _sample_count(opts, 2 * 4 + 8, DEFAULT_SAMPLES)
    gen = _generator(opts.seed)
    labels = torch.arange(n, dtype=torch.int64) % num_classes
    x = draw(labels, gen)
    x = (x + opts.noise * torch.randn(x.shape, generator=gen)).to(torch.float32)
    return _finish(
        opts, x, labels, kind="classification", loss="cross_entropy",
        num_classes=num_classes, stratify=True, gen=gen,
        description=f"{description} {n} samples, noise {opts.noise:g}.{note}",
    )


def _spirals(opts: _Options) -> TaskData:
    arms = _check_classes(opts.num_classes, opts.name, default=2, allowed=range(2, 101))

    def draw(labels: Tensor, gen: torch.Generator) -> Tensor:
        # sqrt spreads the points evenly along the arm instead of piling them at the centre.
        t = torch.rand(labels.shape, generator=gen, dtype=torch.float64).sqrt()
        radius = 0.1 + 0.9 * t
        angle = t * 3 * math.pi + labels.to(torch.float64) * (2 * math.pi / arms)
        return torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)), dim=1)

    return _points_2d(opts, arms, draw, f"{arms} interleaved spiral arms, 1.5 turns each;")


def _moons(opts: _Options) -> TaskData:
    _check_classes(opts.num_classes, opts.name, default=2, allowed=range(2, 3))

    def draw(labels: Tensor, gen: torch.Generator) -> Tensor:
        t = torch.rand(labels.shape, generator=gen, dtype=torch.float64) * math.pi
        upper = torch.stack((torch.cos(t), torch.sin(t)), dim=1)
        lower = torch.stack((1 - torch.cos(t), 0.5 - torch.sin(t)), dim=1)
        points = torch.where((labels == 0)[:, None], upper, lower)
        return points - torch.tensor([0.5, 0.25], dtype=torch.float64)  # centre at 0

    return _points_2d(opts, 2, draw, "Two interleaving half circles;")


def _circles(opts: _Options) -> TaskData:
    _check_classes(opts.num_classes, opts.name, default=2, allowed=range(2, 3))

    def draw(labels: Tensor, gen: torch.Generator) -> Tensor:
        angle = torch.rand(labels.shape, generator=gen, dtype=torch.float64) * 2 * math.pi
        radius = torch.where(labels == 0, 1.0, 0.5).to(torch.float64)
        return torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)), dim=1)

    return _points_2d(opts, 2, draw, "Ring r=1 (class 0) around ring r=0.5 (class 1);")


def _xor(opts: _Options) -> TaskData:
    _check_classes(opts.num_classes, opts.name, default=2, allowed=range(2, 3))
    _require_shape(opts, (2,))
    n, note = _sample_count(opts, 2 * 4 + 8, DEFAULT_SAMPLES)
    gen = _generator(opts.seed)
    clean = torch.rand((n, 2), generator=gen) * 2 - 1
    # Labels come from the clean point; the jitter may push a point across an axis.
    labels = ((clean[:, 0] > 0) != (clean[:, 1] > 0)).to(torch.int64)
    x = (clean + opts.noise * torch.randn((n, 2), generator=gen)).to(torch.float32)
    return _finish(
        opts, x, labels, kind="classification", loss="cross_entropy", num_classes=2,
        stratify=True, gen=gen,
        description=(
            f"XOR: uniform points in [-1,1]^2, class 1 where the signs of x and y differ; "
            f"{n} samples, noise {opts.noise:g}.{note}"
        ),
    )


def _blobs(opts: _Options) -> TaskData:
    k = _check_classes(opts.num_classes, opts.name, default=3, allowed=range(2, 101))

    def draw(labels: Tensor, gen: torch.Generator) -> Tensor:
        angle = labels.to(torch.float64) * (2 * math.pi / k)
        centres = 2.0 * torch.stack((torch.cos(angle), torch.sin(angle)), dim=1)
        # A blob has its own spread (0.3); the task's noise jitter is added on top.
        return centres + 0.3 * torch.randn(centres.shape, generator=gen, dtype=torch.float64)

    return _points_2d(opts, k, draw, f"{k} Gaussian blobs (std 0.3) on a circle of radius 2;")


# ----------------------------------------------------------------------------------------
# regression and sequences


def _sine(opts: _Options) -> TaskData:
    _require_shape(opts, (1,))
    n, note = _sample_count(opts, 8, DEFAULT_SAMPLES)
    gen = _generator(opts.seed)
    x = (torch.rand((n, 1), generator=gen) * 2 - 1) * math.pi
    y = torch.sin(x) + opts.noise * torch.randn((n, 1), generator=gen)
    return _finish(
        opts, x, y, kind="regression", loss="mse", num_classes=None, gen=gen,
        description=f"y = sin(x) + noise for x in [-pi, pi]; {n} samples, noise "
        f"{opts.noise:g}.{note}",
    )


#: Time step between two values of the sine series; 20 steps cover ~0.8 of a period.
_SINE_STEP = 0.25


def _sine_seq(opts: _Options) -> TaskData:
    shape = opts.input_shape or (20, 1)
    if len(shape) == 2 and shape[1] == 1:
        length, layout = shape[0], "(L, 1): batch-first for RNN/LSTM/GRU"
    elif len(shape) == 2 and shape[0] == 1:
        length, layout = shape[1], "(1, L): channels-first for Conv1d/TCN"
    elif len(shape) == 1:
        length, layout = shape[0], "(L,): flat for an MLP"
    else:
        raise ValueError(
            f"task 'sine_seq': input_shape {shape} is not possible; use (L, 1) for "
            f"RNN/LSTM/GRU, (1, L) for Conv1d/TCN or (L,) for an MLP"
        )
    n, note = _sample_count(opts, (length + 1) * 4, DEFAULT_SAMPLES)
    gen = _generator(opts.seed)
    start = torch.rand((n, 1), generator=gen, dtype=torch.float64) * 2 * math.pi
    t = start + _SINE_STEP * torch.arange(length + 1, dtype=torch.float64)
    series = torch.sin(t) + opts.noise * torch.randn(t.shape, generator=gen, dtype=torch.float64)
    series = series.to(torch.float32)
    x = series[:, :length].reshape(n, *shape)
    y = series[:, length:].clone()  # the next value of the same noisy series, (N, 1)
    return _finish(
        opts, x, y, kind="regression", loss="mse", num_classes=None, gen=gen,
        description=(
            f"Windows of {length} values of sin(t) + noise (step {_SINE_STEP} rad, random "
            f"phase), layout {layout}; target: the next value. {n} samples, noise "
            f"{opts.noise:g}.{note}"
        ),
    )


def _tokens(opts: _Options) -> TaskData:
    vocab = opts.vocab_size if opts.vocab_size is not None else 16
    if not isinstance(vocab, int) or isinstance(vocab, bool) or not 2 <= vocab <= 1_000_000:
        raise ValueError(f"task 'tokens': vocab_size must be an int from 2 to 1,000,000, "
                         f"got {opts.vocab_size!r}")
    shape = opts.input_shape or (16,)
    if len(shape) != 1:
        raise ValueError(
            f"task 'tokens': input_shape must be (L,) (a sequence of L token ids), got {shape}"
        )
    if opts.noise > 1:
        raise ValueError(
            f"task 'tokens': noise is the probability that a token is replaced by a random "
            f"one, so it must be in [0, 1], got {opts.noise:g}"
        )
    (length,) = shape
    n, note = _sample_count(opts, 2 * length * 8, DEFAULT_SAMPLES)
    gen = _generator(opts.seed)
    # Each sequence counts from a random start with a random stride in 1..3, mod vocab.
    # A bigram model can only guess the stride; a model that reads the context finds it.
    strides = torch.arange(1, min(3, vocab - 1) + 1)
    start = torch.randint(0, vocab, (n, 1), generator=gen)
    stride = strides[torch.randint(0, strides.numel(), (n, 1), generator=gen)]
    seq = (start + stride * torch.arange(length + 1)) % vocab
    noisy = torch.rand(seq.shape, generator=gen) < opts.noise
    seq = torch.where(noisy, torch.randint(0, vocab, seq.shape, generator=gen), seq)
    x, y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
    return _finish(
        opts, x, y, kind="tokens", loss="cross_entropy", num_classes=vocab, gen=gen,
        description=(
            f"Next-token prediction: sequences of {length} tokens counting from a random start "
            f"with a stride of 1 to {int(strides[-1])} mod {vocab}, each token replaced by a "
            f"random one with probability {opts.noise:g}; y is x shifted by one (logits "
            f"(N, L, {vocab}) against targets (N, L)). {n} samples.{note}"
        ),
    )


# ----------------------------------------------------------------------------------------
# digits


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The shipped digits, read once and frozen (callers copy before they convert)."""
    images, labels = _read_digits(assets_dir() / "digits.npz")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _read_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The digits' images (N, 8, 8) and labels (N,) from ``path``, checked.

    Apart from the cached ``_digits_arrays`` so that an exported training script, which
    copies ``_digits`` and this function, can read the same file from its own path.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"the digits file {path} cannot be read: {err}") from err
    if images.shape[1:] != (8, 8) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"the digits file {path} is damaged: images {images.shape}, "
            f"labels {labels.shape}; expected (N, 8, 8) and (N,)"
        )
    return images, labels


def _digits(opts: _Options) -> TaskData:
    _check_classes(opts.num_classes, opts.name, default=10, allowed=range(10, 11))
    images, labels_np = _digits_arrays()
    total = images.shape[0]
    shape = opts.input_shape or (1, 8, 8)
    if len(shape) == 3 and shape[0] in (1, 3):
        size, how = shape[1:], f"images {shape}"
    elif len(shape) == 2:
        size, how = shape, f"images {shape} without a channel dimension"
    elif len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        side = math.isqrt(shape[0])
        size, how = (side, side), f"{side}x{side} images flattened to {shape[0]} features"
    else:
        raise ValueError(
            f"task 'digits': input_shape {shape} is not possible; use (1, H, W) or (3, H, W) "
            f"images (e.g. (1, 8, 8), (1, 32, 32) for LeNet, (1, 224, 224) for AlexNet), "
            f"(H, W), or (D,) with D a square number (e.g. (64,), (784,))"
        )
    per_sample = math.prod(shape) * 4 + 8
    n, note = _sample_count(opts, per_sample, total)
    if n > total:
        raise ValueError(f"task 'digits': samples={n}, but the data set has {total} images")
    gen = _generator(opts.seed)
    labels = torch.from_numpy(labels_np.astype(np.int64))  # astype copies
    # A class-balanced subset first (a prefix of the stratified order), then the split.
    subset = _stratified_order(labels, torch.randperm(total, generator=gen))[:n]
    train_idx, val_idx = _split(n, opts.val_fraction, gen, labels[subset])
    train_idx, val_idx = subset[train_idx], subset[val_idx]

    def pixels(idx: Tensor) -> Tensor:
        x = torch.from_numpy(images[idx.numpy()].astype(np.float32) / 16.0)[:, None]
        if tuple(size) != (8, 8):
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
        return x.expand(-1, shape[0], -1, -1) if len(shape) == 3 else x.reshape(len(idx), *shape)

    resized = "" if tuple(size) == (8, 8) else f", resized bilinearly to {size[0]}x{size[1]}"
    return TaskData(
        name="digits",
        kind="classification",
        x_train=pixels(train_idx).contiguous(),
        y_train=labels[train_idx].contiguous(),
        x_val=pixels(val_idx).contiguous(),
        y_val=labels[val_idx].contiguous(),
        loss="cross_entropy",
        num_classes=10,
        input_shape=shape,
        description=(
            f"UCI handwritten digits (Alpaydin & Kaynak, via scikit-learn; see "
            f"assets/digits-LICENSE.txt): {n} of {total} real images, 10 classes, pixels "
            f"scaled to [0, 1]{resized}; {how}; "
            f"class-stratified split.{note}"
        ),
    )


# ----------------------------------------------------------------------------------------
# teacher


def _first_leaf(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if next(module.children(), None) is None:
            return module
    return model


def _reinitialise(teacher: nn.Module, seed: int) -> None:
    """Give ``teacher`` fresh weights drawn from the CPU RNG seeded with ``seed``.

    Exactly ``torch.manual_seed(seed)`` then ``reset_parameters()`` on every submodule that
    has it (in ``modules()`` order) — plus two things that rule misses, so the teacher never
    silently equals the student: ``MultiheadAttention`` keeps its projection in
    ``_reset_parameters``, and parameters that no reset covers (a custom module's own
    ``nn.Parameter``, a ``ParameterList``) get Linear's default init.
    """
    torch.default_generator.manual_seed(seed)
    covered: set[int] = set()
    for name, module in teacher.named_modules():
        reset = getattr(module, "reset_parameters", None)
        if isinstance(module, nn.MultiheadAttention):
            reset = module._reset_parameters
        if not callable(reset):
            continue
        try:
            reset()
        except Exception as err:
            raise ValueError(
                f"task 'teacher': {name or 'the model'}.reset_parameters() failed: {err}"
            ) from err
        covered.update(id(p) for p in module.parameters(recurse=False))
    with torch.no_grad():
        for param in teacher.parameters():
            if id(param) in covered or isinstance(param, nn.parameter.UninitializedParameter):
                continue
            covered.add(id(param))
            if param.dim() >= 2:
                nn.init.kaiming_uniform_(param, a=math.sqrt(5))
            else:
                bound = 1 / math.sqrt(max(1, param.numel()))
                nn.init.uniform_(param, -bound, bound)


def _run_teacher(teacher: nn.Module, x: Tensor, seed: int) -> tuple[Tensor, bool]:
    """Targets for ``x``, and whether they were computed per sample.

    Per sample when the model returns one 0-dim scalar for a whole batch.
    """
    chunk = max(1, min(256, 2_000_000 // max(1, math.prod(x.shape[1:]))))
    outputs: list[Tensor] = []
    per_sample = False
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        # Seeded so that a model that draws random numbers in forward stays deterministic.
        torch.default_generator.manual_seed(seed)
        for begin in range(0, x.shape[0], chunk):
            batch = x[begin:begin + chunk]
            out = _call(teacher, batch)
            if out.dim() == 0:
                per_sample = True
                break
            if out.shape[0] != batch.shape[0]:
                raise ValueError(
                    f"task 'teacher': for a batch of {batch.shape[0]} the model returns shape "
                    f"{tuple(out.shape)}; the first dimension must be the batch"
                )
            outputs.append(out)
        if per_sample:
            # e.g. FixedHiddenMLP returns X.sum(): one number for the whole batch, so the
            # target of a sample is the model run on that sample alone.
            outputs = [_call(teacher, x[i:i + 1]).reshape(()) for i in range(x.shape[0])]
            return torch.stack(outputs).to(torch.float32), True
    return torch.cat(outputs).to(torch.float32), False


def _calibrate_batchnorm(teacher: nn.Module, x: Tensor) -> str:
    """Give the teacher's BatchNorm layers the statistics of the task's own inputs.

    A re-initialised teacher in eval mode normalises with mean 0 / variance 1, which is no
    normalisation at all: its targets then come from a different function than the one the
    student computes in train mode (batch statistics), and a ResNet's targets lose the scale
    a trained network has. Running the inputs through it once in train mode with a cumulative
    average (``momentum=None``) makes eval mode normalise as a trained network does.
    """
    norms = [m for m in teacher.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or x.shape[0] < 2:
        return ""
    chunk = max(2, min(256, 2_000_000 // max(1, math.prod(x.shape[1:]))))
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            for begin in range(0, x.shape[0] - 1, chunk):  # batches of 2 or more
                _call(teacher, x[begin:begin + max(chunk, 2)])
    finally:
        for m, momentum in saved:
            m.momentum = momentum
            m.eval()
    return ", BatchNorm statistics measured on these inputs"


def _call(teacher: nn.Module, batch: Tensor) -> Tensor:
    try:
        out = teacher(batch)
    except Exception as err:
        raise ValueError(
            f"task 'teacher': the model fails on a batch of shape {tuple(batch.shape)}: "
            f"{type(err).__name__}: {err}; check input_shape"
        ) from err
    tensor, _ = prediction(out)
    if tensor is None:
        raise ValueError(
            f"task 'teacher': the model returns {type(out).__name__} with no floating-point "
            f"tensor in it; the teacher needs one (alone, or in a tuple, dict or dataclass)"
        )
    return tensor.detach()


def _teacher(opts: _Options) -> TaskData:
    model = opts.model
    if not isinstance(model, nn.Module):
        raise ValueError(
            "task 'teacher' needs the model (model=...): its targets are the outputs of a "
            f"re-initialised copy of that model; got {type(model).__name__}"
        )
    first = _first_leaf(model)
    vocab = first.num_embeddings if isinstance(first, (nn.Embedding, nn.EmbeddingBag)) else None
    shape = opts.input_shape
    if shape is None:
        if vocab is not None:
            shape = (16,)
        elif isinstance(first, nn.Linear) and first.in_features > 0:
            shape = (first.in_features,)
        elif isinstance(first, nn.RNNBase) and first.batch_first:
            shape = (20, first.input_size)
        else:
            raise ValueError(
                f"task 'teacher': give input_shape (one sample, no batch dimension): it cannot "
                f"be guessed from a model whose first layer is {type(first).__name__}"
            )

    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise ValueError(
            "task 'teacher' needs a model with real weights; this one lives on the meta device "
            "(too large to materialise), so it has no outputs to learn from"
        )
    try:
        teacher = copy.deepcopy(model)
    except Exception as err:
        raise ValueError(f"task 'teacher': the model cannot be copied: {err}") from err
    # The teacher always runs on the CPU in float32, so its targets do not depend on where
    # the student lives (a student in float16 on a GPU gets the same targets as on the CPU).
    teacher = teacher.to(device="cpu", dtype=torch.float32).eval().requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        _reinitialise(teacher, opts.seed + 1)

    def inputs(count: int, gen: torch.Generator | None) -> Tensor:
        if vocab is not None:
            if gen is None:
                return torch.zeros((count, *shape), dtype=torch.int64)
            return torch.randint(0, vocab, (count, *shape), generator=gen)
        if gen is None:
            return torch.zeros((count, *shape))
        return torch.randn((count, *shape), generator=gen)

    # A probe on two samples tells how big one target is, to size the task.
    probe, _ = _run_teacher(teacher, inputs(2, None), opts.seed + 2)
    out_per_sample = probe.numel() // 2
    in_bytes = math.prod(shape) * (8 if vocab is not None else 4)
    n, note = _sample_count(opts, in_bytes + out_per_sample * 4, DEFAULT_SAMPLES)

    gen = _generator(opts.seed)
    x = inputs(n, gen)
    calibrated = _calibrate_batchnorm(teacher, x)
    y, per_sample = _run_teacher(teacher, x, opts.seed + 2)
    scalar_note = (
        " The model returns one scalar per batch, so each target is the model run on that "
        "sample alone (y has shape (N,)): train it one sample at a time."
        if per_sample else ""
    )
    source = f"token ids in [0, {vocab})" if vocab is not None else "standard normal inputs"
    return _finish(
        opts, x, y, kind="regression", loss="mse", num_classes=None, gen=gen,
        description=(
            f"Teacher-student: {n} {source} of shape {shape}; targets are the outputs of a "
            f"frozen copy of {type(model).__name__} re-initialised with seed {opts.seed + 1} "
            f"(eval mode, CPU float32{calibrated}). MSE.{scalar_note}{note}"
        ),
    )


_BUILDERS: dict[str, Callable[[_Options], TaskData]] = {
    "spirals": _spirals,
    "moons": _moons,
    "circles": _circles,
    "xor": _xor,
    "blobs": _blobs,
    "sine": _sine,
    "sine_seq": _sine_seq,
    "tokens": _tokens,
    "digits": _digits,
    "teacher": _teacher,
}
assert set(_BUILDERS) == set(TASKS)


# ----------------------------------------------------------------------------------------
# user data


def load_user_data(
    path: str | Path, *, val_fraction: float = 0.2, seed: int = 0
) -> TaskData:
    """Read the user's own data set as a task.

    - ``.csv``: numbers only, an optional header row, the target in the last column.
      Integer-valued targets in 0..999 mean classification (cross entropy, classes
      0..max), anything else regression (MSE, y of shape (N, 1)).
    - ``.npz``: arrays ``x`` and ``y`` (read without pickle).
    - ``.pt``: a dict with tensors ``x`` and ``y``, or an ``(x, y)`` tuple, read with
      ``torch.load(..., weights_only=True)`` only: a data file never gets to run code.

    For ``.npz``/``.pt`` the dtype of ``y`` decides: integer or bool labels of shape (N,) mean
    classification; integer ``x`` and ``y`` of the same (N, L) shape mean next-token
    ``tokens``; floats mean regression. Every problem raises ``ValueError`` naming the file.
    """
    path = Path(path)
    _check_val_fraction(val_fraction, path.name)
    _check_seed(seed, path.name)
    if not path.is_file():
        raise ValueError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    size = path.stat().st_size
    if size > MAX_USER_FILE_BYTES:
        raise ValueError(
            f"{path}: {size / 2**20:.0f} MB is more than tuilab loads "
            f"({MAX_USER_FILE_BYTES // 2**20} MB)"
        )
    suffix = path.suffix.lower()
    if suffix == ".csv":
        x, y, classify = _read_csv(path)
        return _user_task(path, x, y, classify=classify, val_fraction=val_fraction, seed=seed)
    if suffix == ".npz":
        x, y = _read_npz(path)
    elif suffix == ".pt":
        x, y = _read_pt(path)
    else:
        raise ValueError(f"{path}: tuilab reads .csv, .npz or .pt data files, not {suffix!r}")
    return _user_task(path, x, y, classify=None, val_fraction=val_fraction, seed=seed)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> tuple[Tensor, Tensor, bool]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    header: list[str] | None = None
    rows: list[list[float]] = []
    width = 0
    reader = csv.reader(text.splitlines())
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            if header is None and not rows and not all(_is_number(c) for c in cells):
                header = [c.strip() for c in cells]  # a first row that is not all numbers
                width = len(header)
                continue
            if not width:
                width = len(cells)
            if len(cells) != width:
                raise ValueError(
                    f"{path}: row {line} has {len(cells)} columns, the rows before it have "
                    f"{width}"
                )
            values = []
            for col, cell in enumerate(cells, start=1):
                try:
                    value = float(cell)
                except ValueError:
                    value = None
                if value is None or not math.isfinite(value):
                    named = f" ({header[col - 1]!r})" if header and header[col - 1] else ""
                    what = "not a number" if value is None else "not a finite number"
                    if ";" in cell or "\t" in cell:
                        what += " (tuilab reads comma-separated values)"
                    raise ValueError(
                        f"{path}: row {line} column {col}{named} is {cell!r}, {what}; a "
                        f"tuilab CSV holds numbers only (an optional header row, the target "
                        f"in the last column)"
                    )
                values.append(value)
            rows.append(values)
    except csv.Error as err:
        raise ValueError(f"{path}: not a readable CSV file: {err}") from err
    if width < 2:
        hint = " (tuilab reads comma-separated values)" if any(
            d in text for d in (";", "\t")) else ""
        raise ValueError(
            f"{path}: needs at least two columns, the features then the target{hint}"
        )
    if len(rows) < 2:
        raise ValueError(f"{path}: has {len(rows)} data rows; at least 2 are needed "
                         f"(one for training, one for validation)")
    data = torch.tensor(rows, dtype=torch.float64)
    x, target = data[:, :-1].to(torch.float32), data[:, -1]
    integral = bool((target == target.round()).all())
    classify = integral and bool(target.min() >= 0) and bool(target.max() < MAX_CSV_CLASSES)
    y = target.to(torch.int64) if classify else target.to(torch.float32)[:, None]
    return x, y, classify


def _read_npz(path: Path) -> tuple[Tensor, Tensor]:
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as err:  # numpy raises OSError, ValueError, EOFError... by format
        raise ValueError(f"{path}: not a readable .npz file: {err}") from err
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: holds a single array, not an .npz archive with 'x' and 'y'")
    with data:
        missing = [k for k in ("x", "y") if k not in data.files]
        if missing:
            raise ValueError(
                f"{path}: missing array {', '.join(map(repr, missing))}; it has "
                f"{', '.join(map(repr, data.files)) or 'no arrays'} (expected 'x' and 'y')"
            )
        arrays = {}
        for key in ("x", "y"):
            try:
                arrays[key] = data[key]
            except Exception as err:  # object arrays (pickle), a damaged zip member...
                raise ValueError(f"{path}: array {key!r} cannot be read: {err}") from err
    tensors = []
    for key, arr in arrays.items():
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{path}: array {key!r} has dtype {arr.dtype}; it must be numeric")
        if arr.dtype.kind == "u" and arr.dtype.itemsize > 1:
            arr = arr.astype(np.int64)  # torch lacks wide unsigned ops
        tensors.append(torch.from_numpy(np.array(arr, copy=True)))
    return tensors[0], tensors[1]


def _read_pt(path: Path) -> tuple[Tensor, Tensor]:
    from tuilab.core.errors import SpecFileError
    from tuilab.core.weights import torch_load_checked, unpickling_reason

    try:
        obj = torch_load_checked(path)
    except SpecFileError as err:
        raise ValueError(str(err)) from err
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: tuilab loads .pt files with weights_only=True and refuses to run code "
            f"from them; this file needs more than tensors: {unpickling_reason(err)}"
        ) from err
    except Exception as err:
        raise ValueError(f"{path}: not a readable .pt file (truncated or corrupt?): {err}") from err
    if isinstance(obj, dict):
        missing = [k for k in ("x", "y") if k not in obj]
        if missing:
            keys = ", ".join(repr(k) for k in obj) or "no keys"
            raise ValueError(
                f"{path}: missing key {', '.join(map(repr, missing))}; the dict has {keys} "
                f"(expected 'x' and 'y')"
            )
        x, y = obj["x"], obj["y"]
    elif isinstance(obj, (tuple, list)) and len(obj) == 2:
        x, y = obj
    else:
        raise ValueError(
            f"{path}: holds {type(obj).__name__}; expected a dict with tensors 'x' and 'y' "
            f"or an (x, y) tuple"
        )
    for key, value in (("x", x), ("y", y)):
        if not isinstance(value, Tensor):
            raise ValueError(f"{path}: {key!r} is {type(value).__name__}, not a tensor")
        if value.is_complex() or value.dtype in (torch.quint8, torch.qint8, torch.qint32):
            raise ValueError(f"{path}: {key!r} has dtype {value.dtype}; it must be real numbers")
    return x.detach().clone(), y.detach().clone()


def _user_task(
    path: Path,
    x: Tensor,
    y: Tensor,
    *,
    classify: bool | None,
    val_fraction: float,
    seed: int,
) -> TaskData:
    """Turn user arrays into a task; ``classify`` is None when the dtypes decide."""
    if x.dim() == 0 or y.dim() == 0:
        raise ValueError(f"{path}: x and y need a first (sample) dimension; got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: x has {x.shape[0]} samples but y has {y.shape[0]}; "
                         f"the lengths must match")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"{path}: has {n} samples; at least 2 are needed "
                         f"(one for training, one for validation)")
    for key, t in (("x", x), ("y", y)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{path}: {key!r} contains NaN or infinite values")
    if x.dim() == 1:
        x = x[:, None]  # one feature per sample
    # Integer x is kept as int64 token ids (for nn.Embedding), except uint8 and bool, which
    # are pixels or flags: those become float32 like every other input.
    is_ids = not x.is_floating_point() and x.dtype not in (torch.uint8, torch.bool)
    x = x.to(torch.int64) if is_ids else x.to(torch.float32)

    integer_y = not y.is_floating_point()
    if classify is None:
        classify = integer_y and y.dim() == 1
    kind, loss, num_classes = "regression", "mse", None
    if integer_y and x.dtype == torch.int64 and y.shape == x.shape and x.dim() == 2:
        y = y.to(torch.int64)
        if int(y.min()) < 0 or int(x.min()) < 0:
            raise ValueError(f"{path}: token ids must be >= 0")
        kind, loss = "tokens", "cross_entropy"
        num_classes = int(max(x.max(), y.max())) + 1
    elif classify:
        y = y.to(torch.int64)
        if int(y.min()) < 0:
            raise ValueError(f"{path}: class labels must be 0..K-1; found {int(y.min())}")
        kind, loss, num_classes = "classification", "cross_entropy", int(y.max()) + 1
    else:
        y = y.to(torch.float32)
        if y.dim() == 1:
            y = y[:, None]
    gen = _generator(seed)
    train, val = _split(n, val_fraction, gen, y if kind == "classification" else None)
    features = "x".join(str(d) for d in x.shape[1:])
    what = {
        "classification": f"classification, {num_classes} classes",
        "tokens": f"next-token prediction over {num_classes} token ids",
        "regression": f"regression of {tuple(y.shape[1:])} targets",
    }[kind]
    return _split_task(path.name, kind, x, y, train, val, loss=loss, num_classes=num_classes,
                       description=f"{path.name}: {n} samples of {features} features, {what}.")


def _shape_dtype(t: Tensor) -> str:
    return f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
