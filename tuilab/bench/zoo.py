"""Models nobody here wrote the counter for: the check that tuilab counts real architectures.

Hand-written ResNet- and ViT-style modules (attention written four ways: ``q @ k.transpose``,
``F.scaled_dot_product_attention``, ``torch.einsum``, ``torch.bmm``), a language model whose
head *is* its embedding's weight, and — when ``transformers`` is installed — GPT-2, BERT and
Llama built from tiny configs with random weights (never downloaded: ``HF_HUB_OFFLINE=1``).

``python -m tuilab.bench.zoo`` prints the README's table: tuilab's parameters and MACs
against ``sum(p.numel() for p in model.parameters())``, PyTorch's ``FlopCounterMode`` ÷ 2 on
a real CPU forward (attention by explicit matmul as its reference: its registry does not
price the CPU's fused SDPA kernel) and torchinfo (when installed; measuring only).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ATTENTIONS", "ResNetish", "TiedLM", "ViTish", "ZooModel", "reference_macs", "zoo"]

ATTENTIONS = ("matmul", "sdpa", "einsum", "bmm")


# --- hand-written models -----------------------------------------------------------------------
class BasicBlock(nn.Module):
    """ResNet's basic block: two 3×3 convs, BatchNorm, and a 1×1 shortcut when shapes change."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.down(x))


class ResNetish(nn.Module):
    """A small ResNet: stem, four stages of basic blocks, global pool, classifier."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        widths = (16, 32, 64, 128)
        blocks = []
        cin = 16
        for index, width in enumerate(widths):
            blocks.append(BasicBlock(cin, width, 1 if index == 0 else 2))
            blocks.append(BasicBlock(width, width, 1))
            cin = width
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Attention(nn.Module):
    """Multi-head self-attention written as functional code, in one of :data:`ATTENTIONS`."""

    def __init__(self, dim: int, heads: int, how: str) -> None:
        super().__init__()
        self.heads, self.how = heads, how
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scale = q.shape[-1] ** -0.5
        if self.how == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v)
        elif self.how == "einsum":
            weights = torch.einsum("nhqd,nhkd->nhqk", q, k).mul(scale).softmax(-1)
            out = torch.einsum("nhqk,nhkd->nhqd", weights, v)
        elif self.how == "bmm":
            flat = [t.reshape(n * self.heads, length, -1) for t in (q, k, v)]
            weights = torch.bmm(flat[0], flat[1].transpose(1, 2)).mul(scale).softmax(-1)
            out = torch.bmm(weights, flat[2]).reshape(n, self.heads, length, -1)
        else:
            out = ((q @ k.transpose(-2, -1)) * scale).softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, how: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, how)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTish(nn.Module):
    """A small ViT: conv patch embedding, class token, learned positions, blocks, head."""

    def __init__(self, how: str = "matmul", image: int = 32, patch: int = 4, dim: int = 64,
                 depth: int = 3, heads: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.image_size = image
        self.patch = nn.Conv2d(3, dim, patch, patch)
        tokens = (image // patch) ** 2 + 1
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.Sequential(*(ViTBlock(dim, heads, how) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


class TiedLM(nn.Module):
    """A tiny causal LM whose output layer is its embedding's weight (a weight tie)."""

    def __init__(self, vocab: int = 100, dim: int = 32, how: str = "matmul") -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.block = ViTBlock(dim, 4, how)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.embed(tokens)))


# --- the zoo -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZooModel:
    """A model to check: ``make(how)`` builds it, ``how`` being "native" (its own way of
    attending) or "matmul" (explicit products, the counter's reference)."""

    name: str
    make: Callable[[str], nn.Module]
    input_shape: tuple[int, ...]
    takes_tokens: bool = False
    tied: tuple[str, str] | None = None
    """Two parameter names that are one tensor, when the model ties a weight."""


def _transformers_models() -> list[ZooModel]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        return []
    from transformers.utils import logging

    logging.set_verbosity_error()

    def factory(config: str, model: str, **sizes: int) -> Callable[[str], nn.Module]:
        """A builder of transformers' ``model`` from a tiny ``config`` (random weights)."""

        def make(how: str) -> nn.Module:
            settings = getattr(transformers, config)(**sizes, attn_implementation=_hf(how))
            return getattr(transformers, model)(settings)

        return make

    layers = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
              "intermediate_size": 128, "vocab_size": 128, "max_position_embeddings": 64}
    gpt2 = factory("GPT2Config", "GPT2LMHeadModel", n_layer=2, n_embd=64, n_head=4,
                   vocab_size=128, n_positions=64, bos_token_id=0, eos_token_id=0)
    bert = factory("BertConfig", "BertModel", **layers)
    llama = factory("LlamaConfig", "LlamaForCausalLM", **layers, num_key_value_heads=2,
                    bos_token_id=0, eos_token_id=0)

    return [
        ZooModel("gpt2 (transformers)", gpt2, (2, 32), True,
                 ("lm_head.weight", "transformer.wte.weight")),
        ZooModel("bert (transformers)", bert, (2, 32), True),
        ZooModel("llama (transformers)", llama, (2, 32), True),
    ]


def _hf(how: str) -> str:
    return "sdpa" if how == "native" else "eager"


def zoo() -> list[ZooModel]:
    """Every model of the check; the transformers ones only where it is installed."""
    models = [
        ZooModel("resnet-style", lambda how: ResNetish(), (2, 3, 32, 32)),
        *(ZooModel(f"vit-style, {how}",
                   lambda h, how=how: ViTish(how if h == "native" else "matmul"), (2, 3, 32, 32))
          for how in ATTENTIONS),
        ZooModel("tied LM", lambda how: TiedLM(), (2, 16), True,
                 ("head.weight", "embed.weight")),
    ]
    return models + _transformers_models()


def build(entry: ZooModel, how: str) -> nn.Module:
    """The entry's model with seeded weights, in eval mode (as a summary runs it)."""
    torch.manual_seed(0)
    return entry.make(how).eval()


def example_input(entry: ZooModel) -> torch.Tensor:
    if entry.takes_tokens:
        return torch.randint(0, 100, entry.input_shape)
    return torch.rand(entry.input_shape)


def reference_macs(entry: ZooModel) -> int:
    """``FlopCounterMode`` ÷ 2 on a real CPU forward of the explicit-matmul variant."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build(entry, "matmul")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(example_input(entry))
    return counter.get_total_flops() // 2


def _torchinfo(entry: ZooModel) -> tuple[int, int] | None:
    try:
        import torchinfo
    except ImportError:
        return None
    stats = torchinfo.summary(build(entry, "native"), input_data=example_input(entry), verbose=0)
    return int(stats.total_params), int(stats.total_mult_adds)


def table() -> str:
    """The README's markdown table (tuilab counts each model as written; the reference its
    explicit-matmul variant)."""
    from tuilab.core.shapes import summarize_module

    lines = [
        "| model | params: PyTorch | params: tuilab | params: torchinfo | MACs: FlopCounter÷2 "
        "| MACs: tuilab | MACs: torchinfo |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in zoo():
        model = build(entry, "native")
        truth = sum(p.numel() for p in model.parameters())
        summary = summarize_module(model, entry.input_shape, takes_tokens=entry.takes_tokens)
        reference = reference_macs(entry)
        other = _torchinfo(entry)
        info_params, info_macs = (f"{other[0]:,}", f"{other[1]:,}") if other else ("–", "–")
        lines.append(
            f"| {entry.name} | {truth:,} | {summary.total_params:,} | {info_params} "
            f"| {reference:,} | {summary.total_macs:,} "
            f"({summary.total_macs / reference:.3f}×) | {info_macs} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - the README's command
    sys.stdout.write(table() + "\n")
