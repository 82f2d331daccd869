"""Containers whose ``forward`` rule the palette states.

``nn.ModuleList`` and ``nn.ModuleDict`` only *hold* modules (registering them so
``parameters()`` and ``.to()`` see them); they have no ``forward``. To put them in a model
built from the palette we give them the simplest rule: apply the children in order.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ModuleDict", "ModuleList", "ParamDictSelect", "ParamListChain"]


class ModuleList(nn.ModuleList):
    """``nn.ModuleList`` plus a forward rule: apply the modules in list order.

    ``ModuleList(a, b, c)(x) == c(b(a(x)))``; an empty list returns ``x``. Built from positional
    arguments (``nn.ModuleList`` takes one iterable).
    """

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__(modules)

    def __getitem__(self, idx: int | slice) -> nn.Module:
        # nn.ModuleList rebuilds a slice as ``self.__class__(list)``; ours takes star-args.
        if isinstance(idx, slice):
            return type(self)(*list(self._modules.values())[idx])
        return super().__getitem__(idx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self:
            x = module(x)
        return x


class ModuleDict(nn.ModuleDict):
    """``nn.ModuleDict`` plus a forward rule: apply the values in insertion order.

    ``ModuleDict({"fc": a, "act": b})(x) == b(a(x))``; an empty dict returns ``x``.
    """

    def __init__(self, modules: dict[str, nn.Module] | None = None) -> None:
        super().__init__(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.values():
            x = module(x)
        return x


class ParamListChain(nn.Module):
    """``count`` matrices in an ``nn.ParameterList``, multiplied in order (``x @ p`` each).

    Shapes: ``in×out`` then ``out×out``. Like the seed's ``MyListDense``, initialised with
    ``torch.randn``.
    """

    def __init__(self, count: int = 3, in_features: int = 4, out_features: int = 4) -> None:
        super().__init__()
        if count < 1:
            raise ValueError(f"ParamListChain: count must be >= 1, got {count}")
        shapes = [(in_features, out_features)] + [(out_features, out_features)] * (count - 1)
        self.params = nn.ParameterList([nn.Parameter(torch.randn(*s)) for s in shapes])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for p in self.params:
            x = x @ p
        return x


def _parse_keys(keys: str) -> list[str]:
    names = [k.strip() for k in keys.split(",") if k.strip()]
    if not names:
        raise ValueError("ParamDictSelect: keys must name at least one parameter, e.g. 'a,b'")
    if len(set(names)) != len(names):
        raise ValueError(f"ParamDictSelect: duplicate keys in {keys!r}")
    bad = [k for k in names if "." in k]
    if bad:
        raise ValueError(f"ParamDictSelect: keys may not contain '.': {', '.join(bad)}")
    return names


class ParamDictSelect(nn.Module):
    """One ``in×out`` matrix per key in an ``nn.ParameterDict``; forward uses ``choice`` only.

    Every matrix is a parameter (all are in ``state_dict()``), but only the chosen one gets a
    gradient: compare the seed's ``MyDictDense``.
    """

    def __init__(
        self,
        keys: str = "a,b",
        in_features: int = 4,
        out_features: int = 4,
        choice: str = "a",
    ) -> None:
        super().__init__()
        names = _parse_keys(keys)
        if choice not in names:
            raise ValueError(
                f"ParamDictSelect: choice must be one of {', '.join(names)}; got {choice!r}"
            )
        self.params = nn.ParameterDict(
            {k: nn.Parameter(torch.randn(in_features, out_features)) for k in names}
        )
        self.choice = choice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.params[self.choice]

    def extra_repr(self) -> str:
        return f"choice={self.choice!r}"
