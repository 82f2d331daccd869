"""Find a tensor by its path, slice it, and describe it the way PyTorch prints it.

The values view (app) and `tuilab forward --show` (CLI) both start from a path the user
writes (`0.weight`, `net[2].bias.data`, `0.weight.grad[0, :5]`, a buffer such as
`1.running_mean`, or a layer's name for its output in the last forward pass) and need its
values: `resolve` finds it, `format_tensor` prints it with torch's own repr (summarised by
torch's printoptions threshold, never printed whole), `tensor_info` gives the header
(shape, dtype, device, requires_grad, grad_fn), `statistics`, `heatmap_data` and
`histogram_data` give plain numbers for the UI to draw. Meta tensors have no values and say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tuilab.core.expressions import ExpressionError, TensorPath, parse_tensor_path

PRINT_THRESHOLD = 1000
"""Above this many elements torch's repr summarises (its own default threshold)."""
EDGE_ITEMS = 3
JSON_VALUES_LIMIT = 10_000
"""`to_nested` gives values for at most this many elements (None beyond)."""


@dataclass(frozen=True)
class Resolved:
    """A path found on a model: the tensor (sliced when the path had an index) and what it is.

    `kind` is "parameter", "buffer", "grad" or "output"; `paths` every dotted path at which
    the same tensor lives (a tied layer has several: ["2.weight", "4.weight"]).
    """

    text: str
    tensor: torch.Tensor | None
    kind: str
    module_path: str
    name: str
    paths: tuple[str, ...]


def _module(model: nn.Module, path: str, text: str) -> nn.Module:
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        raise ExpressionError(f"no module {path!r} in the model", where=text) from None


def tied_paths(model: nn.Module, tensor: torch.Tensor) -> tuple[str, ...]:
    """Every `module.name` path at which `tensor` is a parameter or buffer (ties included)."""
    found = [name for name, p in model.named_parameters(remove_duplicate=False) if p is tensor]
    found += [name for name, b in model.named_buffers(remove_duplicate=False) if b is tensor]
    return tuple(found)


def resolve(model: nn.Module, text: str | TensorPath, *,
            outputs: Mapping[str, torch.Tensor] | None = None) -> Resolved:
    """The tensor at `text`: a parameter, buffer, `.grad`, or a layer output from `outputs`.

    Raises ExpressionError naming the path when nothing is there (a `.grad` that is None is
    found, with `tensor=None`: "no gradient yet" is an answer, not an error).
    """
    path = parse_tensor_path(text) if isinstance(text, str) else text
    shown = path.dotted
    module_path, name = path.module_path, path.name
    tensor: torch.Tensor | None
    owner = _module_or_none(model, module_path)
    if owner is not None and name in owner._parameters:
        kind, tensor = "parameter", owner._parameters[name]
    elif owner is not None and name in owner._buffers:
        kind, tensor = "buffer", owner._buffers[name]
    else:
        full = ".".join(path.segments)
        if outputs is not None and full in outputs:
            if path.grad:
                raise ExpressionError("a layer output keeps no .grad here", where=shown)
            tensor = _index(outputs[full], path, shown)
            return Resolved(shown, tensor, "output", full, "", (full,))
        if owner is None:
            _module(model, module_path, shown)  # raises "no module"
        if _module_or_none(model, full) is not None:
            raise ExpressionError("is a module; its output is known after a forward pass",
                                  where=shown)
        known = sorted(owner._parameters) + sorted(owner._buffers) if owner else []
        raise ExpressionError(f"no parameter or buffer {name!r}"
                              + (f" (here: {', '.join(known)})" if known else ""), where=shown)
    paths = tied_paths(model, tensor) if tensor is not None else ()
    if path.grad:
        kind = "grad"
        tensor = tensor.grad if tensor is not None else None
        paths = tuple(p + ".grad" for p in paths)
    if tensor is not None:
        tensor = _index(tensor, path, shown)
    return Resolved(shown, tensor, kind, module_path, name, paths)


def _module_or_none(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        return None


def _index(tensor: torch.Tensor, path: TensorPath, shown: str) -> torch.Tensor:
    if path.index is None:
        return tensor
    try:
        return tensor.detach()[path.index]
    except IndexError as error:
        raise ExpressionError(f"index out of range for shape {tuple(tensor.shape)}: {error}",
                              where=shown) from None


# --- describing -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorInfo:
    """The header PyTorch users look for: shape, dtype, device, requires_grad, grad_fn."""

    shape: tuple[int, ...]
    dtype: str
    device: str
    requires_grad: bool
    grad_fn: str | None
    numel: int
    is_meta: bool

    def line(self) -> str:
        text = (f"shape {self.shape}  dtype {self.dtype}  device {self.device}  "
                f"requires_grad={self.requires_grad}")
        return text + (f"  grad_fn={self.grad_fn}" if self.grad_fn else "")


def tensor_info(tensor: torch.Tensor) -> TensorInfo:
    grad_fn = type(tensor.grad_fn).__name__ if tensor.grad_fn is not None else None
    return TensorInfo(tuple(tensor.shape), str(tensor.dtype), str(tensor.device),
                      bool(tensor.requires_grad), grad_fn, tensor.numel(), tensor.is_meta)


def format_tensor(tensor: torch.Tensor | None, *, threshold: int = PRINT_THRESHOLD,
                  edgeitems: int = EDGE_ITEMS, linewidth: int = 80) -> str:
    """`print(tensor)` as PyTorch writes it, summarised above `threshold` elements.

    Uses torch's own printoptions context (not the global setting, which another thread
    might be reading). A meta tensor, or a gradient not yet computed, says so.
    """
    if tensor is None:
        return "None  (no gradient yet: run a backward pass)"
    if tensor.is_meta:
        return (f"meta tensor of shape {tuple(tensor.shape)}, dtype {tensor.dtype}: it has no "
                "values (the model lives on the meta device)")
    from torch._tensor_str import printoptions

    with printoptions(threshold=threshold, edgeitems=edgeitems, linewidth=linewidth):
        return repr(tensor)


def statistics(tensor: torch.Tensor) -> dict[str, float]:
    """numel, mean, std (population), min, max, L2 norm, zero fraction, NaN and Inf counts."""
    if tensor.is_meta:
        return {"numel": float(tensor.numel())}
    x = tensor.detach()
    x = (x.abs() if x.is_complex() else x).to(torch.float64)
    flat = x.reshape(-1)
    n = flat.numel()
    if n == 0:
        return {"numel": 0.0}
    finite = flat[torch.isfinite(flat)]
    base = finite if finite.numel() else flat
    return {
        "numel": float(n), "mean": float(base.mean()), "std": float(base.std(correction=0)),
        "min": float(base.min()), "max": float(base.max()),
        "norm": float(torch.linalg.vector_norm(base)),
        "zero_fraction": float((flat == 0).to(torch.float64).mean()),
        "nan": float(torch.isnan(flat).sum()), "inf": float(torch.isinf(flat).sum()),
    }


def as_matrix(tensor: torch.Tensor) -> torch.Tensor:
    """Any tensor as 2-D float64: a scalar 1×1, a vector 1×n, leading dims folded into rows."""
    x = tensor.detach().to("cpu")
    x = (x.abs() if x.is_complex() else x).to(torch.float64)
    if x.dim() == 0:
        return x.reshape(1, 1)
    if x.dim() == 1:
        return x.reshape(1, -1)
    return x.reshape(-1, x.shape[-1])


def heatmap_data(tensor: torch.Tensor, *, rows: int, cols: int) -> list[list[float]]:
    """A grid of at most rows × cols cells, each the mean of the block it covers.

    A tensor already small enough is returned as it is (no interpolation). Meta → [].
    """
    if tensor.is_meta or tensor.numel() == 0:
        return []
    m = as_matrix(tensor)
    out_rows, out_cols = min(rows, m.shape[0]), min(cols, m.shape[1])
    if (out_rows, out_cols) != tuple(m.shape):
        m = torch.nn.functional.adaptive_avg_pool2d(m[None, None], (out_rows, out_cols))[0, 0]
    return m.tolist()


def histogram_data(tensor: torch.Tensor, *, bins: int = 20) -> tuple[list[float], list[int]]:
    """(edges, counts): `bins` equal-width bins between min and max of the finite values."""
    if tensor.is_meta or tensor.numel() == 0:
        return [], []
    flat = as_matrix(tensor).reshape(-1)
    flat = flat[torch.isfinite(flat)]
    if flat.numel() == 0:
        return [], []
    low, high = float(flat.min()), float(flat.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    counts = torch.histc(flat, bins=bins, min=low, max=high)
    edges = torch.linspace(low, high, bins + 1, dtype=torch.float64)
    return edges.tolist(), [int(c) for c in counts.tolist()]


def json_number(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return value


def to_nested(tensor: torch.Tensor, *, limit: int = JSON_VALUES_LIMIT) -> Any:
    """Values as nested lists for JSON (NaN/±Inf as strings); None if meta or over `limit`."""
    if tensor.is_meta or tensor.numel() > limit:
        return None
    x = tensor.detach().to("cpu")
    if x.dtype in (torch.bfloat16, torch.float16):
        x = x.to(torch.float32)
    values = x.tolist()

    def clean(v: Any) -> Any:
        return [clean(i) for i in v] if isinstance(v, list) else json_number(v)

    return clean(values)


def describe_json(tensor: torch.Tensor | None, *, limit: int = JSON_VALUES_LIMIT
                  ) -> dict[str, Any] | None:
    """{shape, dtype, values} for `tuilab forward --json` (values None if too large)."""
    if tensor is None:
        return None
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", ""),
            "values": to_nested(tensor, limit=limit)}
