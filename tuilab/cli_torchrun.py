"""`tuilab export SPEC --train`: the model, its task and its training settings as one
training script that runs alone (`python train.py`) or under torchrun.

A module of its own so that the export and train commands only gain a branch each; the
script itself is ``core.export_train``'s, the torchrun launcher ``core.distributed``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text

from tuilab.cli_commands import EXIT_OK, fail

if TYPE_CHECKING:
    from rich.console import Console


def cmd_export_train(console: Console, spec_arg: str, *, output: str | None,
                     err_console: Console | None = None) -> int:
    """Write the training script (to ``output``, atomically, or to stdout)."""
    from tuilab.cli_train import _settings
    from tuilab.core.distributed import write_train_script
    from tuilab.core.errors import TuilabError
    from tuilab.core.export_train import export_train_source, needs_digits
    from tuilab.core.workspace import load_workspace_arg

    try:
        workspace = load_workspace_arg(spec_arg)
    except (TuilabError, OSError) as err:
        return fail(console, err_console, str(err))
    spec = workspace.spec
    task = str(workspace.training.get("task") or spec.task)
    settings = _settings(task, workspace.training, {})
    if output is None:
        console.out(export_train_source(spec, settings), highlight=False, end="")
        return EXIT_OK
    path = Path(output)
    if path.is_dir():
        return fail(console, err_console, f"{output}: is a folder; give a file name")
    try:
        written = write_train_script(spec, settings, path)
    except (TuilabError, OSError) as err:
        return fail(console, err_console, str(err))
    extra = f" and {written[1]}" if len(written) > 1 else ""
    beside = (" (it reads the digits from digits.npz beside it, or --data PATH)"
              if needs_digits(task) else "")
    console.print(Text(
        f"wrote {path}{extra} ({spec.name}, task {task}){beside}; run it with:\n"
        f"  python {path} --steps 200 --metrics metrics.jsonl\n"
        f"  torchrun --standalone --nproc_per_node=2 {path} --steps 200"))
    return EXIT_OK
