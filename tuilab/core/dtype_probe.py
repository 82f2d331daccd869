"""Will this model's kernels run in that dtype on that device? Asked before a run, not during it.

Why: on some PyTorch CPU builds (and CPUs) a recurrent layer in bfloat16 or float16 has no
kernel — oneDNN answers "could not create a primitive descriptor for the LSTM forward
propagation primitive", or an op is "not implemented for 'BFloat16'" — and that surfaced as a
run failing at step 1 (or a backward failing in the middle of a lesson). Whether it happens
depends on the build and the CPU, not on the model's values, so one tiny run of each such layer
answers the question for every model that holds one like it.

How:

* :func:`check_dtype` walks the model and, for each layer of a kind whose kernels vary by build
  (:data:`PROBED`: the recurrent layers and cells, which go through oneDNN on the CPU), runs a
  *fresh* layer of the same class and arguments — not the user's weights, which may be large
  and carry hooks — on a one-sample, two-step input: forward under ``no_grad``, as the lab's
  forward pass runs, or, where the caller will train, forward with gradients and backward.
  The two differ: torch 2.13's CPU build, on a Xeon, runs an LSTM under float16 autocast
  without gradients but has no oneDNN primitive for its training forward; on an AMD EPYC it
  has neither (both measured). Under ``autocast`` the layer
  keeps float32 weights and runs in an autocast region, as a mixed-precision run does.
* A failure is only the dtype's fault if the same probe passes in float32 on that device;
  when both fail the probe has nothing to say (the run will report its own error).
* Verdicts are cached per (layer class, arguments, dtype, device, autocast, backward), so a
  second run, or a model with fifty identical LSTMs, costs a dictionary lookup.
* A refusal is one :class:`~tuilab.core.errors.ModeError` sentence: the module's path and type,
  the dtype and device, torch's own message after ours, and what to do instead.

The lab's precision and device changes (``runtime.change_mode``), the start of a run in the
lab (``Lab.start_run``, before the run enters the history), the trainer's ``_prepare``
(``tuilab train``) and ``tuilab forward --backward`` call it. Only torch and the
standard library are imported here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from tuilab.core.errors import ModeError
from tuilab.core.outputs import first_tensor

__all__ = ["PROBED", "check_dtype", "clear_cache", "probe_layer"]

Key = tuple[Any, ...]


def _rnn(module: nn.Module) -> tuple[Key, Callable[[], nn.Module], tuple[int, ...]]:
    """A fresh standard layer with ``module``'s arguments, and its input shape."""
    m: Any = module
    mode = m.mode
    args: dict[str, Any] = dict(input_size=m.input_size, hidden_size=m.hidden_size,
                                num_layers=m.num_layers, bias=m.bias,
                                batch_first=m.batch_first, bidirectional=m.bidirectional)
    if mode == "LSTM":
        cls: type[nn.Module] = nn.LSTM
        args["proj_size"] = m.proj_size
    elif mode == "GRU":
        cls = nn.GRU
    else:
        cls = nn.RNN
        args["nonlinearity"] = "relu" if mode == "RNN_RELU" else "tanh"
    shape = (1, 2, m.input_size) if m.batch_first else (2, 1, m.input_size)
    return (cls.__name__, *sorted(args.items())), lambda: cls(**args), shape


def _cell(module: nn.Module) -> tuple[Key, Callable[[], nn.Module], tuple[int, ...]]:
    m: Any = module
    args: dict[str, Any] = dict(input_size=m.input_size, hidden_size=m.hidden_size, bias=m.bias)
    if isinstance(module, nn.LSTMCell):
        cls: type[nn.Module] = nn.LSTMCell
    elif isinstance(module, nn.GRUCell):
        cls = nn.GRUCell
    else:
        cls = nn.RNNCell
        args["nonlinearity"] = m.nonlinearity
    return (cls.__name__, *sorted(args.items())), lambda: cls(**args), (1, m.input_size)


PROBED: dict[type[nn.Module], Callable[[nn.Module],
                                       tuple[Key, Callable[[], nn.Module], tuple[int, ...]]]] = {
    nn.RNNBase: _rnn,
    nn.RNNCellBase: _cell,
}
"""Layer kinds whose kernels come and go with the build: the base class, and how to make a
fresh copy (its cache key, a factory and an input shape) of one of them."""

_VERDICTS: dict[Key, str | None] = {}
_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every verdict (after PyTorch's kernels changed — in practice, in tests)."""
    with _LOCK:
        _VERDICTS.clear()


def _run_once(factory: Callable[[], nn.Module], shape: tuple[int, ...], dtype: torch.dtype,
              device: torch.device, *, autocast: bool, backward: bool) -> str | None:
    """Run a fresh layer once; None if it worked, else ``"forward: msg"`` / ``"backward: msg"``."""
    from tuilab.core.runtime import error_line

    stage = "forward"
    weights = torch.float32 if autocast else dtype
    try:
        region = torch.autocast(device.type, dtype=dtype) if autocast else nullcontext()
        # Seeded, and in a fork of the random state: a probe never moves the caller's stream.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            layer = factory().to(device=device, dtype=weights)
            x = torch.randn(shape, device=device, dtype=weights)
            with torch.set_grad_enabled(backward), region:
                out = first_tensor(layer(x))
            if backward and out is not None:
                stage = "backward"
                out.float().sum().backward()
        return None
    except Exception as err:
        return f"{stage}: {error_line(err)}"


def probe_layer(module: nn.Module, dtype: torch.dtype, device: torch.device, *,
                autocast: bool = False, backward: bool = False) -> str | None:
    """The cached verdict for a layer like ``module``: None when it runs, else the stage
    and torch's message. Layers of kinds not in :data:`PROBED` always pass."""
    maker = next((make for kind, make in PROBED.items() if isinstance(module, kind)), None)
    if maker is None:
        return None
    args, factory, shape = maker(module)
    key = (*args, str(dtype), str(device), autocast, backward)
    with _LOCK:
        if key in _VERDICTS:
            return _VERDICTS[key]
    verdict = _run_once(factory, shape, dtype, device, autocast=autocast, backward=backward)
    if verdict is not None and _run_once(factory, shape, torch.float32, device,
                                         autocast=False, backward=backward) is not None:
        verdict = None  # fails in float32 too: not the dtype's doing, nothing to say here
    with _LOCK:
        _VERDICTS[key] = verdict
    return verdict


def check_dtype(model: nn.Module, dtype: torch.dtype, device: str | torch.device, *,
                backward: bool = False, autocast: bool = False, name: str = "net") -> None:
    """Raise ModeError if a layer of ``model`` cannot run in ``dtype`` on ``device``.

    ``backward``: the caller will train, so the backward pass must run too. ``autocast``:
    the weights stay float32 and the layers run under ``torch.autocast(device, dtype)``.
    float32 without autocast is PyTorch's reference and is not probed; neither is a model
    on the meta device (it has nothing to run).
    """
    device = torch.device(device)
    if device.type == "meta" or (dtype is torch.float32 and not autocast):
        return
    for path, module in model.named_modules():
        verdict = probe_layer(module, dtype, device, autocast=autocast, backward=backward)
        if verdict is not None:
            raise ModeError(_refusal(path or name, module, dtype, device, verdict,
                                     autocast=autocast, backward=backward), where="dtype")


def _refusal(path: str, module: nn.Module, dtype: torch.dtype, device: torch.device,
             verdict: str, *, autocast: bool, backward: bool) -> str:
    stage, message = verdict.split(": ", 1)
    dtype_text = str(dtype).replace("torch.", "")
    how = (f"under {dtype_text} autocast" if autocast else f"in {dtype_text}")
    what = ("runs forward but cannot train (backward)" if stage == "backward"
            else "cannot train" if backward else "cannot run")
    lower = message.lower()
    library = (" (oneDNN)" if any(word in lower for word in ("onednn", "mkldnn",
                                                             "primitive descriptor")) else "")
    advice = "Use float32" + (", or run it on cuda" if device.type == "cpu" else "") + "."
    return (f"{path} ({type(module).__name__}) {what} {how} on {device} in this PyTorch "
            f"build{library}: {message.rstrip('.')}. {advice}")

