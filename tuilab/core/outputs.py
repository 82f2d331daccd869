"""Which tensor of a model's output is *the* output: for shapes, losses and gradients.

Real models rarely return one tensor: an LSTM returns ``(out, (h, c))``, a detector a dict,
transformers a ``ModelOutput`` (a dataclass that is also an ordered dict, ``loss`` first when
labels were given, then ``logits``). One walk, shared by the summary, the trainer, backward
and the teacher task, so they all agree on the tensor and can say which one they used:

- :func:`first_tensor`: the first tensor, depth first (a hook's view: the output's shape).
- :func:`prediction`: what a loss is computed on: a ``logits`` entry when there is one,
  otherwise the first floating-point tensor (an int ``argmax`` cannot be differentiated),
  with a label such as ``output.logits`` or ``output[1]`` saying which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from torch import Tensor

__all__ = ["first_tensor", "prediction", "tensors_in"]

_MAX_DEPTH = 6  # outputs nest a little (LSTM state tuples); a cycle must not hang the walk


def _children(value: Any) -> Iterator[tuple[str, Any]]:
    """(label suffix, item) of a container output, in its own order; nothing for a leaf."""
    if isinstance(value, Mapping):  # dicts, and ModelOutput (which drops its None fields)
        as_field = dataclasses.is_dataclass(value)
        for key, item in value.items():
            named = as_field and isinstance(key, str) and key.isidentifier()
            yield (f".{key}" if named else f"[{key!r}]"), item
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield f"[{index}]", item
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield f".{field.name}", getattr(value, field.name, None)


def tensors_in(value: Any, label: str = "output", depth: int = 0
               ) -> Iterator[tuple[str, Tensor]]:
    """Every tensor of an output, depth first, with the expression that reaches it."""
    if isinstance(value, Tensor):
        yield label, value
        return
    if depth >= _MAX_DEPTH:
        return
    for suffix, item in _children(value):
        yield from tensors_in(item, label + suffix, depth + 1)


def first_tensor(value: Any) -> Tensor | None:
    """The first tensor in a module's output (LSTM: ``out`` of ``(out, (h, c))``)."""
    return next((tensor for _, tensor in tensors_in(value)), None)


def prediction(value: Any) -> tuple[Tensor | None, str]:
    """The tensor a loss is computed on, and how to reach it (``""`` for a plain tensor).

    ``logits`` (a key or a field at the top level) wins: transformers puts ``loss`` before
    it. Otherwise the first floating-point tensor: a ``(argmax, scores)`` tuple trains on the
    scores. None when the output holds no floating-point tensor at all.
    """
    if isinstance(value, Tensor):
        return value, ""
    for suffix, item in _children(value):
        if suffix in (".logits", "['logits']") and isinstance(item, Tensor) \
                and item.is_floating_point():
            return item, "output" + suffix
    for label, tensor in tensors_in(value):
        if tensor.is_floating_point():
            return tensor, label
    return None, ""
