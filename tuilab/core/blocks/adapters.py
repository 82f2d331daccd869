"""torch.nn layers whose forward takes two or three inputs, adapted to a one-input chain.

A model in the builder is a chain (Sequential-like): each block gets the previous block's
output. Bilinear, TransformerDecoderLayer and MultiheadAttention need a second input in plain
PyTorch; these subclasses feed the same tensor to every input unless a second one is given,
so they keep their class name, parameters and state_dict keys and still drop into a chain.
"""

from __future__ import annotations

import torch
from torch import nn


class Bilinear(nn.Bilinear):
    """y = x1ᵀ A x2 + b with x2 defaulting to x1 (in1_features must equal in2_features then)."""

    def forward(self, input1: torch.Tensor, input2: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(input1, input1 if input2 is None else input2)


class TransformerDecoderLayer(nn.TransformerDecoderLayer):
    """A decoder layer whose memory defaults to its own input (self-conditioned decoding)."""

    def forward(  # type: ignore[override]
        self, tgt: torch.Tensor, memory: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        return super().forward(tgt, tgt if memory is None else memory, **kwargs)


class MultiheadAttention(nn.MultiheadAttention):
    """Self-attention: query, key and value are the input; returns the attended output only."""

    def forward(  # type: ignore[override]
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        key = query if key is None else key
        value = key if value is None else value
        kwargs.setdefault("need_weights", False)
        output, _ = super().forward(query, key, value, **kwargs)
        return output
