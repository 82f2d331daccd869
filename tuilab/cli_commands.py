"""The headless commands `tuilab presets`, `tuilab summary` and `tuilab export`.

Each function prints with the rich Console it is given and returns the process exit code:
0 when all is well, 1 when the model does not fit its input (`summary` still prints the
partial table, the failing row in red, and the message and hint under it), 2 when the input
itself is wrong (an unknown preset, a broken file, a bad --input-shape, an unwritable output),
said in one line starting with "error:" and never as a traceback. `--json` output is one JSON
document on stdout, also for exit 1, so scripts can read what fitted and what failed.

Errors go to ``err_console`` when the caller gives one (the CLI passes stderr) and to
``console`` otherwise. torch's messages contain ``[...]``: everything that comes from a model
is printed as plain text, never as rich markup.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from tuilab.core.units import size_text

if TYPE_CHECKING:
    from rich.console import Console

    from tuilab.core.memory import MemoryPlan
    from tuilab.core.shapes import Summary
    from tuilab.core.spec import ModelSpec

EXIT_OK = 0
EXIT_DOES_NOT_FIT = 1
EXIT_BAD_INPUT = 2


def fail(console: Console, err_console: Console | None, message: str,
         code: int = EXIT_BAD_INPUT) -> int:
    """Print one error line (to ``err_console`` when given) and return the exit code.

    The message may quote what the user typed or a file holds: control characters are shown
    escaped, never sent to the terminal."""
    (err_console or console).print(plain(f"error: {message}", style="bold red"), soft_wrap=True)
    return code


def plain(text: str, style: str = "") -> Text:
    """Text for the terminal from anything a user or a model wrote: never parsed as markup,
    its control characters shown as escapes (``\\x1b``) rather than obeyed."""
    from tuilab.core.safe_text import printable

    return Text(printable(text, lines=True), style=style)


def _print_json(console: Console, data: Any) -> None:
    console.out(json.dumps(data, indent=2), highlight=False)


def _load(spec_arg: str) -> ModelSpec:
    from tuilab.core.workspace import load_spec_arg

    return load_spec_arg(spec_arg)


# --- presets --------------------------------------------------------------------------------
def cmd_presets(console: Console, *, as_json: bool, err_console: Console | None = None) -> int:
    """List the shipped preset models with their one-line descriptions."""
    from tuilab.core.errors import TuilabError
    from tuilab.core.workspace import list_presets

    try:
        presets = list_presets()
    except (TuilabError, OSError) as error:
        return fail(console, err_console, str(error))
    if as_json:
        _print_json(console, [{"name": p.name, "description": p.description} for p in presets])
        return EXIT_OK
    table = Table(title="tuilab presets", title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("description")
    for preset in presets:
        table.add_row(Text(preset.name), Text(preset.description))
    console.print(table)
    console.print(Text("open one with: tuilab NAME   ·   tuilab summary NAME", style="dim"))
    return EXIT_OK


# --- blocks ---------------------------------------------------------------------------------
def cmd_blocks(console: Console, *, as_json: bool) -> int:
    """The palette: every block a workspace file may name, by family, with what it does."""
    from tuilab.core.catalog import blocks_by_family

    families = blocks_by_family()
    if as_json:
        _print_json(console, [{"name": b.name, "family": family, "description": b.description}
                              for family, blocks in families.items() for b in blocks])
        return EXIT_OK
    table = Table(title="tuilab blocks", title_justify="left")
    table.add_column("family", style="dim", no_wrap=True)
    table.add_column("block", style="bold cyan", no_wrap=True)
    table.add_column("what it does")
    for family, blocks in families.items():
        for block in blocks:
            table.add_row(Text(family), Text(block.name), Text(block.description))
    console.print(table)
    return EXIT_OK


# --- summary --------------------------------------------------------------------------------
def cmd_summary(console: Console, spec_arg: str, *, input_shape: str | None, as_json: bool,
                err_console: Console | None = None, optimizer: str = "adam",
                dtype: str | None = None) -> int:
    """The layer table and memory plan of a preset, a workspace file, or `file.py:NAME`.

    Naming a Python file on the command line is the consent to import it (its path and
    SHA-256 go to stderr first); a file that is missing, lacks NAME or fails to import is one
    error line naming the cause and, for an import error, the line.
    """
    from tuilab.core.edits import check_input_shape
    from tuilab.core.errors import TuilabError
    from tuilab.core.usercode import is_user_code_arg

    try:
        shape = check_input_shape(input_shape) if input_shape is not None else None
        if is_user_code_arg(spec_arg):
            summary, model, tokens, vocab = _summary_of_file(spec_arg, shape, err_console
                                                             or console)
        else:
            from tuilab.core.build import build
            from tuilab.core.shapes import summarize_spec  # PyTorch loads for a valid request

            spec = _load(spec_arg)
            summary = summarize_spec(spec, shape)
            model, tokens, vocab = None, spec.takes_tokens, spec.vocab_size
            if summary.error is None:
                model = build(spec, device="meta")
    except TuilabError as error:
        return fail(console, err_console, str(error))
    plan, plan_error = (None, None) if model is None else _plan(
        model, summary, tokens, vocab, optimizer, dtype)
    if as_json:
        data = summary.to_json()
        data["memory"] = None if plan is None else plan.to_json()
        if plan_error:
            data["memory_error"] = plan_error
        _print_json(console, data)
    else:
        print_summary(console, summary, plan, err_console=err_console)
        if plan_error:
            console.print(Text(f"memory plan: {plan_error}", style="yellow"), soft_wrap=True)
    return EXIT_OK if summary.error is None else EXIT_DOES_NOT_FIT


def _summary_of_file(spec_arg: str, shape: tuple[int, ...] | None, notes: Console
                     ) -> tuple[Summary, Any, bool, int | None]:
    """Import `file.py:NAME` (after saying which file, by path and SHA-256) and summarize it."""
    from tuilab.core.shapes import summarize_module
    from tuilab.core.usercode import describe, guess_input, load_user_module, split_arg

    path, _ = split_arg(spec_arg)
    resolved, digest = describe(path)
    notes.print(Text(f"importing {resolved} (sha256 {digest})"), soft_wrap=True)
    module, name = load_user_module(spec_arg)
    guessed, tokens, vocab = guess_input(module)
    summary = summarize_module(module, shape or guessed, takes_tokens=tokens, vocab_size=vocab,
                               name=name)
    return summary, (module if summary.error is None else None), tokens, vocab


def _plan(model: Any, summary: Summary, tokens: bool, vocab: int | None,
          optimizer: str, dtype: str | None) -> tuple[Any, str | None]:
    """The memory plan, or why there is none (a forward that needs real values, say)."""
    import torch

    from tuilab.core.memory import plan_memory
    from tuilab.core.shapes import _message

    # The summary's forward ran on meta in the model's own dtype: its peak is the plan's.
    forward_peak = summary.forward_peak_bytes if summary.method == "meta" and dtype is None \
        else None
    try:
        return plan_memory(model, summary.input_shape, takes_tokens=tokens, vocab_size=vocab,
                           optimizer=optimizer,
                           dtype=None if dtype is None else getattr(torch, dtype),
                           forward_peak=forward_peak), None
    except Exception as error:  # the plan is extra information; the table still stands
        return None, _message(error)


def print_summary(console: Console, summary: Summary, plan: MemoryPlan | None = None, *,
                  err_console: Console | None = None) -> None:
    """The rich table: path indented by depth, type, output shape, params, MACs, saved
    activations (with a plan); then the totals and the memory plan. The error of a model
    that does not fit goes to ``err_console`` (stderr) when given."""
    failing = summary.error.path if summary.error is not None else None
    table = Table(title=plain(f"{summary.name} · input {_shape(summary.input_shape)}"),
                  title_justify="left", show_lines=False)
    table.add_column("layer", no_wrap=True)
    table.add_column("type", style="cyan", no_wrap=True)
    table.add_column("output shape", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("MACs", justify="right", no_wrap=True)
    saved = _saved_by_row(summary, plan)
    if saved is not None:
        table.add_column("saved for backward", justify="right", no_wrap=True)
    for layer in summary.layers:
        label = "  " * layer.depth + (layer.path or "(model)")
        shape = _shape(layer.output_shape) if layer.output_shape is not None else "—"
        params = f"{layer.params:,}"
        if layer.tied_params:
            params += f" ({', '.join(layer.tied_params)} shared with {layer.shared_with})"
        elif layer.shared_with is not None:
            params += f" (shared with {layer.shared_with})" if layer.calls == 0 else ""
        calls = f" ×{layer.calls}" if layer.calls > 1 else ""
        style = "bold red" if layer.path == failing else ("dim" if layer.output_shape is None
                                                          else "")
        cells = [plain(label), plain(layer.type + calls), Text(shape), Text(params),
                 Text(_human(layer.macs) if layer.macs else "–")]
        if saved is not None:
            nbytes = saved.get(layer.path, 0)
            cells.append(Text(size_text(nbytes) if nbytes else "–"))
        table.add_row(*cells, style=style)
    console.print(table)
    shared = sum(1 for layer in summary.layers if layer.shared_with is not None and
                 (layer.calls == 0 or layer.tied_params))
    lines = [
        f"total params:     {summary.total_params:,}"
        + (" (shared layers and weights counted once)" if shared else ""),
        f"trainable params: {summary.trainable_params:,}",
        f"param memory:     {size_text(summary.param_bytes, digits=2)}",
        f"MACs:             {_human(summary.total_macs)} ({summary.total_macs:,})",
        f"output shape:     {_shape(summary.output_shape)}",
        "shapes found on:  "
        + ("the meta device (nothing allocated)" if summary.method == "meta"
           else f"{summary.method} (this forward needs real values)"),
    ]
    if plan is not None:
        lines.extend(memory_lines(plan))
    for line in lines:
        console.print(Text(line))
    if summary.error is not None:
        where = summary.error.path or "(model)"
        errors = err_console or console
        errors.print(plain(f"error at {where}: {summary.error.message}", style="bold red"),
                     soft_wrap=True)
        if summary.error.hint:
            errors.print(plain(f"hint: {summary.error.hint}", style="yellow"), soft_wrap=True)


def memory_lines(plan: MemoryPlan) -> list[str]:
    """The memory plan as the summary's closing lines."""
    fits = ", ".join(f"{device} {'yes' if ok else 'NO'} ({size_text(plan.free[device])} free)"
                     for device, ok in plan.fits.items())
    return [
        f"memory plan ({plan.dtype}, {plan.optimizer}, batch of the input):",
        f"  parameters {size_text(plan.params_bytes)} · buffers {size_text(plan.buffers_bytes)}"
        f" · gradients {size_text(plan.grads_bytes)}"
        f" · optimizer state {size_text(plan.optimizer_bytes)}",
        f"  activations saved for backward {size_text(plan.activations_bytes)}",
        f"  peak: forward (no grad) {size_text(plan.forward_peak_bytes)}"
        f" · training step {size_text(plan.train_peak_bytes)}"
        f" (foreach, as on CUDA: {size_text(plan.foreach_train_peak_bytes)})",
        f"  fits: {fits}",
    ]


def _saved_by_row(summary: Summary, plan: MemoryPlan | None) -> dict[str, int] | None:
    """Saved activations per row, each container holding the sum of the rows below it."""
    if plan is None:
        return None
    totals: dict[str, int] = {}
    for path, nbytes in plan.activations_by_layer.items():
        parts = path.split(".") if path else []
        for depth in range(len(parts) + 1):
            key = ".".join(parts[:depth])
            totals[key] = totals.get(key, 0) + nbytes
    return totals


def _shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "—"
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _human(count: int) -> str:
    value = float(count)
    for unit in ("", "K", "M", "G", "T", "P"):
        if abs(value) < 1000 or unit == "P":
            return f"{int(value)}" if not unit else f"{value:.2f} {unit}"
        value /= 1000
    return str(count)  # pragma: no cover - the loop always returns


# --- export ---------------------------------------------------------------------------------
def cmd_export(console: Console, spec_arg: str, *, output: str | None,
               err_console: Console | None = None) -> int:
    """Standalone PyTorch source for the model: to a file (written atomically) or stdout."""
    from pathlib import Path

    from tuilab.core.errors import TuilabError
    from tuilab.core.export import export_source
    from tuilab.core.workspace import write_atomic

    try:
        spec = _load(spec_arg)
    except TuilabError as error:
        return fail(console, err_console, str(error))
    source = export_source(spec)
    if output is None:
        console.out(source, highlight=False, end="")
        return EXIT_OK
    path = Path(output)
    if path.is_dir():
        return fail(console, err_console, f"{output}: is a folder; give a file name")
    try:
        write_atomic(path, source)
    except TuilabError as error:
        return fail(console, err_console, str(error))
    # The Python that runs tuilab has PyTorch; a bare `python` may be another one, or none.
    console.print(plain(f"wrote {path} ({spec.name}); run it with: "
                        f"{shlex.quote(sys.executable)} {shlex.quote(str(path))}"))
    return EXIT_OK
