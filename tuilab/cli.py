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
from collections.abc import Sequence

from tuilab import __version__

SUBCOMMANDS = ("presets", "summary", "export", "train", "bench", "forward", "lessons", "lesson")


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
    parser.add_argument("--input-shape", help="input shape with batch, e.g. 1,1,32,32")
    parser.add_argument("--version", action="version", version=f"tuilab {__version__}")
    return parser


def _command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuilab")
    sub = parser.add_subparsers(dest="command", required=True)

    presets = sub.add_parser("presets", help="list the preset models")
    presets.add_argument("--json", action="store_true")

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
    summary.add_argument("--input-shape", help="e.g. 1,1,32,32 (batch first)")
    summary.add_argument("--optimizer", default="adam",
                         choices=("adam", "adamw", "sgd", "sgd-momentum"),
                         help="optimizer of the memory plan (default: adam)")
    summary.add_argument("--dtype", choices=("float32", "float16", "bfloat16", "float64"),
                         help="dtype of the memory plan (default: the model's)")
    summary.add_argument("--json", action="store_true")

    export = sub.add_parser("export", help="standalone PyTorch source for a model")
    export.add_argument("spec")
    export.add_argument("-o", "--output", help="write to this file instead of stdout")
    export.add_argument("--train", action="store_true",
                        help="a training script (model, task, settings, loop) for python or "
                        "torchrun, instead of the model alone")

    train = sub.add_parser("train", help="train a model on its task, headless")
    train.add_argument("spec")
    train.add_argument("--steps", type=int)
    train.add_argument("--task")
    train.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    train.add_argument("--lr", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--device", default="cpu")
    train.add_argument("--dtype", default="float32")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int,
                       help="torch's intra-op threads (default: 1 for a model whose step is "
                            "too small to split, else torch's default)")
    train.add_argument("--load-weights")
    train.add_argument("--save-weights")
    train.add_argument("--json", action="store_true")
    train.add_argument("--nproc", type=int,
                       help="run the exported training script on N processes with torchrun")

    from tuilab.cli_forward import add_parser as add_forward

    add_forward(sub)

    from tuilab.cli_lessons import add_parsers as add_lessons

    add_lessons(sub)

    bench = sub.add_parser("bench", help="measure tuilab against bare PyTorch, side by side")
    bench.add_argument("--quick", action="store_true", help="fewer rounds and smaller models")
    bench.add_argument("--json", action="store_true")
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
