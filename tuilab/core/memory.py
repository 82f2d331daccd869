"""The memory plan: what one forward, and one training step, will hold — found on meta.

"About 4× the parameters for Adam" (Accelerate's ``estimate-memory``) leaves out what usually
decides whether a step fits: the activations autograd saves for backward, the optimizer's
temporaries while it steps, and the moment at which all of these are alive together. So the
plan does not add up formulas; it *runs* the step on the meta device (no memory, no
arithmetic) under a ``TorchDispatchMode`` that follows every tensor storage the ops create
and notices, through a weak reference, when each is freed. The peak of that live total is the
peak the step reaches on a real device, up to what kernels allocate privately (workspaces)
and what the allocator rounds up.

What one plan holds (bytes, in the dtype asked for):

* ``params_bytes``, ``buffers_bytes``: each tensor once (tied weights once).
* ``grads_bytes``: one gradient per trainable parameter.
* ``optimizer_bytes``: the state the optimizer keeps between steps (Adam/AdamW: two moments
  and a step counter per parameter; SGD with momentum: one buffer; plain SGD: none).
* ``activations_bytes``: what autograd saves for backward, measured with
  ``torch.autograd.graph.saved_tensors_hooks`` (parameters excluded: they are counted
  above), per layer in ``activations_by_layer``.
* ``forward_peak_bytes``: the peak of a forward under ``torch.no_grad()`` (inference).
* ``train_peak_bytes``: the peak of forward + loss + backward + ``optimizer.step()``, run
  twice so the step that already holds the optimizer state is measured. PyTorch steps with a
  for-loop per parameter on the CPU and with ``foreach`` kernels (which allocate temporaries
  for all parameters at once) on CUDA, so ``foreach_train_peak_bytes`` is measured too and
  each device is judged by the implementation it would use.
* ``fits``: per present device, whether its free memory (``/proc/meminfo`` MemAvailable;
  ``torch.cuda.mem_get_info``) holds that device's training peak.

The loss is the one a training run would most likely use: cross-entropy against class 0 when
the output has a class dimension, mean squared error otherwise.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import is_lazy
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["OPTIMIZERS", "LiveBytes", "MemoryPlan", "free_memory", "plan_memory"]

OPTIMIZERS = ("adam", "adamw", "sgd", "sgd-momentum")
"""The optimizers a plan can be made for (``--optimizer``)."""


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes one forward and one training step hold; see the module docstring."""

    dtype: str
    optimizer: str
    params_bytes: int
    buffers_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    forward_peak_bytes: int
    train_peak_bytes: int
    foreach_train_peak_bytes: int
    activations_by_layer: dict[str, int] = field(default_factory=dict)
    free: dict[str, int] = field(default_factory=dict)
    """Free bytes of each present device when the plan was made."""

    def peak_for(self, device: str) -> int:
        """The training peak on ``device``: CUDA steps with foreach kernels, the CPU does not."""
        return self.foreach_train_peak_bytes if device.startswith("cuda") else self.train_peak_bytes

    @property
    def fits(self) -> dict[str, bool]:
        return {device: self.peak_for(device) <= free for device, free in self.free.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "optimizer": self.optimizer,
            "params_bytes": self.params_bytes,
            "buffers_bytes": self.buffers_bytes,
            "grads_bytes": self.grads_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "activations_bytes": self.activations_bytes,
            "forward_peak_bytes": self.forward_peak_bytes,
            "train_peak_bytes": self.train_peak_bytes,
            "foreach_train_peak_bytes": self.foreach_train_peak_bytes,
            "free_bytes": dict(self.free),
            "fits": self.fits,
        }


# --- free memory --------------------------------------------------------------------------
def free_memory() -> dict[str, int]:
    """Free bytes per present device: ``cpu`` always, ``cuda:N`` for each visible GPU."""
    free = {"cpu": _cpu_available()}
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            with contextlib.suppress(RuntimeError):
                free[f"cuda:{index}"] = int(torch.cuda.mem_get_info(index)[0])
    return free


def _cpu_available() -> int:
    """MemAvailable from /proc/meminfo (what can be had without swapping), else free pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


# --- following live storages ------------------------------------------------------------------
class LiveBytes(TorchDispatchMode):
    """The bytes of every storage alive, and their peak, as ops create and drop tensors.

    A storage is counted once however many views share it; a weak reference to its Python
    object (PyTorch keeps one per storage) says when it is freed. On meta nothing is
    allocated, but every storage still knows its size.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[weakref.ref[Any], int]] = {}
        self.now = 0
        self.peak = 0

    def track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self.live:
            return
        nbytes = storage.nbytes()

        def freed(_: Any, key: int = key, nbytes: int = nbytes) -> None:
            if self.live.pop(key, None) is not None:
                self.now -= nbytes

        self.live[key] = (weakref.ref(storage, freed), nbytes)
        self.now += nbytes
        self.peak = max(self.peak, self.now)

    def track_run(self, model: nn.Module, x: torch.Tensor) -> None:
        """Count what a forward starts with: each parameter and buffer once, and the input
        (a lazy layer's uninitialized parameter has no storage yet: its forward makes one)."""
        for tensor in (*_unique(model.parameters()), *_unique(model.buffers()), x):
            if not is_lazy(tensor):
                self.track(tensor)

    def reset_peak(self) -> None:
        self.peak = self.now

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor):
                self.track(item)
        return out


# --- the plan ----------------------------------------------------------------------------
def plan_memory(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    takes_tokens: bool = False,
    vocab_size: int | None = None,
    optimizer: str = "adam",
    dtype: torch.dtype | None = None,
    free: dict[str, int] | None = None,
    forward_peak: int | None = None,
) -> MemoryPlan:
    """The plan for ``model`` fed a batch of ``input_shape``; the model itself is untouched.

    A meta copy runs (``dtype`` converts its floating tensors, as ``model.to(dtype)`` would),
    in the training flags the model has. Raises what the forward raises (e.g. a forward that
    needs real values, which meta cannot give). ``forward_peak``: the no-grad forward's peak
    when the caller has measured it already (the shape summary does, in the same dtype), so
    the slowest part of a big model's plan — a forward in meta's Python kernels — runs once.
    """
    from tuilab.core.shapes import copy_to_device, make_input

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
    meta = torch.device("meta")
    if takes_tokens and vocab_size is None:
        vocab_size = next(
            (m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)), None)

    copy = copy_to_device(model, meta)
    if dtype is not None:
        copy.to(dtype)
    float_dtype = next((p.dtype for p in copy.parameters() if p.is_floating_point()), None)
    x = make_input(input_shape, takes_tokens=takes_tokens, vocab_size=vocab_size,
                   device=meta, dtype=float_dtype)
    if forward_peak is None or any(is_lazy(p) for p in copy.parameters()):
        live = LiveBytes()  # (this forward also gives lazy layers their sizes)
        live.track_run(copy, x)
        with torch.no_grad(), live:
            copy(x)
        forward_peak = live.peak if forward_peak is None else forward_peak
    params = _unique(copy.parameters())
    buffers = _unique(copy.buffers())
    trainable = [p for p in params if p.requires_grad]
    used_dtype = next((p.dtype for p in params if p.is_floating_point()), torch.float32)
    step = _train_step(copy, x, params, buffers, optimizer)
    return MemoryPlan(
        dtype=str(used_dtype).removeprefix("torch."),
        optimizer=optimizer,
        params_bytes=_nbytes(params),
        buffers_bytes=_nbytes(buffers),
        grads_bytes=_nbytes(trainable),
        optimizer_bytes=step.state_bytes,
        activations_bytes=sum(step.saved.values()),
        forward_peak_bytes=forward_peak,
        train_peak_bytes=step.peak[False],
        foreach_train_peak_bytes=step.peak[True],
        activations_by_layer=step.saved,
        free=free_memory() if free is None else dict(free),
    )


def _unique(tensors: Iterator[torch.Tensor]) -> list[torch.Tensor]:
    seen: set[int] = set()
    result = []
    for tensor in tensors:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            result.append(tensor)
    return result


def _nbytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _make_optimizer(name: str, params: list[torch.Tensor], foreach: bool
                    ) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, foreach=foreach)
    if name == "adamw":
        return torch.optim.AdamW(params, foreach=foreach)
    momentum = 0.9 if name == "sgd-momentum" else 0.0
    return torch.optim.SGD(params, lr=0.01, momentum=momentum, foreach=foreach)


@dataclass
class _Step:
    peak: dict[bool, int]
    """Peak bytes of the step, by ``foreach`` (False: the for-loop the CPU uses)."""
    state_bytes: int
    saved: dict[str, int]
    """Bytes saved for backward, per layer path."""


class _Saved:
    """A pack hook that charges each storage saved for backward to the layer saving it.

    Each storage counts once, to the first layer that saves it; a saved parameter or buffer
    (a Linear saves its weight) is not an activation. Storages are held until the forward
    ends (autograd holds them anyway), so no id is reused meanwhile.
    """

    def __init__(self, recorder: Any, own: set[int]) -> None:
        self.recorder = recorder
        self.own = own
        self.seen: dict[int, Any] = {}
        self.by_layer: dict[str, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key not in self.own and key not in self.seen:
            self.seen[key] = storage
            stack = self.recorder.stack
            path = stack[-1][1] if stack else ""
            self.by_layer[path] = self.by_layer.get(path, 0) + storage.nbytes()
        return tensor


def _train_step(model: nn.Module, x: torch.Tensor, params: list[torch.Tensor],
                buffers: list[torch.Tensor], optimizer: str) -> _Step:
    """One training step on meta, measured, with the optimizer's state already held.

    Forward and backward run on the model itself. The optimizer does not: its state and its
    step's temporaries are elementwise, so they are measured on stand-in tensors
    (:func:`_optimizer_cost`) — stepping a 1.6 B-parameter model's Adam on meta costs
    seconds of Python per step, a stand-in microseconds. The state is in the live total
    from the start (the steady step, not the first); the step's temporaries come on top of
    what is alive when backward ends.
    """
    from tuilab.core.shapes import _Recorder

    trainable = [p for p in params if p.requires_grad]
    state, temporaries = _optimizer_cost(optimizer, trainable)
    live = LiveBytes()
    live.track_run(model, x)
    live.now += state
    live.reset_peak()
    recorder = _Recorder(model)
    saved = _Saved(recorder, {id(t.untyped_storage()) for t in (*params, *buffers)})
    try:
        with torch.enable_grad(), live:
            with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
                loss = _loss(model(x))
            saved.seen.clear()  # autograd frees saved tensors during backward: let it
            if loss.requires_grad:
                loss.backward()
            del loss
    finally:
        recorder.remove()
    peak = {foreach: max(live.peak, live.now + extra) for foreach, extra in temporaries.items()}
    return _Step(peak, state, saved.by_layer)


def _optimizer_cost(name: str, trainable: list[torch.Tensor]) -> tuple[int, dict[bool, int]]:
    """(state bytes kept between steps, {foreach: bytes of the step's temporaries}).

    Measured by stepping the real optimizer on meta stand-ins, per dtype: one tensor of all
    the elements gives the elementwise state and what ``foreach`` kernels allocate for the
    whole list at once; two tensors against one of the same size give the per-tensor state
    (Adam's step counter); the for-loop's temporaries live for one or two parameters at a
    time, so the two largest parameters give them.
    """
    groups: dict[torch.dtype, list[int]] = {}
    for param in trainable:
        groups.setdefault(param.dtype, []).append(param.numel())
    state = 0
    temporaries = {False: 0, True: 0}
    for dtype, sizes in groups.items():
        total = sum(sizes)
        whole, foreach_extra = _probe(name, [total], dtype, foreach=True)
        pair, _ = _probe(name, [1, 1], dtype, foreach=False)
        one, _ = _probe(name, [2], dtype, foreach=False)
        state += whole + (len(sizes) - 1) * (pair - one)
        largest = sorted(sizes, reverse=True)[:2]
        _, loop_extra = _probe(name, largest, dtype, foreach=False)
        temporaries[False] = max(temporaries[False], loop_extra)
        temporaries[True] = max(temporaries[True], foreach_extra)
    return state, temporaries


def _probe(name: str, sizes: list[int], dtype: torch.dtype, *, foreach: bool
           ) -> tuple[int, int]:
    """(state bytes, peak temporaries) of a steady step on meta parameters of ``sizes``."""
    params = [nn.Parameter(torch.empty(n, dtype=dtype, device="meta")) for n in sizes]
    opt = _make_optimizer(name, params, foreach)
    for param in params:
        param.grad = torch.zeros_like(param)
    opt.step()  # makes the state: the step measured below is a steady one
    state = [v for entry in opt.state.values() for v in entry.values()
             if isinstance(v, torch.Tensor)]
    live = LiveBytes()
    for tensor in (*params, *(p.grad for p in params if p.grad is not None), *state):
        live.track(tensor)
    before = live.now
    with live:
        opt.step()
    return sum(t.untyped_storage().nbytes() for t in state), live.peak - before


def _loss(output: Any) -> torch.Tensor:
    """The loss a run would use on this output: cross-entropy over classes, else MSE."""
    from tuilab.core.outputs import prediction

    logits, _ = prediction(output)
    if logits is None:
        raise ValueError("the forward returns no floating tensor to train on")
    if logits.dim() >= 2 and logits.shape[-1] > 1:
        flat = logits.reshape(-1, logits.shape[-1])
        target = torch.zeros(flat.shape[0], dtype=torch.long, device=flat.device)
        return nn.functional.cross_entropy(flat, target)
    return nn.functional.mse_loss(logits, torch.zeros_like(logits))
