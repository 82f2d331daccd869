"""The input/value language: a small slice of PyTorch syntax, parsed and never evaluated.

A user types `torch.arange(9.).view(3, 3)` to choose an input, or `0.weight = torch.tensor([[0.,
1.], [2., 3.]])` to set a parameter. The text is parsed with `ast` and walked by our own
interpreter, which admits only literals, nested lists and tuples, a fixed set of tensor
factories (`ALLOWED_FUNCTIONS`), a fixed set of methods (`ALLOWED_METHODS`), dtypes
(`torch.float32` ...), `+ - * / **` and names the caller provides (`out` for `--backward`).
There is no `eval`, `exec` or `compile` to code, and no attribute access outside the allowlist,
so `__import__('os')`, `x.__class__`, `torch.load(...)` or a lambda are refused with an
`ExpressionError` naming what is not allowed and its column — before anything runs.

Every tensor a factory would make is measured first (`numel` from the arguments, broadcast
shapes for arithmetic), so `torch.zeros(10**12)` is refused without allocating. Random
factories draw from one `torch.Generator` seeded by the caller: the same text and seed give
the same tensor, and `to_source` writes the same generator into the code log so the line
replays bit for bit.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from tuilab.core.errors import TuilabError

MAX_NUMEL = 2**24
"""Default size guard: the most elements one expression may create (64 MiB of float32)."""
MAX_TEXT = 10_000
MAX_DEPTH = 48
_INT64 = 2**63

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float": torch.float32, "float64": torch.float64,
    "double": torch.float64, "float16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64, "long": torch.int64,
    "int32": torch.int32, "int": torch.int32, "int16": torch.int16, "int8": torch.int8,
    "uint8": torch.uint8, "bool": torch.bool,
}
_DTYPE_SOURCE = {dtype: f"torch.{name}" for name, dtype in reversed(list(DTYPES.items()))}

RANDOM_FUNCTIONS = frozenset({"rand", "randn", "randint"})
ALLOWED_FUNCTIONS = ("tensor", "arange", "zeros", "ones", "full", "rand", "randn", "randint",
                     "linspace", "eye", "zeros_like", "ones_like", "full_like")
_FACTORY_KWARGS = frozenset({"dtype", "requires_grad"})
ALLOWED_METHODS = ("view", "reshape", "float", "long", "double", "int", "half", "bool",
                   "unsqueeze", "squeeze", "flatten", "t", "transpose", "clone")
ALLOWED_ATTRIBUTES = ("T", "shape")
_CASTS = {"float": torch.float32, "long": torch.int64, "double": torch.float64,
          "int": torch.int32, "half": torch.float16, "bool": torch.bool}
_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


class ExpressionError(TuilabError):
    """Text outside the language, or a value it refuses; `where` gives the column."""


def _error(node: ast.AST | None, message: str) -> ExpressionError:
    column = getattr(node, "col_offset", None)
    if isinstance(node, ast.Attribute) and node.end_col_offset is not None \
            and node.end_lineno == node.lineno:
        column = node.end_col_offset - len(node.attr)  # at the name, not at its object
    return ExpressionError(message, where=f"column {column + 1}" if column is not None else "")


@dataclass(frozen=True)
class Expression:
    """A checked expression: the source text and its syntax tree (nothing has run)."""

    text: str
    tree: ast.expr

    @property
    def is_random(self) -> bool:
        """Whether evaluating it draws random numbers (so the seed matters)."""
        return any(isinstance(n, ast.Call) and _function_name(n.func) in RANDOM_FUNCTIONS
                   for n in ast.walk(self.tree))

    def evaluate(self, *, seed: int = 0, names: Mapping[str, Any] | None = None,
                 max_numel: int = MAX_NUMEL) -> Any:
        """The value (a tensor, number, bool, list or tuple); same text and seed, same value."""
        return _Evaluator(seed, dict(names or {}), max_numel).value(self.tree)

    def source(self, *, generator: str = "g") -> str:
        """Canonical PyTorch for it (`torch.arange(9.0).view(3, 3)`); random calls take
        `generator=g`, which `assignment_source` defines."""
        return _Source(generator).text(self.tree)


def parse_expression(text: str, *, names: frozenset[str] | set[str] = frozenset()) -> Expression:
    """Parse and check `text`; raise ExpressionError naming what is outside the language.

    `names` are the variables the caller will provide at evaluation (`{"out"}`).
    """
    tree = _parse(text, "eval")
    assert isinstance(tree, ast.Expression)
    _Checker(frozenset(names)).check(tree.body, 0)
    return Expression(text.strip(), tree.body)


def evaluate(text: str, *, seed: int = 0, names: Mapping[str, Any] | None = None,
             max_numel: int = MAX_NUMEL) -> Any:
    """Parse `text` and evaluate it (see `Expression.evaluate`)."""
    return parse_expression(text, names=set(names or ())).evaluate(
        seed=seed, names=names, max_numel=max_numel)


def evaluate_tensor(text: str, *, seed: int = 0, names: Mapping[str, Any] | None = None,
                    max_numel: int = MAX_NUMEL) -> torch.Tensor:
    """Like `evaluate`, but numbers and lists become tensors (`5` → `torch.tensor(5)`)."""
    value = evaluate(text, seed=seed, names=names, max_numel=max_numel)
    return as_tensor(value, max_numel=max_numel)


def as_tensor(value: Any, *, max_numel: int = MAX_NUMEL) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, torch.dtype) or value is None:
        raise ExpressionError(f"{value!r} is not a tensor or a number")
    return _Evaluator(0, {}, max_numel).make_tensor(value, None)


def assignment_source(target: str, expression: Expression, *, seed: int = 0) -> str:
    """`x = torch.arange(9.0).view(3, 3)`, with the seeded generator first when it is random."""
    line = f"{target} = {expression.source()}"
    if expression.is_random:
        return f"g = torch.Generator().manual_seed({seed})\n{line}"
    return line


def _parse(text: str, mode: str) -> ast.AST:
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("empty expression")
    if len(text) > MAX_TEXT:
        raise ExpressionError(f"longer than {MAX_TEXT} characters")
    try:
        return ast.parse(text.strip(), mode=mode)
    except SyntaxError as error:
        column = f"column {error.offset}" if error.offset else ""
        raise ExpressionError(f"not valid syntax: {error.msg}", where=column) from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"nested too deeply (at most {MAX_DEPTH} levels)") from None


def _function_name(func: ast.expr) -> str | None:
    """`torch.zeros` or bare `zeros` → "zeros"; anything else → None."""
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
            and func.value.id == "torch":
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _describe(node: ast.AST) -> str:
    kinds = {ast.Lambda: "lambda", ast.ListComp: "a comprehension",
             ast.GeneratorExp: "a generator", ast.DictComp: "a comprehension",
             ast.SetComp: "a comprehension", ast.Dict: "a dict", ast.Set: "a set",
             ast.Compare: "a comparison", ast.BoolOp: "and/or", ast.IfExp: "if/else",
             ast.Subscript: "indexing", ast.Starred: "*unpacking", ast.JoinedStr: "an f-string",
             ast.NamedExpr: "the := operator", ast.Await: "await"}
    return kinds.get(type(node), type(node).__name__)


class _Checker:
    """Walks the tree once, refusing anything outside the language; runs nothing."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def check(self, node: ast.expr, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _error(node, f"nested too deeply (at most {MAX_DEPTH} levels)")
        if isinstance(node, ast.Constant):
            self._constant(node)
        elif isinstance(node, (ast.List, ast.Tuple)):
            for item in node.elts:
                self.check(item, depth + 1)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise _error(node, "only unary - and + are allowed")
            self.check(node.operand, depth + 1)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise _error(node, "operator not allowed (allowed: + - * / **)")
            self.check(node.left, depth + 1)
            self.check(node.right, depth + 1)
        elif isinstance(node, ast.Call):
            self._call(node, depth)
        elif isinstance(node, ast.Attribute):
            self._attribute(node, depth)
        elif isinstance(node, ast.Name):
            if node.id not in self.names and node.id not in ("True", "False"):
                raise _error(node, f"unknown name {node.id!r}"
                             + (f" (names here: {', '.join(sorted(self.names))})"
                                if self.names else ""))
        else:
            raise _error(node, f"{_describe(node)} is not allowed")

    def _constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int):
            if abs(value) >= _INT64:
                raise _error(node, "integer too large (must fit in 64 bits)")
            return
        if isinstance(value, float):
            return
        raise _error(node, f"{type(value).__name__} literals are not allowed "
                     "(numbers, True, False and lists only)")

    def _call(self, node: ast.Call, depth: int) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and not (
                isinstance(func.value, ast.Name) and func.value.id == "torch"):
            if func.attr not in ALLOWED_METHODS:
                raise _error(func, f"method .{func.attr}() is not allowed (allowed: "
                             f"{', '.join('.' + m for m in ALLOWED_METHODS)})")
            self.check(func.value, depth + 1)
        else:
            name = _function_name(func)
            if name is None or name not in ALLOWED_FUNCTIONS:
                shown = (ast.unparse(func) if name is None else
                         (f"torch.{name}" if isinstance(func, ast.Attribute) else name))
                raise _error(node, f"{shown}() is not allowed (allowed: "
                             f"{', '.join('torch.' + f for f in ALLOWED_FUNCTIONS)})")
            for keyword in node.keywords:
                if keyword.arg not in _FACTORY_KWARGS:
                    raise _error(keyword.value, f"keyword {keyword.arg or '**'}= is not allowed "
                                 "(allowed: dtype=, requires_grad=)")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise _error(arg, "*unpacking is not allowed")
            self.check(arg, depth + 1)
        for keyword in node.keywords:
            self.check(keyword.value, depth + 1)

    def _attribute(self, node: ast.Attribute, depth: int) -> None:
        if isinstance(node.value, ast.Name) and node.value.id == "torch":
            if node.attr not in DTYPES:
                raise _error(node, f"torch.{node.attr} is not allowed here (dtypes: "
                             f"{', '.join('torch.' + d for d in DTYPES)})")
            return
        if node.attr not in ALLOWED_ATTRIBUTES:
            raise _error(node, f"attribute .{node.attr} is not allowed "
                         f"(allowed: {', '.join('.' + a for a in ALLOWED_ATTRIBUTES)})")
        self.check(node.value, depth + 1)


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


class _Evaluator:
    """Evaluates a checked tree, measuring every new tensor before it is made."""

    def __init__(self, seed: int, names: dict[str, Any], max_numel: int) -> None:
        self.generator = torch.Generator().manual_seed(int(seed))
        self.names = names
        self.max_numel = max_numel

    # --- guards ----------------------------------------------------------------------------
    def guard(self, node: ast.AST | None, shape: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 0 for d in shape):
            raise _error(node, f"negative size in {shape}")
        if _numel(shape) > self.max_numel:
            raise _error(node, f"a tensor of shape {tuple(shape)} has {_numel(shape):,} "
                         f"elements, more than the limit of {self.max_numel:,}")
        return shape

    def size(self, node: ast.AST, args: list[Any]) -> tuple[int, ...]:
        """`zeros(2, 3)` or `zeros((2, 3))` → (2, 3), guarded."""
        if len(args) == 1 and isinstance(args[0], (list, tuple, torch.Size)):
            args = list(args[0])
        shape = tuple(self.integer(node, a, "a size") for a in args)
        return self.guard(node, shape)

    @staticmethod
    def integer(node: ast.AST, value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _error(node, f"{what} must be an integer, got {value!r}")
        return value

    @staticmethod
    def number(node: ast.AST, value: Any, what: str) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _error(node, f"{what} must be a number, got {value!r}")
        return value

    # --- walking ---------------------------------------------------------------------------
    def value(self, node: ast.expr) -> Any:
        try:
            return self._value(node)
        except ExpressionError:
            raise
        except (RuntimeError, ValueError, TypeError, IndexError, OverflowError) as error:
            raise _error(node, str(error).splitlines()[0]) from None

    def _value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return {"True": True, "False": False}.get(node.id, self.names.get(node.id))
        if isinstance(node, ast.List):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self.value(e) for e in node.elts)
        if isinstance(node, ast.UnaryOp):
            operand = self.value(node.operand)
            self._arith_operand(node, operand)
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.BinOp):
            return self.binary(node, self.value(node.left), self.value(node.right))
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "torch":
                return DTYPES[node.attr]
            base = self.tensor_operand(node, self.value(node.value))
            return base.T if node.attr == "T" else tuple(base.shape)
        assert isinstance(node, ast.Call)
        args = [self.value(a) for a in node.args]
        kwargs = {k.arg: self.value(k.value) for k in node.keywords}
        func = node.func
        if isinstance(func, ast.Attribute) and not (
                isinstance(func.value, ast.Name) and func.value.id == "torch"):
            return self.method(node, func.attr, self.value(func.value), args)
        return self.factory(node, _function_name(func) or "", args, kwargs)

    def _arith_operand(self, node: ast.AST, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
            raise _error(node, f"arithmetic needs numbers or tensors, got {value!r}")

    def tensor_operand(self, node: ast.AST, value: Any) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            raise _error(node, f"a tensor is needed here, got {value!r}")
        return value

    def binary(self, node: ast.BinOp, left: Any, right: Any) -> Any:
        self._arith_operand(node, left)
        self._arith_operand(node, right)
        op = type(node.op)
        if isinstance(left, torch.Tensor) or isinstance(right, torch.Tensor):
            shapes = [tuple(v.shape) for v in (left, right) if isinstance(v, torch.Tensor)]
            self.guard(node, tuple(torch.broadcast_shapes(*shapes)))
        elif op is ast.Pow:
            if abs(right) > 64 or (isinstance(left, int) and isinstance(right, int)
                                   and right > 0 and abs(left) > 1
                                   and right * math.log2(abs(left)) >= 63):
                raise _error(node, "power too large (the result must fit in 64 bits)")
        elif op is ast.Div and right == 0:
            raise _error(node, "division by zero")
        elif op is ast.Mult and isinstance(left, int) and isinstance(right, int) \
                and abs(left * right) >= _INT64:
            raise _error(node, "integer too large (must fit in 64 bits)")
        result = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
                  ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
                  ast.Pow: lambda a, b: a ** b}[op](left, right)
        if isinstance(result, complex):
            raise _error(node, "the result would be a complex number")
        if isinstance(result, int) and abs(result) >= _INT64:
            raise _error(node, "integer too large (must fit in 64 bits)")
        return result

    def method(self, node: ast.Call, name: str, base: Any, args: list[Any]) -> Any:
        tensor = self.tensor_operand(node.func, base)
        if name in _CASTS:
            if args:
                raise _error(node, f".{name}() takes no arguments")
            return tensor.to(_CASTS[name])
        if name in ("view", "reshape"):
            shape = [self.integer(node, a, "a size") for a in
                     (list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple))
                      else args)]
            return getattr(tensor, name)(*shape)
        if name in ("unsqueeze", "squeeze", "flatten", "t", "transpose", "clone"):
            ints = [self.integer(node, a, "a dimension") for a in args]
            return getattr(tensor, name)(*ints)
        raise _error(node, f"method .{name}() is not allowed")  # pragma: no cover (checked)

    def factory(self, node: ast.Call, name: str, args: list[Any], kwargs: dict[str, Any]
                ) -> torch.Tensor:
        dtype = kwargs.get("dtype")
        if dtype is not None and not isinstance(dtype, torch.dtype):
            raise _error(node, f"dtype= must be a torch dtype, got {dtype!r}")
        grad = kwargs.get("requires_grad", False)
        if not isinstance(grad, bool):
            raise _error(node, "requires_grad= must be True or False")
        result = self._factory(node, name, args, dtype)
        if grad:
            if not (result.is_floating_point() or result.is_complex()):
                raise _error(node, "requires_grad=True needs a floating-point tensor")
            result.requires_grad_(True)
        return result

    def _factory(self, node: ast.Call, name: str, args: list[Any], dtype: torch.dtype | None
                 ) -> torch.Tensor:
        g = self.generator
        if name == "tensor":
            if len(args) != 1:
                raise _error(node, "torch.tensor() takes one argument (a number or a list)")
            return self.make_tensor(args[0], dtype, node)
        if name in ("zeros", "ones", "rand", "randn"):
            shape = self.size(node, args)
            if name in ("rand", "randn"):
                return getattr(torch, name)(shape, generator=g, dtype=dtype)
            return getattr(torch, name)(shape, dtype=dtype)
        if name == "full":
            if len(args) != 2:
                raise _error(node, "torch.full(size, fill_value) takes two arguments")
            shape = self.size(node, [args[0]])
            return torch.full(shape, self.number(node, args[1], "fill_value"), dtype=dtype)
        if name == "arange":
            if not 1 <= len(args) <= 3:
                raise _error(node, "torch.arange takes end, or start, end[, step]")
            nums = [self.number(node, a, "an arange bound") for a in args]
            start, end, step = (0, nums[0], 1) if len(nums) == 1 else (
                nums[0], nums[1], nums[2] if len(nums) == 3 else 1)
            if step == 0:
                raise _error(node, "arange step must not be zero")
            self.guard(node, (max(0, math.ceil((end - start) / step)),))
            return torch.arange(*nums, dtype=dtype)
        if name == "linspace":
            if len(args) != 3:
                raise _error(node, "torch.linspace(start, end, steps) takes three arguments")
            steps = self.integer(node, args[2], "steps")
            self.guard(node, (steps,))
            return torch.linspace(self.number(node, args[0], "start"),
                                  self.number(node, args[1], "end"), steps, dtype=dtype)
        if name == "eye":
            if not 1 <= len(args) <= 2:
                raise _error(node, "torch.eye(n[, m]) takes one or two arguments")
            shape = self.size(node, [args[0], args[-1]])
            return torch.eye(*shape[: len(args)], dtype=dtype)
        if name == "randint":
            if len(args) not in (2, 3):
                raise _error(node, "torch.randint(high, size) or (low, high, size)")
            low, high = (0, args[0]) if len(args) == 2 else (args[0], args[1])
            low, high = self.integer(node, low, "low"), self.integer(node, high, "high")
            if high <= low:
                raise _error(node, f"randint needs low < high, got {low} and {high}")
            return torch.randint(low, high, self.size(node, [args[-1]]), generator=g,
                                 dtype=dtype or torch.int64)
        if name in ("zeros_like", "ones_like", "full_like"):
            want = 2 if name == "full_like" else 1
            if len(args) != want:
                raise _error(node, f"torch.{name} takes {want} argument(s)")
            like = self.tensor_operand(node, args[0])
            if name == "full_like":
                return torch.full_like(like, self.number(node, args[1], "fill_value"),
                                       dtype=dtype)
            return getattr(torch, name)(like, dtype=dtype)
        raise _error(node, f"{name}() is not allowed")  # pragma: no cover (checked)

    def make_tensor(self, data: Any, dtype: torch.dtype | None,
                    node: ast.AST | None = None) -> torch.Tensor:
        if isinstance(data, torch.Tensor):
            return data.clone().to(dtype) if dtype is not None else data.clone()
        count = _count_leaves(data)
        if count > self.max_numel:
            raise _error(node, f"{count:,} values, more than the limit of {self.max_numel:,}")
        try:
            return torch.tensor(data, dtype=dtype)
        except (TypeError, ValueError, RuntimeError) as error:
            raise _error(node, f"cannot make a tensor of that: {error}") from None


def _count_leaves(data: Any) -> int:
    if isinstance(data, (list, tuple)):
        return sum(_count_leaves(item) for item in data)
    if isinstance(data, torch.Tensor):
        raise ExpressionError("torch.tensor() of a list of tensors is not allowed")
    return 1


class _Source:
    """Canonical PyTorch source for a checked tree."""

    def __init__(self, generator: str) -> None:
        self.generator = generator

    def text(self, node: ast.expr) -> str:
        if isinstance(node, ast.Constant):
            return repr(node.value)
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.List):
            return "[" + ", ".join(self.text(e) for e in node.elts) + "]"
        if isinstance(node, ast.Tuple):
            items = [self.text(e) for e in node.elts]
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        if isinstance(node, ast.UnaryOp):
            sign = "-" if isinstance(node.op, ast.USub) else "+"
            return f"{sign}{self.wrap(node.operand)}"
        if isinstance(node, ast.BinOp):
            return f"{self.wrap(node.left)} {_BINARY[type(node.op)]} {self.wrap(node.right)}"
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "torch":
                return _DTYPE_SOURCE[DTYPES[node.attr]]
            return f"{self.wrap(node.value)}.{node.attr}"
        assert isinstance(node, ast.Call)
        parts = [self.text(a) for a in node.args]
        parts += [f"{k.arg}={self.text(k.value)}" for k in node.keywords]
        func = node.func
        if isinstance(func, ast.Attribute) and not (
                isinstance(func.value, ast.Name) and func.value.id == "torch"):
            return f"{self.wrap(func.value)}.{func.attr}({', '.join(parts)})"
        name = _function_name(func)
        if name in RANDOM_FUNCTIONS:
            parts.append(f"generator={self.generator}")
        return f"torch.{name}({', '.join(parts)})"

    def wrap(self, node: ast.expr) -> str:
        text = self.text(node)
        simple = isinstance(node, (ast.Name, ast.Call, ast.Attribute, ast.List, ast.Tuple)) or (
            isinstance(node, ast.Constant) and not (
                isinstance(node.value, (int, float)) and node.value < 0))
        return text if simple else f"({text})"


# --- tensor paths and assignments --------------------------------------------------------------
@dataclass(frozen=True)
class TensorPath:
    """`net[2].weight.data[0, :3]` as parts: segments ("2", "weight"), `.grad`, the index.

    The last segment names a parameter, buffer or (when it names a module) a layer output;
    `values.resolve` decides which. `index` holds Python index objects (ints, slices,
    Ellipsis); `index_text` the canonical `[0, :3]` for the code log.
    """

    segments: tuple[str, ...]
    grad: bool = False
    data: bool = False
    index: tuple[Any, ...] | None = None
    index_text: str = ""

    @property
    def module_path(self) -> str:
        return ".".join(self.segments[:-1])

    @property
    def name(self) -> str:
        return self.segments[-1] if self.segments else ""

    @property
    def dotted(self) -> str:
        """`2.weight.grad[0, :3]` — the path as tuilab writes it."""
        text = ".".join(self.segments) + (".grad" if self.grad else "")
        return text + self.index_text


def _segment_tokens(text: str) -> list[tuple[str, Any, int]]:
    """Split `net[2].weight.data[0, :3]` into ("name"|"key"|"index", value, column)."""
    tokens: list[tuple[str, Any, int]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t" or ch == ".":
            i += 1
        elif ch == "[":
            depth, j = 0, i
            while j < n:
                depth += {"[": 1, "]": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            if j >= n:
                raise ExpressionError("unclosed [", where=f"column {i + 1}")
            tokens.append(("bracket", text[i + 1:j], i))
            i = j + 1
        elif ch.isalnum() or ch == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            tokens.append(("name", text[i:j], i))
            i = j
        else:
            raise ExpressionError(f"{ch!r} is not allowed in a tensor path",
                                  where=f"column {i + 1}")
    return tokens


def parse_index(text: str, *, column: int = 0) -> tuple[tuple[Any, ...], str]:
    """`0, :5` (what goes between brackets) → ((0, slice(None, 5)), "[0, :5]")."""
    tree = _parse(f"_[{text}]", "eval")
    assert isinstance(tree, ast.Expression)
    subscript = tree.body
    if not isinstance(subscript, ast.Subscript):
        raise ExpressionError("not an index", where=f"column {column + 1}")
    items = subscript.slice.elts if isinstance(subscript.slice, ast.Tuple) else [subscript.slice]
    values: list[Any] = []
    texts: list[str] = []
    for item in items:
        if isinstance(item, ast.Slice):
            parts = [_index_int(p, column) if p is not None else None
                     for p in (item.lower, item.upper, item.step)]
            values.append(slice(*parts))
            text_parts = ["" if p is None else str(p) for p in parts]
            texts.append(":".join(text_parts[:2]) + (f":{text_parts[2]}" if parts[2] else ""))
        elif isinstance(item, ast.Constant) and item.value is Ellipsis:
            values.append(Ellipsis)
            texts.append("...")
        else:
            number = _index_int(item, column)
            values.append(number)
            texts.append(str(number))
    return tuple(values), "[" + ", ".join(texts) + "]"


def _index_int(node: ast.expr, column: int) -> int:
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        sign, node = -1, node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, int) \
            and not isinstance(node.value, bool) and node.value < _INT64:
        return sign * node.value
    where = f"column {column + max(0, node.col_offset - 2) + 1}"
    raise ExpressionError("an index must be integers, slices (a:b:c) or ...", where=where)


def parse_tensor_path(text: str) -> TensorPath:
    """`0.weight`, `net[2].bias.data`, `features.0.weight.grad[0, :5]`, `2` (a layer output)."""
    tokens = _segment_tokens(text.strip())
    if not tokens:
        raise ExpressionError("empty tensor path")
    if tokens[0][:2] == ("name", "net"):
        tokens = tokens[1:]
    segments: list[str] = []
    grad = data = False
    index: tuple[Any, ...] | None = None
    index_text = ""
    for position, (kind, value, column) in enumerate(tokens):
        last = position == len(tokens) - 1
        if kind == "name" and value in ("data", "grad") and segments:
            if value == "grad":
                grad = True
            else:
                data = True
            continue
        if kind == "name":
            if value.startswith("__"):
                raise ExpressionError(f"{value} is not allowed in a tensor path",
                                      where=f"column {column + 1}")
            if grad or data or index is not None:
                raise ExpressionError(f"nothing may follow .grad/.data or an index: {value}",
                                      where=f"column {column + 1}")
            segments.append(value)
            continue
        body = value.strip()
        quoted = len(body) >= 2 and body[0] == body[-1] and body[0] in "'\"" \
            and body[1:-1].replace("_", "").isalnum()
        if quoted and not (grad or data):
            segments.append(body[1:-1])
        elif body.isdigit() and not (grad or data) and not _names_tensor(tokens, position):
            segments.append(body)
        else:
            if not last:
                raise ExpressionError("an index must come last", where=f"column {column + 1}")
            index, index_text = parse_index(body, column=column + 1)
    if not segments:
        raise ExpressionError("no module or tensor named")
    return TensorPath(tuple(segments), grad, data, index, index_text)


def _names_tensor(tokens: list[tuple[str, Any, int]], position: int) -> bool:
    """A bracket is an element index when it is the last token and a non-numeric name
    (a tensor) comes before it: `weight[0]`; `net[2]` (module) otherwise."""
    if position != len(tokens) - 1:
        return False
    previous = [t for t in tokens[:position] if t[0] == "name"]
    return bool(previous) and not previous[-1][1].isdigit()


@dataclass(frozen=True)
class Assignment:
    """`net[2].weight.data[0, 0] = 100` parsed: where to write and what, nothing run."""

    target: TensorPath
    value: Expression


def _split_assignment(text: str) -> tuple[str, str, int]:
    depth = 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(ch, 0)
        if ch == "=" and depth == 0:
            before, after = text[i - 1: i], text[i + 1: i + 2]
            if (before in "=!<>" and before) or after == "=":
                continue
            return text[:i], text[i + 1:], i + 1
    raise ExpressionError("an assignment needs PATH = VALUE, e.g. 0.weight[0, 0] = 100")


def parse_assignment(text: str, *, names: frozenset[str] | set[str] = frozenset()) -> Assignment:
    """Parse `PATH = EXPR` (`0.weight = torch.ones(2, 2)`, `2.bias[0:3] = 0.5`)."""
    target_text, value_text, offset = _split_assignment(text)
    target = parse_tensor_path(target_text)
    if target.grad:
        raise ExpressionError("a gradient cannot be set (set the parameter instead)",
                              where="column 1")
    try:
        value = parse_expression(value_text, names=names)
    except ExpressionError as error:
        if error.where.startswith("column "):
            column = int(error.where.split()[1]) + offset
            column += len(value_text) - len(value_text.lstrip())
            raise ExpressionError(error.message, where=f"column {column}") from None
        raise
    return Assignment(target, value)
