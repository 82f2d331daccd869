"""Everything the app's values view draws for one path, as plain data (no tensors leave here).

The view (`app/widgets/values.py`) must stay responsive on any model, so it asks for one
`ValueView` in a thread worker and draws strings and lists. This module joins the pieces of
`core.values` for it: the tensor at a path (a parameter, a buffer, a `.grad`, a layer output of
the last forward pass, or the input `x` / the output `out`), torch's own printout of it and of
its `.grad`, a header line, statistics, and the numbers for a heat map (2-D) or a histogram.

Large tensors are summarised by torch's printoptions (never printed whole), and their
statistics, heat map and histogram are computed from an evenly strided sample of at most
`SAMPLE_LIMIT` elements: AlexNet's 26M-element fc weight takes under a second on a busy 2-core
machine instead of ~12 s (exact statistics make a float64 copy of 200 MB).
Meta tensors (gpt2_xl) have no values and say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from tuilab.core.expressions import ExpressionError, TensorPath, parse_tensor_path
from tuilab.core.values import (
    format_tensor,
    heatmap_data,
    histogram_data,
    resolve,
    statistics,
    tensor_info,
)

SAMPLE_LIMIT = 1 << 18
"""Statistics, heat map and histogram read at most this many elements (evenly strided) of a
larger tensor: exact statistics of AlexNet's 26M-element fc weight take ~9 s on a busy 2-core
machine, its sample's ~0.1 s. The view says when it shows a sample."""
INPUT_NAMES = ("x", "input")
OUTPUT_NAME = "out"


@dataclass(frozen=True)
class ValueView:
    """One tensor as the values view shows it."""

    text: str
    """The path as written back (`2.weight[0, :5]`)."""
    kind: str
    """parameter, buffer, grad, output or input."""
    title: str
    """`parameter 2.weight · the same tensor as 4.weight`."""
    info: str
    """shape, dtype, device, requires_grad, grad_fn (empty for a missing .grad)."""
    values: str
    """`print(tensor)`, summarised by torch above its threshold."""
    grad: str | None
    """`print(tensor.grad)` beside a parameter (None where a tensor has no .grad to show)."""
    stats: str
    heat: list[list[float]]
    """The heat map in [0, 1] (empty without values)."""
    heat_range: tuple[float, float]
    edges: list[float]
    counts: list[int]
    is_matrix: bool
    """2-D: a heat map by default; otherwise a histogram."""
    paths: tuple[str, ...]
    """Every path the tensor lives at (a tied layer: several)."""
    target: str
    """The settable path without index (`2.weight`), "" when it cannot be set."""
    sampled: bool


def _special(path: TensorPath, model: nn.Module, input_tensor: torch.Tensor | None,
             outputs: Mapping[str, torch.Tensor] | None) -> tuple[str, torch.Tensor] | None:
    """The input `x` and the output `out`, unless the model has a module by that name."""
    if len(path.segments) != 1 or path.grad:
        return None
    name = path.segments[0]
    if name not in (*INPUT_NAMES, OUTPUT_NAME) or name in dict(model.named_children()):
        return None
    if name == OUTPUT_NAME:
        if not outputs or "" not in outputs:
            raise ExpressionError("the output is known after a forward pass (f)", where=name)
        return "output", outputs[""]
    if input_tensor is None:
        raise ExpressionError("no input yet", where=name)
    return "input", input_tensor


def _sample(tensor: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The tensor, or an evenly strided 2-D sample of at most SAMPLE_LIMIT elements."""
    if tensor.numel() <= SAMPLE_LIMIT or tensor.dim() == 0:
        return tensor, False
    m = tensor.detach().reshape(-1, tensor.shape[-1]) if tensor.dim() > 1 \
        else tensor.detach().reshape(1, -1)
    step = math.ceil(math.sqrt(m.numel() / SAMPLE_LIMIT))
    row_step = step if m.shape[0] > 1 else 1
    col_step = step if m.shape[0] > 1 else step * step
    return m[::row_step, ::col_step], True


def _stats_line(tensor: torch.Tensor, sample: torch.Tensor, sampled: bool) -> str:
    if tensor.is_meta:
        return f"{tensor.numel():,} elements · meta: no values"
    s = statistics(sample)
    if s.get("numel", 0) == 0:
        return "empty"
    count = (f"{tensor.numel():,} elements (statistics of a strided sample of "
             f"{int(s['numel']):,})" if sampled else f"{int(s['numel']):,} elements")
    line = (f"{count} · mean {s['mean']:.4g} · std {s['std']:.4g} · "
            f"min {s['min']:.4g} · max {s['max']:.4g} · norm {s['norm']:.4g} · "
            f"zeros {s['zero_fraction']:.1%}")
    if s["nan"] or s["inf"]:
        line += f" · nan {int(s['nan'])} · inf {int(s['inf'])}"
    return line


def value_view(model: nn.Module, text: str, *, outputs: Mapping[str, torch.Tensor] | None = None,
               input_tensor: torch.Tensor | None = None, rows: int = 16, cols: int = 48,
               bins: int = 20, linewidth: int = 80) -> ValueView:
    """The view of `text` (ExpressionError naming the path when nothing is there)."""
    path = parse_tensor_path(text)
    special = _special(path, model, input_tensor, outputs)
    grad_text: str | None = None
    target = ""
    if special is not None:
        kind, tensor = special
        if path.index is not None:
            try:
                tensor = tensor.detach()[path.index]
            except IndexError as error:
                raise ExpressionError(f"index out of range for shape "
                                      f"{tuple(special[1].shape)}: {error}",
                                      where=path.dotted) from None
        paths: tuple[str, ...] = (path.segments[0],)
        tensor_or_none: torch.Tensor | None = tensor
    else:
        found = resolve(model, path, outputs=outputs)
        kind, tensor_or_none, paths = found.kind, found.tensor, found.paths
        base = ".".join(s for s in (found.module_path, found.name) if s)
        if kind in ("parameter", "buffer"):
            target = base
        if kind == "parameter":
            grad = resolve(model, f"{base}.grad{path.index_text}", outputs=outputs).tensor
            grad_text = format_tensor(grad, linewidth=linewidth)
    shown = path.dotted
    if tensor_or_none is None:  # a .grad before any backward pass
        return ValueView(shown, kind, f"{kind} {shown}", "",
                         format_tensor(None, linewidth=linewidth), None, "no values",
                         [], (0.0, 0.0), [], [], False, paths, target, False)
    tensor = tensor_or_none
    title = f"{kind} {shown}"
    others = [p for p in paths if p.split("[")[0] != shown.split("[")[0]]
    if others:
        title += f" · the same tensor as {', '.join(others)}"
    sample, sampled = _sample(tensor)
    heat = heatmap_data(sample, rows=rows, cols=cols)
    flat = [v for row in heat for v in row if math.isfinite(v)]
    low, high = (min(flat), max(flat)) if flat else (0.0, 0.0)
    span = high - low
    heat01 = [[(v - low) / span if span and math.isfinite(v) else 0.5 for v in row]
              for row in heat]
    edges, counts = histogram_data(sample, bins=bins)
    return ValueView(shown, kind, title, tensor_info(tensor).line(),
                     format_tensor(tensor, linewidth=linewidth), grad_text,
                     _stats_line(tensor, sample, sampled), heat01, (low, high), edges, counts,
                     tensor.dim() == 2, paths, target, sampled)


def default_path(model: nn.Module, node_path: str,
                 outputs: Mapping[str, torch.Tensor] | None = None) -> str:
    """What the view opens on for a selected node: its first own parameter, else its first
    buffer, else its output of the last forward pass, else the first parameter below it."""
    try:
        module = model.get_submodule(node_path) if node_path else model
    except AttributeError:
        return ""
    dot = f"{node_path}." if node_path else ""
    for table in (module._parameters, module._buffers):
        for name, value in table.items():
            if value is not None:
                return dot + name
    if outputs and node_path in outputs:
        return node_path if node_path else OUTPUT_NAME
    for name, _ in module.named_parameters():
        return dot + name
    return node_path or OUTPUT_NAME


def input_row(tensor: torch.Tensor, text: str) -> tuple[str, ...]:
    """The Forward table's first row: the input itself (`FORWARD_COLUMNS`)."""
    shape = "(" + ", ".join(str(d) for d in tensor.shape) + ("," if tensor.dim() == 1 else "") \
        + ")"
    if tensor.is_meta or tensor.numel() == 0:
        return ("x (input)", text, shape, "–", "–", "–", "–", "–", "")
    s = statistics(tensor)
    return ("x (input)", text, shape, f"{s['mean']:.4g}", f"{s['std']:.4g}",
            f"{s['min']:.4g}", f"{s['max']:.4g}", f"{s['zero_fraction'] * 100:.1f}%", "")


def assignment_text(target: str, typed: str) -> str:
    """The assignment the user meant, from what they typed in the view's set box:
    `[0, 0] = 100` (one element of the target), `= EXPR` or a bare `EXPR` (the whole tensor),
    or a full `PATH = EXPR`."""
    typed = typed.strip()
    if typed.startswith("["):
        return f"{target}{typed}"
    if typed.startswith("="):
        return f"{target} {typed}"
    head, equals, _ = typed.partition("=")
    if equals:
        try:
            parse_tensor_path(head)
        except ExpressionError:
            pass  # `=` inside the expression (a keyword argument)
        else:
            return typed
    return f"{target} = {typed}"
