"""Typed block arguments: what a value may be, how a typed-in string becomes one, and how it
is written back as Python.

The palette's forms hand us strings ("3", "(5, 3)", "true"), TOML files hand us ints, floats,
bools and lists; both go through `Arg.coerce`, so a value is checked the same way wherever it
comes from, and a refusal names the argument, the value and what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tuilab.core.errors import ArgumentError

# Larger than any real layer size, and well inside int64: a bigger value would reach torch's C++
# argument parser and come back as a 40-line backtrace.
MAX_INT = 2**40

ARG_KINDS = ("int", "float", "bool", "choice", "size", "ints", "str")


@dataclass(frozen=True)
class Arg:
    """One constructor argument of a block.

    kind: "int", "float", "bool", "choice" (one of `choices`), "size" (an int, or a tuple of
    `dims` ints, as PyTorch's kernel_size/stride/padding take), "ints" (a tuple of ints of any
    length ≥ 1, e.g. LayerNorm's normalized_shape) or "str".
    """

    name: str
    kind: str
    default: Any
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    dims: int = 1
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ARG_KINDS:
            raise ValueError(f"unknown argument kind {self.kind!r} for {self.name!r}")

    # --- what is allowed ------------------------------------------------------------------
    def allowed(self) -> str:
        """The rule in words, for error messages and the form's hint line."""
        text = {
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
            "choice": "one of " + ", ".join(repr(c) for c in self.choices),
            "size": (
                "an integer" if self.dims == 1 else f"an integer or a tuple of {self.dims} integers"
            ),
            "ints": "a tuple of integers, e.g. (4, 5)",
            "str": "text",
        }[self.kind]
        bounds = self._bounds_text()
        if bounds:
            text += f" {bounds}"
        if self.nullable:
            text += ", or none"
        return text

    def _bounds_text(self) -> str:
        if self.kind not in ("int", "float", "size", "ints"):
            return ""
        lo, hi = self.minimum, self.maximum
        fmt = _number_text
        if lo is not None and hi is not None:
            return f"from {fmt(lo)} to {fmt(hi)}"
        if lo is not None:
            return f"≥ {fmt(lo)}"
        if hi is not None:
            return f"≤ {fmt(hi)}"
        return ""

    # --- checking -------------------------------------------------------------------------
    def coerce(self, value: Any, *, where: str = "") -> Any:
        """Turn `value` (a form string or a TOML value) into this argument's Python value."""
        try:
            return self._coerce(value)
        except ArgumentError as error:
            if where and not error.where:
                error.where = where
            raise
        except (TypeError, ValueError, OverflowError):
            raise self._refuse(value, where) from None

    def _refuse(self, value: Any, where: str) -> ArgumentError:
        return ArgumentError(
            f"argument '{self.name}' = {value!r} is not allowed: expected {self.allowed()}",
            where=where,
        )

    def _coerce(self, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if self.nullable and value.lower() in ("", "none", "null"):
                return None
        if value is None:
            if self.nullable:
                return None
            raise ValueError("none")
        kind = self.kind
        if kind == "bool":
            return self._bool(value)
        if kind == "int":
            return self._bounded(self._int(value))
        if kind == "float":
            return self._bounded(self._float(value))
        if kind == "choice":
            if isinstance(value, str) and value in self.choices:
                return value
            raise ValueError(value)
        if kind == "str":
            if isinstance(value, str):
                return value
            raise ValueError(value)
        items = self._int_items(value)
        if kind == "size":
            if len(items) == 1:
                return items[0]
            if len(items) != self.dims:
                raise ValueError(value)
            return tuple(items)
        if not items:
            raise ValueError(value)
        return tuple(items)

    def _bool(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError(value)

    @staticmethod
    def _int(value: Any) -> int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value, 10)
        raise TypeError(value)

    @staticmethod
    def _float(value: Any) -> float:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        return number

    def _bounded(self, number: Any) -> Any:
        if isinstance(number, int) and abs(number) > MAX_INT:
            raise ArgumentError(
                f"argument '{self.name}' = {number} is too large: expected an integer up to "
                f"{MAX_INT:,} (2⁴⁰) at most; PyTorch would fail on it in C++")
        if self.minimum is not None and number < self.minimum:
            raise ValueError(number)
        if self.maximum is not None and number > self.maximum:
            raise ValueError(number)
        return number

    def _int_items(self, value: Any) -> list[int]:
        if isinstance(value, str):
            text = value.strip().strip("()[]")
            parts = [p for p in (s.strip() for s in text.split(",")) if p]
            return [self._bounded(self._int(p)) for p in parts]
        if isinstance(value, (list, tuple)):
            return [self._bounded(self._int(v)) for v in value]
        return [self._bounded(self._int(value))]

    # --- writing back ---------------------------------------------------------------------
    def python(self, value: Any) -> str:
        """The value as Python source, for the code log and the exporter."""
        if isinstance(value, tuple):
            inner = ", ".join(repr(v) for v in value)
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        return repr(value)

    def text(self, value: Any) -> str:
        """The value as a form field shows it (the inverse of `coerce` on strings)."""
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, tuple):
            return ", ".join(str(v) for v in value)
        return str(value)


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(number)


# Small constructors keep the catalog's table readable.
def int_arg(name: str, default: int | None, minimum: int | None = None, doc: str = "", *,
            maximum: int | None = None, nullable: bool = False) -> Arg:
    return Arg(name, "int", default, doc, minimum=minimum, maximum=maximum, nullable=nullable)


def float_arg(name: str, default: float | None, minimum: float | None = None, doc: str = "", *,
              maximum: float | None = None, nullable: bool = False) -> Arg:
    return Arg(name, "float", default, doc, minimum=minimum, maximum=maximum, nullable=nullable)


def bool_arg(name: str, default: bool, doc: str = "") -> Arg:
    return Arg(name, "bool", default, doc)


def choice_arg(name: str, default: str, choices: tuple[str, ...], doc: str = "") -> Arg:
    return Arg(name, "choice", default, doc, choices=choices)


def size_arg(name: str, default: int | tuple[int, ...] | None, dims: int, minimum: int = 1,
             doc: str = "", *, nullable: bool = False) -> Arg:
    return Arg(name, "size", default, doc, minimum=minimum, dims=dims, nullable=nullable)


def ints_arg(name: str, default: tuple[int, ...], minimum: int = 1, doc: str = "") -> Arg:
    return Arg(name, "ints", default, doc, minimum=minimum)


def str_arg(name: str, default: str, doc: str = "") -> Arg:
    return Arg(name, "str", default, doc)
