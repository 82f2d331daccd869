"""`tuilab forward SPEC`: one forward pass (and optionally backward) with values, headless.

The same engine as the app (a `Lab`): `--input` chooses the input from the expression
language, `--set PATH=EXPR` assigns parameters or buffers, `--backward [EXPR]` runs
`out.backward(EXPR)`, `--show PATH` prints any parameter, buffer, `.grad` or layer output.
Every expression is parsed before anything is built or run, so a bad one exits 2 with one
line and nothing ran. Exit 0: ran; 1: the model failed on this input (the failing node is
named); 2: bad input. `--json` prints one document: input, output, layers, tensors, error.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from rich.text import Text

from tuilab.cli_commands import EXIT_BAD_INPUT, EXIT_DOES_NOT_FIT, EXIT_OK

if TYPE_CHECKING:
    from rich.console import Console


def add_parser(sub: Any) -> None:
    """Register `forward` on the CLI's subparsers."""
    forward = sub.add_parser(
        "forward", help="run one forward pass and print tensors' values",
        description="Run one forward pass of SPEC on a chosen input and print the values "
        "(torch's own formatting). Expressions use tuilab's input language: literals, "
        "torch.tensor/arange/zeros/ones/full/rand/randn/randint/linspace/eye, "
        ".view/.reshape/.float()/.long()/.T/.unsqueeze, + - * / with numbers.")
    forward.add_argument("spec", help="preset name or workspace .toml")
    forward.add_argument("--input", metavar="EXPR",
                         help="the input, e.g. 'torch.arange(9.).view(3, 3)' (default: the "
                         "workspace's chosen input, else torch.rand of the input shape, seed 0)")
    forward.add_argument("--input-shape", metavar="S",
                         help="shape of a random input, e.g. 1,1,32,32 (default: the spec's)")
    forward.add_argument("--seed", type=int, default=0,
                         help="seed of the random calls in expressions (default: 0)")
    forward.add_argument("--set", action="append", default=[], metavar="PATH=EXPR",
                         help="assign a parameter or buffer before the pass, e.g. "
                         "'0.weight=torch.tensor([[0., 1.], [2., 3.]])' or '2.bias[0]=1'; "
                         "repeatable (default: none)")
    forward.add_argument("--eval", action="store_true",
                         help="run in eval mode (default: train mode, as the lab starts)")
    forward.add_argument("--dtype", default="float32",
                         help="float32, float16, bfloat16 or float64 (default: float32)")
    forward.add_argument("--backward", nargs="?", const="torch.ones_like(out)", default=None,
                         metavar="EXPR",
                         help="then run out.backward(EXPR) (EXPR may use `out`; default "
                         "when given without EXPR: torch.ones_like(out))")
    forward.add_argument("--show", action="append", default=[], metavar="PATH",
                         help="print a parameter, buffer, .grad or layer output, e.g. "
                         "0.weight.grad or net[2].bias; repeatable (default: none)")
    forward.add_argument("--json", action="store_true",
                         help="print one JSON document on stdout (default: off)")


def _check_expressions(options: argparse.Namespace) -> None:
    """Parse every expression and path first: a bad one is refused before anything runs."""
    from tuilab.core.expressions import (
        ExpressionError,
        parse_assignment,
        parse_expression,
        parse_tensor_path,
    )

    checks: list[tuple[str, str, Any]] = []
    if options.input is not None:
        checks.append(("--input", options.input, parse_expression))
    checks += [("--set", text, parse_assignment) for text in options.set]
    if options.backward is not None:
        checks.append(("--backward", options.backward,
                       lambda text: parse_expression(text, names={"out"})))
    checks += [("--show", text, parse_tensor_path) for text in options.show]
    for option, text, check in checks:
        try:
            check(text)
        except ExpressionError as error:
            where = f"{option} {text!r}" + (f", {error.where}" if error.where else "")
            raise ExpressionError(error.message, where=where) from None


def cmd_forward(console: Console, options: argparse.Namespace,
                err_console: Console | None = None) -> int:
    """Run the forward command; returns the exit code (see the module docstring)."""
    from tuilab.core.errors import RunError, TuilabError

    result: dict[str, Any] = {"input": None, "output": None, "layers": [], "tensors": {},
                              "error": None}
    try:
        _check_expressions(options)
        lab = _make_lab(options)
    except TuilabError as error:
        return _failed(console, err_console, options, result, error, EXIT_BAD_INPUT)
    try:
        report, _ = lab.forward()
        if options.backward is not None:
            lab.backward(options.backward)
    except RunError as error:
        return _failed(console, err_console, options, result, error, EXIT_DOES_NOT_FIT)
    except TuilabError as error:
        return _failed(console, err_console, options, result, error, EXIT_BAD_INPUT)
    return _report(console, err_console, options, lab, report, result)


def _make_lab(options: argparse.Namespace) -> Any:
    from tuilab.core.lab import Lab
    from tuilab.core.workspace import load_workspace_arg

    workspace = load_workspace_arg(options.spec)
    if options.input is not None or options.input_shape is not None:
        workspace.input = {}
    lab = Lab.from_workspace(workspace)
    if lab.load_messages:
        from tuilab.core.errors import SpecFileError

        raise SpecFileError(lab.load_messages[0], where=options.spec)
    if lab.on_meta:
        from tuilab.core.errors import ModeError

        raise ModeError(lab.too_large_message(), where="forward")
    lab.set_training(not options.eval)
    if options.dtype != lab.dtype_name:
        lab.set_dtype(options.dtype)
    if options.backward is not None:  # set_dtype probed the forward; the backward must run too
        from tuilab.core.dtype_probe import check_dtype
        from tuilab.core.runtime import model_dtype

        check_dtype(lab.model, model_dtype(lab.model), lab.device, backward=True)
    if options.input_shape is not None:
        lab.set_input_shape(options.input_shape)
    if options.input is not None:
        lab.set_input(options.input, seed=options.seed)
    for text in options.set:
        lab.set_value(text, seed=options.seed)
    return lab


def _failed(console: Console, err_console: Console | None, options: argparse.Namespace,
            result: dict[str, Any], error: Any, code: int) -> int:
    from tuilab.cli_commands import fail

    if options.json:
        result["error"] = {"message": error.message, "where": error.where, "exit": code}
        console.out(json.dumps(result, indent=2), highlight=False)
        return code
    return fail(console, err_console, str(error), code)


def _report(console: Console, err_console: Console | None, options: argparse.Namespace,
            lab: Any, report: Any, result: dict[str, Any]) -> int:
    from tuilab.core.errors import TuilabError
    from tuilab.core.values import describe_json, format_tensor, resolve

    x = lab.current_input.tensor
    out = lab.layer_outputs.get("")
    shown = []
    try:
        for text in options.show:
            shown.append(resolve(lab.model, text, outputs=lab.layer_outputs))
    except TuilabError as error:
        return _failed(console, err_console, options, result, error, EXIT_BAD_INPUT)
    if options.json:
        result["input"] = {"expression": lab.current_input.text, **describe_json(x)}
        result["output"] = describe_json(out)
        result["layers"] = [_layer_json(row) for row in report.layers]
        result["tensors"] = {item.text: describe_json(item.tensor) for item in shown}
        console.out(json.dumps(result, indent=2), highlight=False)
        return EXIT_OK
    lines = [f"x = {lab.current_input.text}", format_tensor(x), "",
             "out = net(x)", format_tensor(out) if out is not None else "(no tensor output)"]
    for item in shown:
        lines += ["", item.text, format_tensor(item.tensor)]
    console.out(Text("\n".join(lines)), highlight=False)
    return EXIT_OK


def _layer_json(row: Any) -> dict[str, Any]:
    from tuilab.core.values import json_number

    stats = {k: json_number(getattr(row, k)) for k in ("mean", "std", "min", "max",
                                                         "zero_fraction")}
    return {"path": row.path, "type": row.type,
            "shape": list(row.output_shape) if row.output_shape is not None else None,
            "stats": stats}
