"""Stand-ins for the models users bring (torchvision is not a test dependency): each has the
trait that made the real one open badly or run badly; and, at the end, real transformers
models from small configs.

- ``ResNetish``: BatchNorm in train mode, residual adds, an adaptive pool (any image size;
  the batch of one that tuilab used to guess fails BatchNorm once the map is 1x1).
- ``ViTish``: patches and a learned position table: only its ``image_size`` works.
- ``ConfigViTish``: the same, but the size is on a ``config`` object (transformers-style).
- ``TinyLM``: token ids in, a dataclass ``ModelOutput``-like result out (``logits`` second,
  after an optional ``loss``, as transformers orders it).
- ``DictNet``: returns a dict whose first tensor is not the prediction.
- ``TupleNet``: returns (features, logits)-style tuple whose first entry is an int tensor.
The file is importable as ``tests/core/realish_models.py:NAME`` (every NAME takes no arguments).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                   nn.BatchNorm2d(c_out))
                     if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class ResNetish(nn.Module):
    """ResNet-18's shape in miniature: stem /4, four stages /2 each, global pool, fc."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.layers = nn.Sequential(*(_Block(a, b, s) for a, b, s in
                                      ((8, 8, 1), (8, 16, 2), (16, 16, 2), (16, 16, 2))))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(self.layers(x)), 1))


class ViTish(nn.Module):
    """A ViT: a patch Conv, a class token, a fixed position table (only ``image_size`` fits)."""

    image_size = 64

    def __init__(self, dim: int = 32, patch: int = 16, num_classes: int = 10,
                 size: int | None = None) -> None:
        super().__init__()
        size = size or self.image_size
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, (size // patch) ** 2 + 1, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.encoder(x)[:, 0])


@dataclass
class _VisionConfig:
    img_size: int = 48
    num_channels: int = 3


class ConfigViTish(ViTish):
    """The ViT with its size on ``self.config.img_size`` (and no class attribute to read)."""

    image_size = None  # type: ignore[assignment]

    def __init__(self) -> None:
        config = _VisionConfig()
        super().__init__(size=config.img_size)
        self.config = config


@dataclass
class LMOutput:
    """Like transformers' CausalLMOutput: ``loss`` first (None without labels), then logits."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None


@dataclass
class _LMConfig:
    vocab_size: int = 50
    n_positions: int = 12
    n_embd: int = 16


class TinyLM(nn.Module):
    """A GPT-like model: token and position embeddings, one block, a tied head."""

    def __init__(self) -> None:
        super().__init__()
        cfg = _LMConfig()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.block = nn.TransformerEncoderLayer(cfg.n_embd, 2, 32, dropout=0.0,
                                                batch_first=True)
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        self.n_positions = cfg.n_positions

    def forward(self, ids: torch.Tensor) -> LMOutput:
        pos = torch.arange(ids.shape[1], device=ids.device)
        mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1], device=ids.device)
        h = self.block(self.wte(ids) + self.wpe(pos), src_mask=mask, is_causal=True)
        h = self.ln_f(h)
        return LMOutput(logits=self.lm_head(h), hidden_states=h)


class DictNet(nn.Module):
    """Returns ``{"features": ..., "logits": ...}``: the features come first."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(6, 12)
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = torch.relu(self.body(x))
        return {"features": features, "logits": self.head(features)}


class TupleNet(nn.Module):
    """Returns ``(argmax, scores)``: the first tensor is an int tensor, not differentiable."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.fc(x)
        return scores.argmax(-1), scores


class Pickyish(nn.Module):
    """Takes only a (N, 7, 9) input: nothing it says about itself tells (it must ask)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(7, 9))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], 7, 9) * self.scale).sum(-1)


# Real transformers models from small configs (random weights, built offline, never from a
# hub), opened in the app as `realish_models.py:gpt2` like any user's file.
_SMALL = {"vocab_size": 100}


def gpt2() -> nn.Module:
    import transformers

    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=16, n_positions=32, bos_token_id=0, eos_token_id=0,
        **_SMALL))


def llama() -> nn.Module:
    import transformers

    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, hidden_size=16,
        intermediate_size=32, max_position_embeddings=32, **_SMALL))


def bert() -> nn.Module:
    import transformers

    return transformers.BertForSequenceClassification(transformers.BertConfig(
        num_hidden_layers=1, num_attention_heads=2, hidden_size=16, intermediate_size=32,
        max_position_embeddings=32, num_labels=3, **_SMALL))
