"""The `tuilab` command.

`tuilab [SPEC]` opens the lab (SPEC: a preset name, a workspace .toml, or `file.py:NAME` for
the user's own module; the `mlp` preset when omitted). The headless subcommands (`presets`,
`summary`, `export`, `train`, `bench`, `forward`, `lessons`) print with rich; `lesson ID`
opens the app on a lesson. Each subcommand imports
what it needs only when it runs, so `tuilab --help` is instant and the app's first frame
does not wait for PyTorch. Bad input exits with code 2 and one line saying what and where.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from tuilab import __version__

SUBCOMMANDS = ("presets", "blocks", "summary", "export", "train", "bench", "forward",
               "lessons", "lesson")


# Shown in `tuilab train --help` (cli.py loads no torch to print help; a test holds these to
# core.tasks.TASKS and core.runtime.DTYPES).
TASK_NAMES = ("teacher", "spirals", "moons", "circles", "xor", "blobs", "sine", "sine_seq",
              "tokens", "digits")
DTYPE_CHOICES = ("float32", "float16", "bfloat16", "float64")
MAX_STEPS = 10_000_000
MAX_BATCH = 1_048_576
_JSON_HELP = "print one JSON document on stdout instead of tables (default: off)"


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``, so a huge number is refused by
    the argument check (exit 2) rather than deep inside PyTorch."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: give {low} to {high:,}")
        return value

    parse.__name__ = "int"
    return parse


def _app_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuilab",
        description="A terminal lab for PyTorch models. Subcommands: "
        + ", ".join(SUBCOMMANDS) + " (tuilab COMMAND --help).",
    )
    parser.add_argument(
        "spec", nargs="?", default="mlp",
        help="preset name, workspace .toml, or path/to/file.py:NAME (default: mlp)",
    )
    parser.add_argument("--input-shape", help="input shape with batch, e.g. 1,1,32,32 "
                        "(default: the model's own)")
    parser.add_argument("--version", action="version", version=f"tuilab {__version__}")
    return parser


def _command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuilab")
    sub = parser.add_subparsers(dest="command", required=True)
    spec_help = "a preset name (tuilab presets lists them) or a workspace .toml file"

    presets = sub.add_parser("presets", help="list the preset models")
    presets.add_argument("--json", action="store_true", help=_JSON_HELP)

    blocks = sub.add_parser("blocks", help="list the palette's blocks (what a workspace may use)")
    blocks.add_argument("--json", action="store_true", help=_JSON_HELP)

    summary = sub.add_parser(
        "summary", help="layer table: output shapes, parameters, MACs, memory plan",
        description="Output shapes, parameters, MACs and the memory plan of every layer, "
        "found on the meta device. MACs are multiply-accumulates (one multiply and its add; "
        "FLOPs are about 2x MACs) of the matrix products - Linear, convolutions, matmul/bmm/"
        "einsum, attention - charged to the module that ran them; bias additions, "
        "activations, norms and pooling are not counted. The memory plan runs one training "
        "step (forward, loss, backward, optimizer step) on meta and reports its peak.")
    summary.add_argument("spec", help="preset name, workspace .toml, or path/to/file.py:NAME "
                         "(naming a .py file imports it: its path and SHA-256 go to stderr)")
    summary.add_argument("--input-shape", help="input shape, batch first, e.g. 1,1,32,32 "
                         "(default: the model's own input_shape)")
    summary.add_argument("--optimizer", default="adam",
                         choices=("adam", "adamw", "sgd", "sgd-momentum"),
                         help="optimizer of the memory plan: adam, adamw, sgd or "
                         "sgd-momentum (default: adam)")
    summary.add_argument("--dtype", choices=("float32", "float16", "bfloat16", "float64"),
                         help="dtype of the memory plan: float32, float16, bfloat16 or "
                         "float64 (default: the model's)")
    summary.add_argument("--json", action="store_true", help=_JSON_HELP)

    export = sub.add_parser("export", help="standalone PyTorch source for a model")
    export.add_argument("spec", help=spec_help)
    export.add_argument("-o", "--output", help="write to this file instead of stdout "
                        "(default: stdout)")
    export.add_argument("--train", action="store_true",
                        help="a training script (model, task, settings, loop) for python or "
                        "torchrun, instead of the model alone (default: the model alone)")

    train = sub.add_parser(
        "train", help="train a model on its task, headless",
        description="Train a model headless. Each setting comes from the command line, else "
        "the workspace's [training] table, else the task's defaults (adam, lr 0.01, 300 "
        "steps, batch 64 for most tasks).")
    train.add_argument("spec", help=spec_help)
    train.add_argument("--steps", type=bounded_int(1, MAX_STEPS),
                       help=f"optimizer steps, 1 to {MAX_STEPS:,} (default: the task's, "
                       "e.g. 300)")
    train.add_argument("--task", help="what to learn: one of " + ", ".join(TASK_NAMES)
                       + ", or a .csv/.npz/.pt data file (default: the model's own task)")
    train.add_argument("--optimizer", choices=("sgd", "adam", "adamw"),
                       help="sgd, adam or adamw (default: adam)")
    train.add_argument("--lr", type=float, help="learning rate, a positive number "
                       "(default: the task's, 0.01 or 0.003)")
    train.add_argument("--batch-size", type=bounded_int(1, MAX_BATCH),
                       help=f"samples per step, 1 to {MAX_BATCH:,} (default: 64)")
    train.add_argument("--device", default="cpu",
                       help="cpu, cuda, cuda:N or mps, where available (default: cpu)")
    train.add_argument("--dtype", default="float32", choices=DTYPE_CHOICES,
                       help="precision of the run: " + ", ".join(DTYPE_CHOICES)
                       + " (default: float32)")
    train.add_argument("--seed", type=bounded_int(0, 2**63 - 1), default=0,
                       help="random seed for the weights and the data (default: 0)")
    train.add_argument("--threads", type=int,
                       help="torch's intra-op threads (default: 1 for a model whose step is "
                            "too small to split, else torch's default)")
    train.add_argument("--load-weights", metavar="FILE",
                       help="start from these weights: .safetensors, or a .pt holding tensors "
                       "only (default: fresh weights)")
    train.add_argument("--save-weights", metavar="FILE",
                       help="after the run, save the weights to this .safetensors file "
                       "(default: not saved)")
    train.add_argument("--json", action="store_true",
                       help="print one JSON object with the losses on stdout instead of the "
                       "progress bar and plot (default: off)")
    train.add_argument("--nproc", type=int,
                       help="run the exported training script on N processes with torchrun "
                       "(default: one process, in this one)")

    from tuilab.cli_forward import add_parser as add_forward

    add_forward(sub)

    from tuilab.cli_lessons import add_parsers as add_lessons

    add_lessons(sub)

    bench = sub.add_parser("bench", help="measure tuilab against bare PyTorch, side by side")
    bench.add_argument("--quick", action="store_true",
                       help="fewer rounds and smaller models (default: the full run)")
    bench.add_argument("--json", action="store_true", help=_JSON_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        return _run_command(_command_parser().parse_args(args))
    options = _app_parser().parse_args(args)
    from tuilab.app.launch import launch

    return launch(options.spec, input_shape=options.input_shape)


def _run_command(options: argparse.Namespace) -> int:
    from rich.console import Console

    # Only the bench's own report uses markup; the other commands print what users and models
    # wrote (a model named "[/bold]"), which must never be read as markup.
    markup = options.command == "bench"
    console = Console(markup=markup)
    errors = Console(stderr=True, markup=markup)
    if options.command == "presets":
        from tuilab.cli_commands import cmd_presets

        return cmd_presets(console, as_json=options.json, err_console=errors)
    if options.command == "blocks":
        from tuilab.cli_commands import cmd_blocks

        return cmd_blocks(console, as_json=options.json)
    if options.command == "summary":
        from tuilab.cli_commands import cmd_summary

        return cmd_summary(console, options.spec, input_shape=options.input_shape,
                           as_json=options.json, err_console=errors,
                           optimizer=options.optimizer, dtype=options.dtype)
    if options.command == "export":
        if options.train:
            from tuilab.cli_torchrun import cmd_export_train

            return cmd_export_train(console, options.spec, output=options.output,
                                    err_console=errors)
        from tuilab.cli_commands import cmd_export

        return cmd_export(console, options.spec, output=options.output, err_console=errors)
    if options.command == "train":
        from tuilab.cli_train import cmd_train

        return cmd_train(
            console, options.spec, steps=options.steps, task=options.task,
            optimizer=options.optimizer, lr=options.lr, batch_size=options.batch_size,
            device=options.device, dtype=options.dtype, seed=options.seed,
            load_weights=options.load_weights, save_weights=options.save_weights,
            as_json=options.json, err_console=errors, threads=options.threads,
            nproc=options.nproc,
        )
    if options.command == "forward":
        from tuilab.cli_forward import cmd_forward

        return cmd_forward(console, options, err_console=errors)
    if options.command == "lessons":
        from tuilab.cli_lessons import cmd_lessons

        return cmd_lessons(console, check=options.check, as_json=options.json,
                           err_console=errors)
    if options.command == "lesson":
        from tuilab.cli_lessons import cmd_lesson

        return cmd_lesson(options.id, step=options.step, err_console=errors)
    from tuilab.bench.run import cmd_bench

    return cmd_bench(console, quick=options.quick, as_json=options.json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
