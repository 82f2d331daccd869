"""Small glue modules that let a model stay a plain ``nn.Sequential``.

``nn.LSTM`` returns a tuple, a classifier wants the last time step, a TCN wants channels
before length: each of these is one line of ``forward`` in a hand-written model, and one of
these modules in a Sequential built from the palette.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "CausalTransformerEncoder",
    "LastTimeStep",
    "PositionalEmbedding",
    "SelectOutput",
    "Transpose",
]


class SelectOutput(nn.Module):
    """Pick one tensor of a recurrent layer's ``(output, h_n)`` / ``(output, (h_n, c_n))``.

    ``which``: ``"output"`` (every time step), ``"h_n"`` (the last hidden state of each
    layer and direction) or ``"c_n"`` (LSTM's last cell state). Anything that is not a tuple
    or list passes through unchanged, so the block is harmless after a layer that returns one
    tensor.
    """

    def __init__(self, which: str = "output") -> None:
        super().__init__()
        if which not in ("output", "h_n", "c_n"):
            raise ValueError(f"which must be 'output', 'h_n' or 'c_n', got {which!r}")
        self.which = which

    def forward(self, x: torch.Tensor | tuple | list) -> torch.Tensor:
        if not isinstance(x, (tuple, list)):
            return x
        if self.which == "output":
            return x[0]
        state = x[1]
        if isinstance(state, (tuple, list)):  # LSTM: (h_n, c_n)
            return state[0] if self.which == "h_n" else state[1]
        if self.which == "c_n":
            raise ValueError("c_n is LSTM's cell state; this layer returns (output, h_n) only")
        return state

    def extra_repr(self) -> str:
        return f"which={self.which!r}"


class LastTimeStep(nn.Module):
    """``(N, L, H) → (N, H)``: keep the last step of a batch-first sequence (many-to-one)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1, :]


class Transpose(nn.Module):
    """Swap two dims, e.g. ``(N, L, C) ↔ (N, C, L)`` between sequence data and ``Conv1d``."""

    def __init__(self, dim0: int = 1, dim1: int = 2) -> None:
        super().__init__()
        self.dim0, self.dim1 = dim0, dim1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.dim0, self.dim1)

    def extra_repr(self) -> str:
        return f"dim0={self.dim0}, dim1={self.dim1}"


class PositionalEmbedding(nn.Module):
    """Learned position embedding (BERT/GPT style): adds ``position[t]`` to step ``t``.

    Attention itself is order-blind; this gives each position its own trainable vector.
    Input ``(N, L, d_model)`` with ``L ≤ max_len``.
    """

    def __init__(self, max_len: int = 512, d_model: int = 64) -> None:
        super().__init__()
        self.max_len = max_len
        self.position = nn.Embedding(max_len, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.max_len:
            raise ValueError(
                f"PositionalEmbedding: sequence length {length} exceeds max_len {self.max_len}"
            )
        return x + self.position(torch.arange(length, device=x.device))


class CausalTransformerEncoder(nn.TransformerEncoder):
    """``nn.TransformerEncoder`` of ``num_layers`` copies of one ``TransformerEncoderLayer``.

    A subclass, so the tree shows ``layers.0``, ``layers.1``, ... like the built-in. With
    ``causal=True`` forward builds the square subsequent mask (``-inf`` above the diagonal), so
    step ``t`` attends only to steps ``≤ t``, as in a language model. Input ``(N, L, d_model)``.
    """

    def __init__(
        self,
        d_model: int = 64,
        nhead: int = 4,
        dim_feedforward: int = 256,
        num_layers: int = 2,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        causal: bool = False,
    ) -> None:
        if activation not in ("relu", "gelu"):
            raise ValueError(
                f"CausalTransformerEncoder: activation must be relu or gelu; got {activation!r}"
            )
        if nhead < 1 or d_model % nhead:
            raise ValueError(
                f"CausalTransformerEncoder: d_model ({d_model}) must be divisible by "
                f"nhead ({nhead})"
            )
        layer = nn.TransformerEncoderLayer(
            d_model,
            nhead,
            dim_feedforward,
            dropout,
            activation,
            batch_first=True,
            norm_first=norm_first,
        )
        super().__init__(layer, num_layers, enable_nested_tensor=False)
        self.causal = causal

    def forward(
        self,
        src: torch.Tensor,
        mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool | None = None,
    ) -> torch.Tensor:
        if self.causal and mask is None:
            mask = nn.Transformer.generate_square_subsequent_mask(
                src.shape[1], device=src.device, dtype=src.dtype
            )
            is_causal = True
        return super().forward(
            src, mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal
        )

    def extra_repr(self) -> str:
        return f"causal={self.causal}"
