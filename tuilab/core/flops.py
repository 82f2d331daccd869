"""Multiply-accumulates counted at the operator level, charged to the module that ran them.

Counting per module type (a formula for Linear, one for Conv ...) misses everything that is
not one of those types: attention written as ``q @ k.transpose(-2, -1)``, ``torch.einsum``,
``F.scaled_dot_product_attention``, ``torch.bmm``, and foreign layers such as transformers'
``Conv1D`` (an ``addmm`` in a class of its own). So the counter watches the operators
themselves, as PyTorch's own ``torch.utils.flop_counter.FlopCounterMode`` does: a
``TorchDispatchMode`` sees every aten call below autograd — after ``matmul`` and ``einsum``
have decomposed into ``mm``/``bmm`` — and prices the matrix products with the formulas of
``torch.utils.flop_counter.flop_registry`` (reused, not rewritten). It runs on the meta
device, so a 1.6 B-parameter model costs no memory and no arithmetic.

Convention: one MAC is one multiply (and its add); PyTorch's formulas count FLOPs as two per
MAC, so they are halved. Only products are counted — ``mm``, ``addmm``, ``bmm``,
``baddbmm``, convolutions and attention (``QKᵀ`` and ``weights × V``); bias additions,
activations, norms, softmax and pooling are not. That keeps Linear (rows · in · out) and Conv
(output elements · in/groups · kernel) exactly where the per-layer formulas put them.

Who pays: the caller supplies ``where()``, the path of the module whose forward is running
(the top of its module stack), and an op is charged to that path only. A few modules keep a
formula of their own (:data:`OPAQUE`) because their kernels differ between devices (the CPU
runs LSTM as one fused op that no registry prices, meta runs it as ``addmm`` per step):
``where()`` returns None inside them and :func:`module_macs` prices their call instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, sdpa_flop_count

from tuilab.core.outputs import first_tensor

__all__ = ["OPAQUE", "MacCounter", "module_macs"]

_aten = torch.ops.aten


def _cpu_sdpa(query: Any, key: Any, value: Any, *args: Any, out_val: Any = None,
              **kwargs: Any) -> int:
    """The CPU's fused attention kernel, which PyTorch's registry does not price."""
    return sdpa_flop_count(tuple(query.shape), tuple(key.shape), tuple(value.shape))


# Forward operators only: the summary never runs a backward under the counter.
_FORMULAS: dict[Any, Callable[..., int]] = {
    op: formula for op, formula in flop_registry.items() if "backward" not in str(op)
}
_FORMULAS[_aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa

# A module type whose call is priced by :func:`module_macs`, not by the ops inside it.
OPAQUE: tuple[type[nn.Module], ...] = (nn.RNNBase, nn.RNNCellBase, nn.Bilinear)


class MacCounter(TorchDispatchMode):
    """Adds each matrix product's MACs to ``macs[where()]`` (skipped when that is None).

    Dispatch modes are thread-local, so a summary counting in a worker thread does not see a
    training step running in another. Counting never breaks the forward it watches: a formula
    that cannot read its arguments counts 0.
    """

    def __init__(self, where: Callable[[], str | None]) -> None:
        super().__init__()
        self.where = where
        self.macs: dict[str, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        formula = _FORMULAS.get(func._overloadpacket)
        if formula is None:
            # A composite op reaching here (e.g. with autograd off) may hide a product:
            # decompose it under this mode, as FlopCounterMode does.
            if func is not torch.ops.prim.device.default:
                with self:
                    result = func.decompose(*args, **kwargs)
                if result is not NotImplemented:
                    return result
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        path = self.where()
        if path is not None:
            try:
                count = int(formula(*args, **kwargs, out_val=out)) // 2
            except Exception:
                count = 0
            self.macs[path] = self.macs.get(path, 0) + count
        return out


# --- the modules that keep their own formula --------------------------------------------------
_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}


def module_macs(module: nn.Module, args: tuple[Any, ...]) -> int:
    """MACs of one call of an :data:`OPAQUE` module; 0 for any other module.

    RNN/LSTM/GRU: gates × (input + hidden) × hidden per step, per layer and direction (plus
    the LSTM projection); their cells: the same for one step; Bilinear: in1 · in2 · out per
    row. Biases are not counted.
    """
    inp = first_tensor(args)
    if inp is None:
        return 0
    if isinstance(module, nn.RNNBase):
        steps = inp.numel() // max(inp.shape[-1], 1)
        return steps * _rnn_step_macs(module)
    if isinstance(module, nn.RNNCellBase):
        gates = {nn.LSTMCell: 4, nn.GRUCell: 3}.get(type(module), 1)
        rows = inp.numel() // max(module.input_size, 1)
        return rows * gates * (module.input_size + module.hidden_size) * module.hidden_size
    if isinstance(module, nn.Bilinear):
        rows = inp.numel() // max(module.in1_features, 1)
        return rows * module.in1_features * module.in2_features * module.out_features
    return 0


def _rnn_step_macs(module: nn.RNNBase) -> int:
    gates = _GATES.get(module.mode, 1)
    directions = 2 if module.bidirectional else 1
    hidden = module.hidden_size
    proj = getattr(module, "proj_size", 0) or 0
    recurrent = proj or hidden
    total = 0
    for layer in range(module.num_layers):
        layer_in = module.input_size if layer == 0 else recurrent * directions
        total += gates * (layer_in + recurrent) * hidden + hidden * proj
    return total * directions

