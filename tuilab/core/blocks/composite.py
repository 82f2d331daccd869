"""Composite blocks in the d2l style: a few layers wired together in ``forward``.

They show what ``nn.Sequential`` cannot express on its own: a skip connection (Residual, TCN),
parallel branches concatenated (Inception), and attention with add & norm (Transformer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DepthwiseSeparableConv2d",
    "Inception",
    "Residual",
    "TCNBlock",
    "TransformerEncoderBlock",
]


class Residual(nn.Module):
    """ResNet's residual block (d2l 7.6): ``relu(F(x) + x)``.

    The main path is conv3×3(stride)-BN-ReLU-conv3×3-BN. The skip path adds ``x`` itself, so its
    shape must match; when channels or stride change, ``use_1x1conv`` puts a 1×1 conv with the
    same stride on the skip path. Input ``(N, C, H, W)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        use_1x1conv: bool = False,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if not use_1x1conv and (in_channels != out_channels or stride != 1):
            raise ValueError(
                "Residual: the skip path adds the input unchanged, so it needs "
                "in_channels == out_channels and stride == 1; set use_1x1conv=True otherwise"
            )
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv3 = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride)
            if use_1x1conv
            else None
        )
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.conv3 is not None:
            x = self.conv3(x)
        return F.relu(y + x)


class Inception(nn.Module):
    """GoogLeNet's Inception block (d2l 7.4): four parallel paths, concatenated on channels.

    Paths: 1×1; 1×1 → 3×3 (pad 1); 1×1 → 5×5 (pad 2); 3×3 max-pool (stride 1, pad 1) → 1×1.
    Every path keeps H and W, so the output has ``c1 + c2 + c3 + c4`` channels. The 1×1 convs
    before the big kernels cut channels first, which is what keeps the block cheap.
    Defaults are GoogLeNet's first Inception block (192 → 256 channels).
    """

    def __init__(
        self,
        in_channels: int = 192,
        c1: int = 64,
        c2_reduce: int = 96,
        c2: int = 128,
        c3_reduce: int = 16,
        c3: int = 32,
        c4: int = 32,
    ) -> None:
        super().__init__()
        self.p1_1 = nn.Conv2d(in_channels, c1, kernel_size=1)
        self.p2_1 = nn.Conv2d(in_channels, c2_reduce, kernel_size=1)
        self.p2_2 = nn.Conv2d(c2_reduce, c2, kernel_size=3, padding=1)
        self.p3_1 = nn.Conv2d(in_channels, c3_reduce, kernel_size=1)
        self.p3_2 = nn.Conv2d(c3_reduce, c3, kernel_size=5, padding=2)
        self.p4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p1 = F.relu(self.p1_1(x))
        p2 = F.relu(self.p2_2(F.relu(self.p2_1(x))))
        p3 = F.relu(self.p3_2(F.relu(self.p3_1(x))))
        p4 = F.relu(self.p4_2(self.p4_1(x)))
        return torch.cat((p1, p2, p3, p4), dim=1)


class TCNBlock(nn.Module):
    """One residual block of a Temporal Convolutional Network (seed 002).

    Causal: each conv is preceded by a left-only zero pad of ``(k - 1) · dilation`` steps
    (``nn.ConstantPad1d``, visible in the tree), so the output keeps length L and output ``t``
    sees only inputs ``≤ t``. Dilation widens the receptive field without more parameters.
    Residual: a 1×1 ``downsample`` conv matches channels when they differ. Input ``(N, C, L)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 16,
        kernel_size: int = 3,
        dilation: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        left = (kernel_size - 1) * dilation
        self.pad1 = nn.ConstantPad1d((left, 0), 0.0)
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        self.relu1 = nn.ReLU()
        self.dropout1 = nn.Dropout(dropout)
        self.pad2 = nn.ConstantPad1d((left, 0), 0.0)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, dilation=dilation)
        self.relu2 = nn.ReLU()
        self.dropout2 = nn.Dropout(dropout)
        self.downsample = (
            nn.Conv1d(in_channels, out_channels, kernel_size=1)
            if in_channels != out_channels
            else None
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout1(self.relu1(self.conv1(self.pad1(x))))
        y = self.dropout2(self.relu2(self.conv2(self.pad2(y))))
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(y + res)


class TransformerEncoderBlock(nn.Module):
    """A Transformer encoder block written out (d2l 10.7), post-norm like the original paper.

    ``x = norm1(x + dropout(attention(x, x, x)))``, then
    ``x = norm2(x + dropout(ffn(x)))`` (d2l's AddNorm). Compare ``nn.TransformerEncoderLayer``,
    which does the same in one class. Input ``(N, L, d_model)`` (``batch_first=True``).
    """

    def __init__(
        self,
        d_model: int = 64,
        nhead: int = 4,
        dim_feedforward: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if nhead < 1 or d_model % nhead:
            raise ValueError(
                f"TransformerEncoderBlock: d_model ({d_model}) must be divisible by nhead ({nhead})"
            )
        self.attention = nn.MultiheadAttention(d_model, nhead, dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, dim_feedforward),
            nn.ReLU(),
            nn.Linear(dim_feedforward, d_model),
        )
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn, _ = self.attention(x, x, x, need_weights=False)
        x = self.norm1(x + self.dropout(attn))
        return self.norm2(x + self.dropout(self.ffn(x)))


class DepthwiseSeparableConv2d(nn.Module):
    """Depthwise-separable convolution (seed 002; MobileNet).

    ``depthwise``: one k×k filter per input channel (``groups=in_channels``), spatial mixing
    only; ``pointwise``: a 1×1 conv mixing channels. Parameters
    ``C_in·k² + C_in + C_in·C_out + C_out`` instead of ``C_in·C_out·k² + C_out``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 16,
        kernel_size: int = 3,
        padding: int = 1,
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=in_channels,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))
