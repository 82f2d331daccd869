"""The seed texts' own modules, written the way the seeds write them.

Each class keeps the seed's attribute names and forward logic so that what the user sees in the
inspector matches the tutorial line by line. Where we differ from the seed the docstring says
why (e.g. batching, or a buffer instead of a plain tensor attribute).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MLP",
    "Conv2D",
    "FixedHiddenMLP",
    "MyDictDense",
    "MyLayer",
    "MyListDense",
    "MySequential",
    "Pool2D",
    "corr2d",
    "pool2d",
]


class MLP(nn.Module):
    """Seed 000/001: a block is a class that declares its layers and defines ``forward``.

    ``F.relu`` is the functional form: it has no parameters, so it needs no attribute and does
    not appear in the module tree (compare ``nn.Sequential(..., nn.ReLU(), ...)``).
    """

    def __init__(self, in_features: int = 20, hidden: int = 256, out_features: int = 10) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_features, hidden)
        self.out = nn.Linear(hidden, out_features)  # the text's name (seed 000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(x)))


class MySequential(nn.Module):
    """Seed 000: what ``nn.Sequential`` does, by hand.

    ``__init__`` stores each block under the key ``str(idx)`` in ``self._modules`` (the ordered
    dict every ``nn.Module`` keeps its children in), so ``parameters()``, ``.to()`` and
    ``state_dict()`` find them; ``forward`` walks ``_modules.values()`` in insertion order.
    """

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        for idx, module in enumerate(modules):
            self._modules[str(idx)] = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self._modules.values():
            x = block(x)
        return x


class FixedHiddenMLP(nn.Module):
    """Seed 000/003: arbitrary Python code in ``forward``.

    ``rand_weight`` is a constant (never trained); ``linear`` is used twice, i.e. two layers
    share one set of parameters (420 = 20·20 + 20); the ``while`` loop depends on the data, so
    this block cannot run on the meta device.

    The seed keeps ``rand_weight`` as a plain tensor attribute, which ``.to(device)`` would leave
    on the CPU. Here it is a non-persistent buffer: it moves and casts with the module but stays
    out of ``state_dict()`` and ``parameters()``, like the seed's constant.
    """

    rand_weight: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("rand_weight", torch.rand(20, 20), persistent=False)
        self.linear = nn.Linear(20, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        x = F.relu(x @ self.rand_weight + 1)
        x = self.linear(x)
        # The seed's loop never ends on inf/nan (inf / 2 == inf): refuse those up front.
        if not bool(torch.isfinite(x).all()):
            raise ValueError("FixedHiddenMLP: non-finite values; the halving loop would not end")
        while x.abs().sum() > 1:
            x /= 2
        return x.sum()


class MyLayer(nn.Module):
    """Seed 001: a layer without parameters (subtracts the mean of the whole input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean()


class MyListDense(nn.Module):
    """Seed 001: parameters held in an ``nn.ParameterList``.

    A plain Python list of ``Parameter`` would be invisible to ``parameters()``; the
    ``ParameterList`` registers them as ``params.0``, ``params.1``, ... The defaults reproduce the
    seed: three 4×4 matrices then one 4×1.
    """

    def __init__(
        self, in_features: int = 4, hidden: int = 4, depth: int = 3, out_features: int = 1
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"MyListDense: depth must be >= 1, got {depth}")
        shapes = [(in_features, hidden)] + [(hidden, hidden)] * (depth - 1)
        self.params = nn.ParameterList([nn.Parameter(torch.randn(*s)) for s in shapes])
        self.params.append(nn.Parameter(torch.randn(hidden, out_features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The seed uses torch.mm (2-D only); ``@`` also accepts batched inputs.
        for p in self.params:
            x = x @ p
        return x


class MyDictDense(nn.Module):
    """Seed 001: parameters held in an ``nn.ParameterDict``, one picked by name.

    The seed passes ``choice`` to ``forward``; a palette block has one input, so here ``choice``
    is a constructor argument. ``linear3`` is added with ``update`` exactly as the seed does.
    """

    def __init__(self, choice: str = "linear1") -> None:
        super().__init__()
        self.params = nn.ParameterDict(
            {
                "linear1": nn.Parameter(torch.randn(4, 4)),
                "linear2": nn.Parameter(torch.randn(4, 1)),
            }
        )
        self.params.update({"linear3": nn.Parameter(torch.randn(4, 2))})
        if choice not in self.params:
            allowed = ", ".join(self.params.keys())
            raise ValueError(f"MyDictDense: choice must be one of {allowed}; got {choice!r}")
        self.choice = choice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.params[self.choice]

    def extra_repr(self) -> str:
        return f"choice={self.choice!r}"


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """The seed casts with ``.float()``; keep float64/float16 as they are, promote integers."""
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def corr2d(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Seed 001: 2-D cross-correlation written as a double loop over output positions.

    Works over the last two dims of ``X`` (any leading batch dims) with a 2-D kernel ``K``.
    ``Y`` is built with ``torch.zeros`` on ``X``'s device and filled slice by slice, so it also
    runs on the meta device and autograd flows into ``K``.
    """
    h, w = K.shape
    X, K = _as_float(X), _as_float(K)
    dtype = torch.promote_types(X.dtype, K.dtype)
    out_h, out_w = X.shape[-2] - h + 1, X.shape[-1] - w + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"corr2d: kernel {h}×{w} is larger than the input {X.shape[-2]}×{X.shape[-1]}"
        )
    Y = torch.zeros((*X.shape[:-2], out_h, out_w), device=X.device, dtype=dtype)
    for i in range(out_h):
        for j in range(out_w):
            Y[..., i, j] = (X[..., i : i + h, j : j + w] * K).sum(dim=(-2, -1))
    return Y


class Conv2D(nn.Module):
    """Seed 001: a convolution layer built on ``corr2d``: one kernel and one scalar bias.

    The default 1×2 kernel is the seed's edge-detection example (it learns ``[1, -1]``).
    Input ``(..., H, W)`` → ``(..., H - kh + 1, W - kw + 1)``; no channels.
    """

    def __init__(self, kernel_h: int = 1, kernel_w: int = 2) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(kernel_h, kernel_w))
        self.bias = nn.Parameter(torch.randn(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return corr2d(x, self.weight) + self.bias


_POOL_MODES = ("max", "avg")


def pool2d(X: torch.Tensor, pool_h: int, pool_w: int, mode: str = "max") -> torch.Tensor:
    """Seed 001: max/avg pooling as a double loop, stride 1, over the last two dims of ``X``."""
    if mode not in _POOL_MODES:
        raise ValueError(f"pool2d: mode must be one of {', '.join(_POOL_MODES)}; got {mode!r}")
    X = _as_float(X)
    out_h, out_w = X.shape[-2] - pool_h + 1, X.shape[-1] - pool_w + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"pool2d: window {pool_h}×{pool_w} is larger than the input {X.shape[-2]}×{X.shape[-1]}"
        )
    Y = torch.zeros((*X.shape[:-2], out_h, out_w), device=X.device, dtype=X.dtype)
    for i in range(out_h):
        for j in range(out_w):
            window = X[..., i : i + pool_h, j : j + pool_w].flatten(-2)
            Y[..., i, j] = window.amax(dim=-1) if mode == "max" else window.mean(dim=-1)
    return Y


class Pool2D(nn.Module):
    """Seed 001: the ``pool2d`` function as a layer (no parameters), stride 1."""

    def __init__(self, pool_h: int = 2, pool_w: int = 2, mode: str = "max") -> None:
        super().__init__()
        if mode not in _POOL_MODES:
            raise ValueError(f"Pool2D: mode must be one of {', '.join(_POOL_MODES)}; got {mode!r}")
        self.pool_h, self.pool_w, self.mode = pool_h, pool_w, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool2d(x, self.pool_h, self.pool_w, self.mode)

    def extra_repr(self) -> str:
        return f"pool_size=({self.pool_h}, {self.pool_w}), mode={self.mode!r}"
