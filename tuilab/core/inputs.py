"""The lab's chosen input, and setting a parameter's values: the engine behind both.

Before, every forward pass drew a fresh random input (`Lab.make_input`), so two passes never
showed the same numbers and no seed example (`pool2d` on `arange(9.).view(3, 3)`) could be
reproduced. Now the lab holds one `ChosenInput` — an expression of the input language and the
tensor it gave — fixed until the user changes it or the input shape, used by forward,
backward and hooks, echoed in the code log and saved in the workspace.

`set_value` writes a parameter or buffer (whole, an element, or a slice) from the same
language, under `no_grad`, and returns a `ValueChange` that can undo it, the runnable PyTorch
line for the log, and every path at which the changed tensor lives (a tied layer: all of them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tuilab.core.expressions import (
    MAX_NUMEL,
    Assignment,
    Expression,
    ExpressionError,
    as_tensor,
    assignment_source,
    parse_assignment,
    parse_expression,
)
from tuilab.core.values import resolve, tied_paths

DEFAULT_SEED = 0


@dataclass(frozen=True)
class ChosenInput:
    """An input expression, the seed its random calls use, and the tensor it made."""

    text: str
    seed: int
    tensor: torch.Tensor
    expression: Expression

    def code(self, name: str = "x") -> str:
        """`x = torch.arange(9.0).view(3, 3)` (with its generator line if random)."""
        return assignment_source(name, self.expression, seed=self.seed)

    def to_data(self) -> dict[str, Any]:
        """What the workspace file keeps (the text and the seed, never the values)."""
        return {"expression": self.text, "seed": self.seed}


def default_input_text(shape: Sequence[int], *, takes_tokens: bool,
                       vocab_size: int | None) -> str:
    """The expression for the random input the lab used to draw: `torch.rand(4, 8)`, or
    token ids `torch.randint(0, V, (2, 16))` for a model that takes tokens."""
    dims = ", ".join(str(int(d)) for d in shape)
    if takes_tokens:
        return f"torch.randint(0, {int(vocab_size or 1)}, ({dims}{',' if len(shape) == 1 else ''}))"
    return f"torch.rand({dims})"


def choose_input(text: str, *, seed: int = DEFAULT_SEED, max_numel: int = MAX_NUMEL
                 ) -> ChosenInput:
    """Parse and evaluate an input expression (ExpressionError if outside the language)."""
    expression = parse_expression(text)
    value = expression.evaluate(seed=seed, max_numel=max_numel)
    tensor = as_tensor(value, max_numel=max_numel)
    return ChosenInput(expression.text, int(seed), tensor.detach() if not tensor.requires_grad
                       else tensor, expression)


def check_input_data(data: Any, *, where: str) -> tuple[str, int] | None:
    """Validate a workspace's `[input]` table: (expression, seed), or None when absent."""
    from tuilab.core.errors import SpecFileError

    if not data:
        return None
    text, seed = data.get("expression"), data.get("seed", DEFAULT_SEED)
    unknown = sorted(set(data) - {"expression", "seed"})
    if unknown:
        raise SpecFileError(f"unknown key {unknown[0]!r}", where=where)
    if not isinstance(text, str):
        raise SpecFileError("expression must be a string", where=f"{where}.expression")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SpecFileError("seed must be an integer", where=f"{where}.seed")
    try:
        parse_expression(text)
    except ExpressionError as error:
        raise SpecFileError(str(error), where=f"{where}.expression") from None
    return text, seed


# --- setting values ---------------------------------------------------------------------------
@dataclass
class ValueChange:
    """One set value: where, what it was, the PyTorch line, and every path it shows at."""

    tensor: torch.Tensor
    before: torch.Tensor
    paths: tuple[str, ...]
    code: str
    description: str
    target_code: str
    """The tensor in the log's words (`net[2].weight`), for the undo line."""
    after: torch.Tensor | None = None
    """The values the set gave, kept by `undo` so that `redo` can put them back."""

    def undo(self) -> None:
        self.after = self.tensor.detach().clone()
        with torch.no_grad():
            self.tensor.copy_(self.before)

    def redo(self) -> None:
        """Put back the values `undo` took away (the same values, even for a random set)."""
        if self.after is None:
            raise ExpressionError("this value was not undone: nothing to redo",
                                  where=self.description)
        with torch.no_grad():
            self.tensor.copy_(self.after)

    def undo_code(self) -> str:
        """The runnable line that puts the old values back (written out when small)."""
        head = f"# undo: {self.description}"
        if self.before.numel() > 64:
            return head + " (the old values are too many to write here)"
        return (f"{head}\nwith torch.no_grad():\n    {self.target_code}.copy_("
                f"torch.tensor({self.before.tolist()!r}))")


def set_value(model: nn.Module, text: str, *, seed: int = DEFAULT_SEED,
              module_expr: Callable[[str], str] | None = None,
              max_numel: int = MAX_NUMEL) -> ValueChange:
    """Apply `PATH = EXPR` to a parameter or buffer of `model`; nothing changes on error.

    The value is cast to the tensor's dtype and must broadcast to the target's shape
    (`0.weight = 1` fills, `0.weight[0, 0] = 100` sets one element). `module_expr` turns a
    module path into the expression the code log uses (`net[2]`); `net.get_submodule(...)`
    by default.
    """
    assignment = parse_assignment(text)
    return apply_assignment(model, assignment, seed=seed, module_expr=module_expr,
                            max_numel=max_numel)


def apply_assignment(model: nn.Module, assignment: Assignment, *, seed: int = DEFAULT_SEED,
                     module_expr: Callable[[str], str] | None = None,
                     max_numel: int = MAX_NUMEL) -> ValueChange:
    target = assignment.target
    found = resolve(model, _without_index(target))
    if found.kind not in ("parameter", "buffer") or found.tensor is None:
        raise ExpressionError("only a parameter or a buffer can be set", where=target.dotted)
    tensor = found.tensor
    if tensor.is_meta:
        raise ExpressionError("the model lives on the meta device: it has no values to set",
                              where=target.dotted)
    value = as_tensor(assignment.value.evaluate(seed=seed, max_numel=max_numel),
                      max_numel=max_numel)
    try:
        view = tensor.detach()[target.index] if target.index is not None else tensor.detach()
    except IndexError as error:
        raise ExpressionError(f"index out of range for shape {tuple(tensor.shape)}: {error}",
                              where=target.dotted) from None
    try:
        torch.broadcast_shapes(tuple(value.shape), tuple(view.shape))
        if torch.broadcast_shapes(tuple(value.shape), tuple(view.shape)) != tuple(view.shape):
            raise RuntimeError
    except RuntimeError:
        raise ExpressionError(f"a value of shape {tuple(value.shape)} does not fit "
                              f"{target.dotted} of shape {tuple(view.shape)}",
                              where=target.dotted) from None
    before = tensor.detach().clone()
    with torch.no_grad():
        view.copy_(value.detach().to(device=view.device, dtype=view.dtype))
    expr = (module_expr or _default_module_expr)(found.module_path)
    lhs = f"{expr}.{found.name}"
    source = assignment.value.source()
    if target.index is not None:
        body = f"{lhs}{target.index_text} = {source}"
    else:
        body = f"{lhs}.copy_({source})" if value.dim() or value.numel() != 1 \
            else f"{lhs}.fill_({source})"
    code = f"with torch.no_grad():\n    {body}"
    if assignment.value.is_random:
        code = f"g = torch.Generator().manual_seed({seed})\n{code}"
    paths = tied_paths(model, tensor)
    return ValueChange(tensor, before, paths, code, f"set {target.dotted}", lhs)


def _without_index(path: Any) -> Any:
    from dataclasses import replace

    return replace(path, index=None, index_text="", data=False)


def _default_module_expr(path: str) -> str:
    return "net" if not path else f"net.get_submodule({path!r})"


# --- backward on the chosen input --------------------------------------------------------------
def backward_with(output: torch.Tensor, grad_text: str | None, *, seed: int = DEFAULT_SEED
                  ) -> tuple[torch.Tensor, str]:
    """`out.backward(GRAD)` with GRAD from the language (`torch.ones_like(out)` by default);
    returns the gradient used and the code line. The expression is checked before anything
    runs; its shape must match the output's."""
    text = grad_text or "torch.ones_like(out)"
    expression = parse_expression(text, names={"out"})
    grad = as_tensor(expression.evaluate(seed=seed, names={"out": output.detach()}))
    if tuple(grad.shape) != tuple(output.shape):
        raise ExpressionError(f"the gradient has shape {tuple(grad.shape)}, the output "
                              f"{tuple(output.shape)}", where="backward")
    if not output.requires_grad:
        raise ExpressionError("the output does not require grad (no parameter took part)",
                              where="backward")
    output.backward(grad.to(device=output.device, dtype=output.dtype))
    line = f"out.backward({expression.source()})"
    if expression.is_random:
        line = f"g = torch.Generator().manual_seed({seed})\n{line}"
    return grad, line
