"""A first input for a module nobody described (`tuilab file.py:NAME`, `tuilab.show(model)`).

Opening a model on an input it rejects shows an error the user did nothing to cause: a
ResNet in train mode fails BatchNorm on a batch of one, a ViT's position table only fits
its own image size. So the guess reads what the model says about itself, most specific
first, and each candidate is *tried* (the shape summary on the meta device: no memory, no
time) until one runs:

1. ``image_size`` / ``img_size`` on the model or on its ``config`` (transformers keeps it
   there), with the first Conv's ``in_channels``;
2. a first Conv: an adaptive pool behind it admits any size, so ImageNet's 224 first; else
   32, then the other common sizes;
3. a first Embedding: token ids, as many as its position table (``n_positions``,
   ``max_position_embeddings``, a second Embedding) allows, at most 16;
4. the first Linear's ``in_features``, an RNN's ``input_size``, a LayerNorm's width.

The batch is 2 when a BatchNorm is in train mode (it normalises over the batch), else 1.
When no candidate runs, :func:`guess_input` returns the first one with the failure (node and
message) so the app can ask for a shape while showing why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from tuilab.core.shapes import Summary

__all__ = ["Candidate", "InputGuess", "candidates", "guess_input"]

#: Image sizes tried after the one the model names, in this order.
IMAGE_SIZES = (224, 32, 64, 28, 96, 128, 256, 299)
#: Token sequences are at most this long (a summary of a long context shows nothing more).
TOKEN_LENGTH = 16
#: Candidates tried before giving up: each costs one meta forward (a CPU forward for a model
#: whose forward needs values, bounded by shapes.CPU_FALLBACK_BYTES).
MAX_TRIES = 6

_POSITION_NAMES = ("n_positions", "max_position_embeddings", "block_size", "context_length",
                   "max_seq_len", "seq_len", "n_ctx")
_SIZE_NAMES = ("image_size", "img_size", "input_size")


@dataclass(frozen=True)
class Candidate:
    """One input to try, and what in the model suggested it (shown to the user)."""

    shape: tuple[int, ...]
    takes_tokens: bool
    vocab_size: int | None
    reason: str


@dataclass(frozen=True)
class InputGuess:
    """The chosen input; ``ok`` is False when every candidate failed (``error_*`` say how)."""

    candidate: Candidate
    ok: bool
    tried: int
    error_path: str = ""
    error_message: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return self.candidate.shape


def _attribute(module: nn.Module, names: tuple[str, ...]) -> tuple[int, str] | None:
    """The first positive int (or square pair) named ``names`` on the module or its config."""
    for owner, prefix in ((module, ""), (getattr(module, "config", None), "config.")):
        if owner is None:
            continue
        for name in names:
            value = getattr(owner, name, None)
            if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1]:
                value = value[0]
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value, prefix + name
    return None


def _batch(module: nn.Module) -> int:
    from torch.nn.modules.batchnorm import _BatchNorm

    return 2 if any(isinstance(m, _BatchNorm) and m.training for m in module.modules()) else 1


def candidates(module: nn.Module) -> list[Candidate]:
    """Every input worth trying, most likely first (no forward runs here)."""
    unique: dict[tuple[tuple[int, ...], bool], Candidate] = {}
    for candidate in _candidates(module, _batch(module)):
        unique.setdefault((candidate.shape, candidate.takes_tokens), candidate)
    return list(unique.values())[:MAX_TRIES]


def _candidates(module: nn.Module, batch: int) -> Iterator[Candidate]:
    from torch import nn

    first = next((m for m in module.modules()
                  if isinstance(m, (nn.Embedding, nn.Linear, nn.modules.conv._ConvNd,
                                    nn.RNNBase, nn.TransformerEncoderLayer, nn.LayerNorm))),
                 None)
    if isinstance(first, nn.Embedding):
        yield _tokens(module, first, batch)
    elif isinstance(first, nn.modules.conv._ConvNd):
        yield from _images(module, first, batch)
    elif isinstance(first, nn.Linear):
        yield Candidate((batch, int(first.in_features)), False, None,
                        f"the first Linear's in_features ({first.in_features})")
    elif isinstance(first, nn.RNNBase):
        yield Candidate((batch, 8, int(first.input_size)), False, None,
                        f"the first {type(first).__name__}'s input_size ({first.input_size})")
    elif isinstance(first, nn.TransformerEncoderLayer):
        width = int(first.self_attn.embed_dim)
        yield Candidate((batch, 8, width), False, None, f"the encoder's width ({width})")
    elif isinstance(first, nn.LayerNorm) and first.normalized_shape:
        width = int(first.normalized_shape[-1])
        yield Candidate((batch, 8, width), False, None, f"the first LayerNorm's width ({width})")
    yield Candidate((batch, 1), False, None, "nothing in the model tells")


def _tokens(module: nn.Module, embedding: nn.Embedding, batch: int) -> Candidate:
    from torch import nn

    limit = _attribute(module, _POSITION_NAMES)
    others = [m.num_embeddings for m in module.modules()
              if isinstance(m, nn.Embedding) and m is not embedding]
    length = TOKEN_LENGTH
    why = ""
    if limit is not None and limit[0] < length:
        length, why = limit[0], f", {limit[1]} {limit[0]}"
    elif limit is None and others and min(others) < length:
        length, why = min(others), f", a position table of {min(others)}"
    vocab = int(embedding.num_embeddings)
    return Candidate((batch, length), True, vocab,
                     f"token ids for the first Embedding (vocabulary {vocab}{why})")


def _images(module: nn.Module, conv: nn.Module, batch: int) -> Iterator[Candidate]:
    from torch import nn

    dims = len(conv.kernel_size)  # type: ignore[arg-type]
    channels = int(conv.in_channels)  # type: ignore[arg-type]
    named = _attribute(module, _SIZE_NAMES)
    if named is not None:
        yield _image(batch, channels, named[0], dims, f"{named[1]} = {named[0]}")
    adaptive = any(isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                                  nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                                  nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d))
                   for m in module.modules())
    sizes = IMAGE_SIZES if adaptive else (32, *(s for s in IMAGE_SIZES if s != 32))
    if dims == 3:
        sizes = (16, 32, 64)
    for size in sizes:
        why = ("an adaptive pool takes any size; ImageNet's" if adaptive and size == 224
               else "a common size")
        yield _image(batch, channels, size, dims,
                     f"the first {type(conv).__name__}'s in_channels ({channels}), {why} {size}")


def _image(batch: int, channels: int, size: int, dims: int, reason: str) -> Candidate:
    return Candidate((batch, channels, *(size,) * dims), False, None, reason)


def guess_input(module: nn.Module,
                summarize: Callable[[Candidate], Summary] | None = None) -> InputGuess:
    """Try each candidate with the shape summary; the first that runs, or the first with why.

    ``summarize`` defaults to :func:`tuilab.core.shapes.summarize_module` (meta device; the
    module is left exactly as it was); tests pass their own.
    """
    if summarize is None:
        from tuilab.core.shapes import summarize_module

        def summarize(candidate: Candidate) -> Summary:
            return summarize_module(module, candidate.shape, takes_tokens=candidate.takes_tokens,
                                    vocab_size=candidate.vocab_size)

    tried = candidates(module)
    first_failure: tuple[str, str] | None = None
    for count, candidate in enumerate(tried, 1):
        summary = summarize(candidate)
        if summary.error is None:
            return InputGuess(candidate, True, count)
        if first_failure is None:
            hint = f" ({summary.error.hint})" if summary.error.hint else ""
            first_failure = (summary.error.path, summary.error.message + hint)
    path, message = first_failure or ("", "")
    return InputGuess(tried[0], False, len(tried), path, message)
