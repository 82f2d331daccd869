"""Modes (train/eval, device, dtype) and one-off runs of a live model, always undone cleanly.

Everything here is something the user triggers by hand in the lab and then goes on working
with the same model, so each function leaves the model exactly as it found it except for the
one thing it is meant to change:

* hooks it registers are removed and ``training`` / the MHA fast path are restored in
  ``finally``, even when the user's forward raises (torchinfo's users lost hooks and train
  mode that way);
* :func:`change_mode` tries a move or cast on a deep copy first (and runs a probe forward
  there), so a refused change — no GPU, a float16 op missing on the CPU, out of memory —
  leaves the real model bit-identical; PyTorch's own ``.to()`` can fail half-way;
* every function returns the PyTorch line it amounts to (``net.to(torch.bfloat16)``), which
  the app shows in its code log so the user learns the API by watching.

Only torch, numpy and the standard library are imported here (no UI code).
"""

from __future__ import annotations

import copy
import gc
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tuilab.core.errors import ModeError
from tuilab.core.outputs import first_tensor, prediction

__all__ = [
    "DTYPES",
    "HOOK_ACTIONS",
    "HOOK_KINDS",
    "INIT_SCHEMES",
    "LOSSES",
    "BackwardReport",
    "DeviceInfo",
    "ForwardReport",
    "HookEvent",
    "HookInfo",
    "HookKit",
    "LayerStats",
    "apply_init",
    "available_devices",
    "backward_report",
    "change_mode",
    "dtype_name",
    "error_line",
    "first_tensor",
    "forward_report",
    "grad_cam",
    "make_loss",
    "model_device",
    "model_dtype",
    "parse_device",
    "parse_dtype",
    "restore_training",
    "set_training",
    "training_flags",
    "zero_grad",
]


# --------------------------------------------------------------------------------------------
# devices and dtypes


@dataclass(frozen=True)
class DeviceInfo:
    """One device the user may pick, or one they cannot and why (shown greyed out in the UI).

    ``description`` is the GPU's marketing name for ``cuda:N`` ("NVIDIA H100 80GB HBM3").
    """

    name: str
    available: bool
    reason: str
    description: str = ""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[DeviceInfo]:
    """The CPU, each visible CUDA GPU, and MPS; absent ones come with the reason they are."""
    devices = [DeviceInfo("cpu", True, "", "CPU")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            devices.append(
                DeviceInfo(f"cuda:{index}", True, "", torch.cuda.get_device_name(index))
            )
    else:
        built = torch.backends.cuda.is_built()
        reason = (
            "no CUDA GPU visible to torch (torch.cuda.is_available() is False)"
            if built
            else f"this torch ({torch.__version__}) was built without CUDA"
        )
        devices.append(DeviceInfo("cuda", False, reason))
    if _mps_available():
        devices.append(DeviceInfo("mps", True, "", "Apple GPU (Metal)"))
    else:
        devices.append(DeviceInfo(
            "mps", False, "no Apple MPS backend (torch.backends.mps.is_available() is False)"
        ))
    return devices


DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
_DTYPE_ALIASES = {
    "float": "float32", "fp32": "float32", "f32": "float32",
    "half": "float16", "fp16": "float16", "f16": "float16",
    "bf16": "bfloat16",
    "double": "float64", "fp64": "float64", "f64": "float64",
}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """A dtype from its name ("bfloat16", "torch.float16", "half", "fp64"...); ModeError else."""
    if isinstance(name, torch.dtype):
        if name in DTYPES.values():
            return name
        raise ModeError(
            f"dtype {name} is not one a model can be cast to here; choose one of: "
            f"{', '.join(DTYPES)}", where="dtype",
        )
    if not isinstance(name, str):
        raise ModeError(f"dtype must be a name like 'float32', got {name!r}", where="dtype")
    key = name.strip().lower().removeprefix("torch.")
    key = _DTYPE_ALIASES.get(key, key)
    if key not in DTYPES:
        raise ModeError(
            f"unknown dtype {name!r}; choose one of: {', '.join(DTYPES)}", where="dtype"
        )
    return DTYPES[key]


def parse_device(name: str | torch.device) -> torch.device:
    """A device that exists here ("cpu", "cuda", "cuda:1", "mps"); ModeError naming what does.

    "meta" is refused: a model moved there loses every value (it is for shapes only).
    """
    allowed = [d.name for d in available_devices() if d.available]
    try:
        device = torch.device(name.strip() if isinstance(name, str) else name)
    except (RuntimeError, TypeError, ValueError):
        raise ModeError(
            f"unknown device {name!r}; choose one of: {', '.join(allowed)}", where="device"
        ) from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            reason = next(d.reason for d in available_devices() if d.name == "cuda")
            raise ModeError(
                f"device {str(device)!r} is not available: {reason}; choose one of: "
                f"{', '.join(allowed)}", where="device",
            )
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ModeError(
                f"device {str(device)!r} does not exist: torch sees "
                f"{torch.cuda.device_count()} CUDA GPU(s); choose one of: {', '.join(allowed)}",
                where="device",
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not _mps_available():
            raise ModeError(
                f"device 'mps' is not available: no Apple MPS backend here; choose one of: "
                f"{', '.join(allowed)}", where="device",
            )
        return torch.device("mps")
    raise ModeError(
        f"device {str(device)!r} is not supported here; choose one of: {', '.join(allowed)}",
        where="device",
    )


def _tensors(model: nn.Module) -> Iterator[Tensor]:
    yield from model.parameters()
    yield from model.buffers()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in _tensors(model):
        return t.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the first floating-point parameter or buffer (float32 if there is none)."""
    for t in _tensors(model):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def training_flags(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """Every module's own ``training`` flag: ``model.train(b)`` would flatten a mixed model
    (a frozen BatchNorm kept in eval inside a training net), so restore them one by one."""
    return [(m, m.training) for m in model.modules()]


def restore_training(flags: list[tuple[nn.Module, bool]]) -> None:
    for module, flag in flags:
        module.training = flag


def _is_meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in _tensors(model))


def _device_literal(device: torch.device) -> str:
    return f'"{device}"'


def _match_input(x: Tensor, device: torch.device, dtype: torch.dtype | None) -> Tensor:
    """``x`` on the model's device; floating inputs cast to its dtype (token ids stay ints)."""
    if dtype is not None and x.is_floating_point() and x.dtype != dtype:
        return x.to(device=device, dtype=dtype)
    return x.to(device)


# --------------------------------------------------------------------------------------------
# change_mode


class _Saved:
    """References to every parameter's, gradient's and buffer's current tensor (no copies).

    ``Module.to`` replaces ``param.data`` and the buffers one by one; holding the old tensor
    objects lets a failed move put every one of them back, so the model is bit-identical.
    """

    def __init__(self, model: nn.Module) -> None:
        self.params: list[tuple[nn.Parameter, Tensor, Tensor | None, Tensor | None]] = []
        self.buffers: list[tuple[nn.Module, str, Tensor]] = []
        seen: set[int] = set()
        for module in model.modules():
            for p in module._parameters.values():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    # ``_apply`` converts a gradient through ``grad.data = ...``: keep both.
                    grad = p.grad
                    self.params.append((p, p.data, grad, None if grad is None else grad.data))
            for key, b in module._buffers.items():
                if b is not None:
                    self.buffers.append((module, key, b))

    def restore(self) -> None:
        with torch.no_grad():
            for p, data, grad, grad_data in self.params:
                p.data = data
                if grad is not None and grad_data is not None:
                    grad.data = grad_data
                p.grad = grad
            for module, key, b in self.buffers:
                module._buffers[key] = b


def change_mode(
    model: nn.Module,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    probe_input: Tensor | None = None,
    name: str = "net",
) -> str:
    """Move and/or cast ``model`` in place, only once a copy has shown that it works.

    The copy is moved first and, given ``probe_input``, runs one forward there (under
    ``no_grad``): that is where a float16 op missing on the CPU or a device without memory
    shows up. Only then is the real model changed with ``model.to(...)``; if even that fails,
    every tensor is put back. On any failure ModeError says why and the model is unchanged.
    A model on the meta device has no values to move: it can only be cast (no probe).
    Returns the PyTorch line, e.g. ``net.to("cuda:0")`` or ``net.to(torch.bfloat16)``.
    """
    if device is None and dtype is None:
        raise ModeError("give a device, a dtype or both to change", where="mode")
    target_dtype = parse_dtype(dtype) if dtype is not None else None
    if _is_meta(model):
        if device is not None and torch.device(device).type != "meta":
            raise ModeError(
                "the model is on the meta device (shapes only, no values): it cannot be moved "
                f"to {str(device)!r}; build it on a real device instead", where="device",
            )
        if target_dtype is None:
            return f"{name}  # already on meta"
        model.to(target_dtype)
        return f"{name}.to(torch.{dtype_name(target_dtype)})"
    target_device = parse_device(device) if device is not None else None

    parts = []
    if target_device is not None:
        parts.append(_device_literal(target_device))
    if target_dtype is not None:
        parts.append(f"torch.{dtype_name(target_dtype)}")
    code = f"{name}.to({', '.join(parts)})"
    what = " and ".join(parts).replace('"', "")

    def to(m: nn.Module) -> nn.Module:
        if target_device is not None and target_dtype is not None:
            return m.to(device=target_device, dtype=target_dtype)
        if target_device is not None:
            return m.to(target_device)
        return m.to(target_dtype)

    # Layers whose kernels a build may lack (an LSTM in bfloat16 on some CPUs) are tried
    # first, each as a tiny fresh copy (core/dtype_probe.py): the refusal names the layer,
    # where the whole-model trial below could only quote torch.
    from tuilab.core.dtype_probe import check_dtype

    check_dtype(model, target_dtype or model_dtype(model), target_device or model_device(model),
                name=name)
    try:
        trial = copy.deepcopy(model)
    except Exception as err:
        raise ModeError(f"cannot try {code}: the model cannot be copied ({err})",
                        where="mode") from err
    try:
        to(trial)
        if probe_input is not None:
            probe = _match_input(probe_input, model_device(trial), target_dtype
                                 or model_dtype(trial))
            with torch.no_grad():
                trial(probe)
    except Exception as err:
        raise ModeError(f"{name} cannot run in {what}: {error_line(err)}; the model was left "
                        f"as it was", where="mode") from err
    finally:
        del trial
        _free_memory(target_device)

    saved = _Saved(model)
    try:
        to(model)
    except Exception as err:
        saved.restore()
        _free_memory(target_device)
        raise ModeError(f"{code} failed: {error_line(err)}; the model was left as it was",
                        where="mode") from err
    return code


def _free_memory(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def error_line(err: BaseException) -> str:
    """The first line of an error (no traceback, no C++ frames), at most 300 characters."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    if len(line) > 300:
        line = line[:297] + "..."
    return line


def set_training(model: nn.Module, training: bool, *, name: str = "net") -> str:
    """``model.train(training)``; returns ``net.train()`` or ``net.eval()``."""
    model.train(training)
    return f"{name}.train()" if training else f"{name}.eval()"


def zero_grad(model: nn.Module, *, name: str = "net") -> str:
    """Clear every gradient (``set_to_none=True``, PyTorch's default since 2.0)."""
    model.zero_grad(set_to_none=True)
    return f"{name}.zero_grad()"


# --------------------------------------------------------------------------------------------
# losses

LOSSES = ("cross_entropy", "mse", "bce_with_logits")


def _cross_entropy(out: Tensor, target: Tensor) -> Tensor:
    # Sequence models here are batch_first and emit (N, L, V) logits for (N, L) targets;
    # F.cross_entropy wants the classes in dim 1, so flatten the positions into the batch.
    if out.dim() > 2 and target.dim() == out.dim() - 1 and target.shape == out.shape[:-1]:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))
    return F.cross_entropy(out, target)


def _same_shape(out: Tensor, target: Tensor, loss: str) -> Tensor:
    if out.shape == target.shape:
        return target
    if out.numel() == target.numel():
        return target.reshape(out.shape)  # (N,) targets for (N, 1) outputs and the like
    hint = (" (the model returns one value for the whole batch: train with batch_size=1)"
            if out.dim() == 0 else "")
    raise ValueError(
        f"{loss}: the model's output has shape {tuple(out.shape)} but the targets have shape "
        f"{tuple(target.shape)}{hint}"
    )


def _mse(out: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(out, _same_shape(out, target, "mse"))


def _bce(out: Tensor, target: Tensor) -> Tensor:
    target = _same_shape(out, target, "bce_with_logits")
    if not target.is_floating_point():
        target = target.to(out.dtype)
    return F.binary_cross_entropy_with_logits(out, target)


def make_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss function ``name`` as ``fn(output, target) -> scalar``.

    ``cross_entropy`` also takes (N, L, V) token logits with (N, L) targets; ``mse`` and
    ``bce_with_logits`` accept targets that differ from the output only by a reshape
    ((N,) vs (N, 1)) and refuse anything else rather than broadcasting silently.
    """
    table = {"cross_entropy": _cross_entropy, "mse": _mse, "bce_with_logits": _bce}
    if name not in table:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return table[name]


# --------------------------------------------------------------------------------------------
# forward / backward reports


@dataclass(frozen=True)
class LayerStats:
    """One module call in a forward pass: what it produced and how long it took.

    Statistics are of the first tensor of the output, in float32; ``std`` is the population
    standard deviation (no NaN for a single element); ``time_ms`` excludes the time spent
    computing the statistics of the calls inside it.
    """

    path: str
    type: str
    output_shape: tuple[int, ...] | None
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    time_ms: float
    finite: bool


@dataclass(frozen=True)
class ForwardReport:
    """Every module call of one forward pass, in call order (a container before its children)."""

    layers: tuple[LayerStats, ...]
    output_shape: tuple[int, ...] | None
    output_preview: str
    seconds: float
    training: bool


@dataclass(frozen=True)
class BackwardReport:
    """The loss of one backward pass and each gradient's norm; ``output`` names the tensor of
    a tuple/dict/dataclass output the loss was computed on ("" for a plain tensor)."""

    loss: float
    grad_norms: dict[str, float]
    output: str = ""


def _paths_by_module(model: nn.Module) -> dict[int, list[str]]:
    paths: dict[int, list[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), []).append(path)
    return paths


@contextmanager
def _mha_fastpath_disabled() -> Iterator[None]:
    """The MHA fast path skips sub-module hooks in eval (torchinfo #213): turn it off."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def _stats_vector(t: Tensor) -> Tensor:
    """[mean, std, min, max, zero_fraction, finite] as a float32 tensor on t's device."""
    x = t.detach()
    if x.is_complex():
        x = x.abs()
    x = x.to(torch.float32)
    if x.numel() == 0:
        nan = torch.tensor(float("nan"), device=x.device)
        return torch.stack([nan, nan, nan, nan, nan, torch.ones((), device=x.device)])
    flat = x.reshape(-1)
    return torch.stack([
        flat.mean(),
        flat.std(correction=0),
        flat.min(),
        flat.max(),
        (flat == 0).to(torch.float32).mean(),
        torch.isfinite(flat).all().to(torch.float32),
    ])


def _preview(t: Tensor | None, count: int = 6) -> str:
    if t is None:
        return "(no tensor output)"
    values = t.detach().reshape(-1)[:count].to("cpu")
    if values.is_floating_point() or values.is_complex():
        values = values.to(torch.float64)
        text = ", ".join(f"{v:.4g}" for v in values.tolist())
    else:
        text = ", ".join(str(v) for v in values.tolist())
    more = ", …" if t.numel() > count else ""
    if t.dim() == 0:
        return text
    return f"[{text}{more}]"


OUTPUT_KEEP_LIMIT = 1_000_000
"""A layer output with more elements than this is not kept by ``forward_report(outputs=...)``
(its statistics are in the report; keeping every activation of a big model costs memory)."""


def forward_report(model: nn.Module, x: Tensor, *,
                   outputs: dict[str, Tensor] | None = None) -> ForwardReport:
    """Run ``model(x)`` once with a hook on every module; report each call's output and time.

    When ``outputs`` is a dict it receives a detached copy of each call's first output
    tensor, keyed by the call's path (a tied module called twice fills both paths), for
    outputs of at most ``OUTPUT_KEEP_LIMIT`` elements: the values view shows them.

    Runs in the model's current mode (so BatchNorm in train mode does update its running
    statistics, as it would in PyTorch) under ``no_grad``. ``x`` is moved to the model's device
    and floating inputs cast to its dtype. On CUDA each hook synchronises so times are real.
    Hooks, ``training`` and the MHA fast path are restored even if the forward raises (the
    exception then propagates unchanged).
    """
    device = model_device(model)
    x = _match_input(x, device, model_dtype(model))
    paths = _paths_by_module(model)
    calls: dict[int, int] = {}
    rows: list[dict[str, Any]] = []
    open_rows: dict[int, list[tuple[int, float, float]]] = {}
    overhead = [0.0]
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    handles: list[Any] = []
    was_training = model.training
    flags = training_flags(model)

    def pre_hook(module: nn.Module, args: Any) -> None:
        h0 = time.perf_counter()
        key = id(module)
        n = calls.get(key, 0)
        calls[key] = n + 1
        names = paths.get(key, ["?"])
        rows.append({"path": names[n % len(names)], "type": type(module).__name__})
        if sync is not None:
            sync()
        now = time.perf_counter()
        overhead[0] += now - h0
        open_rows.setdefault(key, []).append((len(rows) - 1, now, overhead[0]))

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if sync is not None:
            sync()
        now = time.perf_counter()
        stack = open_rows.get(id(module))
        if not stack:
            return
        index, start, overhead_start = stack.pop()
        row = rows[index]
        row["time_ms"] = max(0.0, (now - start - (overhead[0] - overhead_start)) * 1e3)
        tensor = first_tensor(output)
        row["output_shape"] = tuple(tensor.shape) if tensor is not None else None
        row["stats"] = _stats_vector(tensor) if tensor is not None else None
        if outputs is not None and tensor is not None and tensor.numel() <= OUTPUT_KEEP_LIMIT:
            outputs[row["path"]] = tensor.detach().clone()
        overhead[0] += time.perf_counter() - now

    seen: set[int] = set()
    for module in model.modules():
        if id(module) in seen:
            continue
        seen.add(id(module))
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(hook))
    try:
        with _mha_fastpath_disabled(), torch.no_grad():
            start = time.perf_counter()
            output = model(x)
            if sync is not None:
                sync()
            seconds = max(0.0, time.perf_counter() - start - overhead[0])
    finally:
        for handle in handles:
            handle.remove()
        restore_training(flags)

    stats = [row.get("stats") for row in rows]
    present = [s for s in stats if s is not None]
    values = torch.stack(present).to("cpu").tolist() if present else []
    layers = []
    it = iter(values)
    for row, s in zip(rows, stats, strict=True):
        v = next(it) if s is not None else [math.nan] * 5 + [1.0]
        layers.append(LayerStats(
            path=row["path"], type=row["type"], output_shape=row.get("output_shape"),
            mean=v[0], std=v[1], min=v[2], max=v[3], zero_fraction=v[4],
            time_ms=row.get("time_ms", math.nan), finite=bool(v[5]),
        ))
    out = first_tensor(output)
    return ForwardReport(
        layers=tuple(layers),
        output_shape=tuple(out.shape) if out is not None else None,
        output_preview=_preview(out),
        seconds=seconds,
        training=was_training,
    )


def backward_report(model: nn.Module, x: Tensor, y: Tensor, loss_name: str) -> BackwardReport:
    """One forward, ``loss.backward()``, and every parameter's gradient L2 norm.

    Gradients *accumulate* into ``.grad`` as in PyTorch (call :func:`zero_grad` first for
    fresh ones): seeing them double on a second call is part of the lesson.
    """
    from tuilab.core.introspect import grad_norms

    loss_fn = make_loss(loss_name)
    device = model_device(model)
    x = _match_input(x, device, model_dtype(model))
    y = y.to(device)
    with torch.enable_grad():
        out, which = prediction(model(x))
        if out is None:
            raise ValueError("the model returned no floating-point tensor, so there is nothing "
                             "to differentiate")
        if y.is_floating_point():
            y = y.to(out.dtype)
        loss = loss_fn(out, y)
        loss.backward()
    return BackwardReport(loss=float(loss.detach().float().item()), grad_norms=grad_norms(model),
                          output=which)


# --------------------------------------------------------------------------------------------
# initialisation

INIT_SCHEMES = (
    "normal",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "constant",
    "zeros",
    "my_init",
)

_INIT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# (function name in the code echo, body lines with {value}/{std} filled in)
_INIT_CODE = {
    "normal": ("init_normal", ["nn.init.normal_(m.weight, mean=0, std={std})",
                               "if m.bias is not None: nn.init.zeros_(m.bias)"]),
    "xavier_uniform": ("xavier", ["nn.init.xavier_uniform_(m.weight)"]),
    "xavier_normal": ("xavier_normal", ["nn.init.xavier_normal_(m.weight)"]),
    "kaiming_uniform": ("kaiming", ["nn.init.kaiming_uniform_(m.weight, nonlinearity='relu')"]),
    "kaiming_normal": ("kaiming_normal",
                       ["nn.init.kaiming_normal_(m.weight, nonlinearity='relu')"]),
    "orthogonal": ("orthogonal", ["nn.init.orthogonal_(m.weight)"]),
    "constant": ("init_{value}", ["nn.init.constant_(m.weight, {value})"]),
    "zeros": ("init_zeros", ["nn.init.zeros_(m.weight)",
                             "if m.bias is not None: nn.init.zeros_(m.bias)"]),
    "my_init": ("my_init", ["nn.init.uniform_(m.weight, -10, 10)",
                            "m.weight.data *= m.weight.data.abs() >= 5"]),
}


def _init_fn(scheme: str, value: float, std: float) -> Callable[[nn.Module], None]:
    init = nn.init

    def weights(w: Tensor) -> None:
        if scheme == "normal":
            init.normal_(w, mean=0, std=std)
        elif scheme == "xavier_uniform":
            init.xavier_uniform_(w)
        elif scheme == "xavier_normal":
            init.xavier_normal_(w)
        elif scheme == "kaiming_uniform":
            init.kaiming_uniform_(w, nonlinearity="relu")
        elif scheme == "kaiming_normal":
            init.kaiming_normal_(w, nonlinearity="relu")
        elif scheme == "orthogonal":
            init.orthogonal_(w)
        elif scheme == "constant":
            init.constant_(w, value)
        elif scheme == "zeros":
            init.zeros_(w)
        else:  # my_init (seed 003)
            init.uniform_(w, -10, 10)
            w *= w.abs() >= 5

    zero_bias = scheme in ("normal", "zeros")

    def fn(m: nn.Module) -> None:
        if not isinstance(m, _INIT_TYPES):
            return
        weight = getattr(m, "weight", None)
        if not isinstance(weight, Tensor) or nn.parameter.is_lazy(weight):
            return
        weights(weight)
        bias = getattr(m, "bias", None)
        if zero_bias and isinstance(bias, Tensor):
            init.zeros_(bias)

    return fn


def apply_init(module: nn.Module, scheme: str, *, value: float = 42.0, std: float = 0.01,
               name: str = "net") -> str:
    """Re-initialise every Linear / Conv layer inside ``module`` with ``module.apply(fn)``.

    The functions are the seeds' own: ``normal`` is d2l's ``init_normal`` (N(0, std) weights,
    zero bias), ``constant`` is ``init_42`` (constant ``value``, zero bias), ``my_init`` is
    seed 003's uniform(-10, 10) with every |w| < 5 set to zero; the others are ``nn.init``'s
    schemes on the weights only. Runs under ``no_grad``; draws from the global RNG in the same
    order as the hand-written function, so the same seed gives the same weights.
    Returns the code: the function definition and ``<name>.apply(fn)``.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of: "
                         f"{', '.join(INIT_SCHEMES)}")
    if not (isinstance(std, (int, float)) and math.isfinite(std) and std > 0):
        raise ValueError(f"std must be a positive number, got {std!r}")
    if not (isinstance(value, (int, float)) and math.isfinite(value)):
        raise ValueError(f"value must be a finite number, got {value!r}")
    count = sum(
        1 for m in module.modules()
        if isinstance(m, _INIT_TYPES) and isinstance(getattr(m, "weight", None), Tensor)
        and not nn.parameter.is_lazy(m.weight)
    )
    with torch.no_grad():
        module.apply(_init_fn(scheme, float(value), float(std)))
    fn_name, body = _INIT_CODE[scheme]
    value_text = _number(value)
    fn_name = fn_name.format(value=f"{value:g}".replace(".", "_").replace("-", "m")
                             .replace("+", ""))
    lines = [f"def {fn_name}(m):",
             "    if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):"]
    lines += ["        " + line.format(value=value_text, std=_number(std)) for line in body]
    lines.append(f"{name}.apply({fn_name})  # {count} layer{'s' if count != 1 else ''}")
    return "\n".join(lines)


def _number(value: float) -> str:
    """A number as Python source that reads back to the very same float (`42`, `0.01`)."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


# --------------------------------------------------------------------------------------------
# hooks from the app

HOOK_KINDS = ("forward", "forward_pre", "backward")
HOOK_ACTIONS = ("shapes", "stats")


@dataclass(frozen=True)
class HookEvent:
    """One firing of a user hook: which module, which kind, and what it saw."""

    path: str
    kind: str
    message: str


@dataclass(frozen=True)
class HookInfo:
    id: int
    path: str
    kind: str
    action: str
    code: str


def _shapes(value: Any) -> str:
    if isinstance(value, Tensor):
        return str(tuple(value.shape))
    if isinstance(value, (tuple, list)):
        inner = [_shapes(v) for v in value]
        inner = [s for s in inner if s]
        return ", ".join(inner)
    if value is None:
        return "None"
    return ""


def _mean_std(value: Any) -> str:
    t = first_tensor(value)
    if t is None:
        return "no tensor"
    with torch.no_grad():
        x = t.detach().to(torch.float32)
        if x.numel() == 0:
            return "empty"
        mean, std = torch.stack([x.mean(), x.std(correction=0)]).tolist()
    return f"mean {mean:.4g} std {std:.4g}"


class HookKit:
    """Hooks the user adds from the app, reporting into a bounded, thread-safe queue.

    A hook fires in whatever thread runs the model (the training worker, a one-off forward),
    so it only appends a :class:`HookEvent` to a ``deque(maxlen=...)``; the UI drains it on a
    timer. When the queue is full the oldest events are dropped and counted in ``dropped``.
    """

    def __init__(self, maxlen: int = 1000) -> None:
        self._events: deque[HookEvent] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._handles: dict[int, tuple[HookInfo, Any]] = {}
        self._ids = itertools.count(1)
        self.dropped = 0
        # How often each module's hooks fired, in the order they first fired: the drain
        # empties the queue for the screen, this stays for a lesson to check.
        self.fired: dict[str, int] = {}

    def _emit(self, path: str, kind: str, message: str) -> None:
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self.dropped += 1
            self._events.append(HookEvent(path, kind, message))
            self.fired[path] = self.fired.get(path, 0) + 1

    def add(self, model: nn.Module, path: str, kind: str, action: str, *,
            target: str | None = None) -> int:
        """Register a ``kind`` hook doing ``action`` on the module at ``path``; returns its id.

        ``target`` is how the code line reaches that module (``net.features[0]``)."""
        from tuilab.core.introspect import module_at

        if kind not in HOOK_KINDS:
            raise ValueError(f"unknown hook kind {kind!r}; choose one of: {', '.join(HOOK_KINDS)}")
        if action not in HOOK_ACTIONS:
            raise ValueError(
                f"unknown hook action {action!r}; choose one of: {', '.join(HOOK_ACTIONS)}"
            )
        try:
            module = module_at(model, path)
        except KeyError as err:
            raise ValueError(err.args[0]) from None
        label = path or "(root)"
        emit = self._emit
        shapes = action == "shapes"

        if kind == "forward":
            def forward_hook(m: nn.Module, args: Any, output: Any) -> None:
                msg = (f"in {_shapes(args)} -> out {_shapes(output)}" if shapes
                       else _mean_std(output))
                emit(label, kind, msg)

            handle = module.register_forward_hook(forward_hook)
            register = "register_forward_hook"
        elif kind == "forward_pre":
            def pre_hook(m: nn.Module, args: Any) -> None:
                emit(label, kind, f"in {_shapes(args)}" if shapes else _mean_std(args))

            handle = module.register_forward_pre_hook(pre_hook)
            register = "register_forward_pre_hook"
        else:
            def backward_hook(m: nn.Module, grad_input: Any, grad_output: Any) -> None:
                msg = (f"grad_in {_shapes(grad_input)} grad_out {_shapes(grad_output)}"
                       if shapes else "grad_out " + _mean_std(grad_output))
                emit(label, kind, msg)

            handle = module.register_full_backward_hook(backward_hook)
            register = "register_full_backward_hook"
        hook_id = next(self._ids)
        if target is None:
            target = "net" if not path else f"net.get_submodule({path!r})"
        code = f"h{hook_id} = {target}.{register}(print_{action})"
        with self._lock:
            self._handles[hook_id] = (HookInfo(hook_id, path, kind, action, code), handle)
        return hook_id

    def remove(self, hook_id: int) -> str:
        """Remove one hook; returns the code line (``h3.remove()``)."""
        with self._lock:
            entry = self._handles.pop(hook_id, None)
        if entry is None:
            raise KeyError(f"no hook with id {hook_id}")
        entry[1].remove()
        return f"h{hook_id}.remove()"

    def remove_all(self) -> None:
        with self._lock:
            entries = list(self._handles.values())
            self._handles.clear()
        for _, handle in entries:
            handle.remove()

    def active(self) -> list[HookInfo]:
        with self._lock:
            return [info for info, _ in self._handles.values()]

    def drain(self) -> list[HookEvent]:
        """Every event since the last drain, oldest first."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events


# --------------------------------------------------------------------------------------------
# Grad-CAM (seed 002)


def _last_conv2d(model: nn.Module) -> str:
    found = None
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            found = path
    if found is None:
        raise ValueError("Grad-CAM needs a Conv2d layer and this model has none")
    return found


def grad_cam(model: nn.Module, image: Tensor, class_index: int,
             layer_path: str | None = None) -> Tensor:
    """Grad-CAM heat map (H, W) in [0, 1] for ``class_index`` on a (1, C, H, W) image.

    As seed 002 lays it out: a forward hook keeps the target layer's feature maps and puts a
    tensor hook on them that keeps their gradient; channel weights are the gradients' spatial
    mean; the map is relu(sum_c w_c A_c), upsampled to the image size and scaled to [0, 1].
    The default layer is the last Conv2d. Runs in eval mode; the gradient is taken with
    ``torch.autograd.grad`` so the parameters' ``.grad`` are left exactly as they were; hooks
    are removed and ``training`` restored even on failure.
    """
    from tuilab.core.introspect import module_at

    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"Grad-CAM takes one image of shape (1, C, H, W), got "
                         f"{tuple(image.shape)}")
    path = _last_conv2d(model) if layer_path is None else layer_path
    try:
        layer = module_at(model, path)
    except KeyError as err:
        raise ValueError(err.args[0]) from None
    saved: dict[str, Tensor] = {}

    def keep_grad(grad: Tensor) -> None:
        saved["grads"] = grad.detach()

    def keep_activation(m: nn.Module, args: Any, output: Any) -> None:
        out = first_tensor(output)
        if out is None:
            return
        saved["activations"] = out
        if out.requires_grad:
            out.register_hook(keep_grad)

    flags = training_flags(model)
    handle = layer.register_forward_hook(keep_activation)
    try:
        model.eval()
        x = _match_input(image, model_device(model), model_dtype(model)).detach()
        if x.is_floating_point():
            x.requires_grad_(True)  # so the feature maps need a gradient even if frozen
        with torch.enable_grad():
            out = first_tensor(model(x))
            if out is None or out.dim() != 2 or out.shape[0] != 1:
                raise ValueError(
                    "Grad-CAM needs class scores of shape (1, classes), the model returned "
                    f"{None if out is None else tuple(out.shape)}"
                )
            if not 0 <= class_index < out.shape[1]:
                raise ValueError(f"class_index {class_index} is out of range: the model has "
                                 f"{out.shape[1]} classes")
            acts = saved.get("activations")
            if acts is None:
                raise ValueError(f"layer {path!r} did not run in the forward pass")
            if acts.dim() != 4:
                raise ValueError(f"layer {path!r} outputs shape {tuple(acts.shape)}; Grad-CAM "
                                 f"needs (1, C, h, w) feature maps")
            if not acts.requires_grad:
                raise ValueError(f"layer {path!r}: its output does not depend on anything "
                                 f"that has a gradient")
            torch.autograd.grad(out[0, class_index], acts)
        grads = saved["grads"].to(torch.float32)
        a = acts.detach().to(torch.float32)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * a).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=tuple(image.shape[-2:]), mode="bilinear",
                            align_corners=False)[0, 0]
        cam = cam - cam.min()
        top = cam.max()
        cam = cam / top if top > 0 else torch.zeros_like(cam)
        return cam.to("cpu")
    finally:
        handle.remove()
        saved.clear()
        restore_training(flags)
