"""Spec + training settings → one standalone training script that runs under torchrun.

Why a template and not generated code: the loop, the process group, DDP/FSDP, the
checkpoints and the metrics are the same for every model, so they live in one real Python
file, ``train_template.py``, that is run and tested as it is. The export fills four regions
of it, marked ``# <tuilab:NAME>`` … ``# </tuilab:NAME>``: the imports, the settings (the
workspace's or the preset's optimizer, lr, batch size, seed…), the model (``export.py``'s
class) and the data. The data is not re-written either: the task builder the lab uses
(``tasks._teacher``, ``tasks._digits``, ``tasks.load_user_data``…) is copied from
``tasks.py`` with everything it calls, so the script draws exactly the lab's tensors. Only
the digits' file location differs: the script reads it from ``--data``, by default
``digits.npz`` beside the script (the CLI copies it there).
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tuilab import __version__
from tuilab.core.export import (
    KNOWN_IMPORTS,
    external_names,
    model_section,
    source_definitions,
)
from tuilab.core.spec import ModelSpec

__all__ = ["DIGITS_FILE", "TEMPLATE_PATH", "export_train_source", "needs_digits"]

TEMPLATE_PATH = Path(__file__).with_name("train_template.py")
#: The file name the script looks for beside itself when the task is ``digits``.
DIGITS_FILE = "digits.npz"

_TASKS_MODULE = "tuilab.core.tasks"
_REGION = re.compile(r"^# <tuilab:(\w+)>\n(.*?)^# </tuilab:\1>\n", re.M | re.S)
#: Imports the copied task and loss code may use (name -> the statement that brings it).
_TRAIN_IMPORTS = {
    **KNOWN_IMPORTS,
    "Tensor": "from torch import Tensor",
    "math": "import math",
    "copy": "import copy",
    "csv": "import csv",
    "pickle": "import pickle",
    "np": "import numpy as np",
    "dataclass": "from dataclasses import dataclass",
    "Callable": "from collections.abc import Callable",
    "Path": "from pathlib import Path",
    "dataclasses": "import dataclasses",
    "Mapping": "from collections.abc import Mapping",
    "Iterator": "from collections.abc import Iterator",
    "Any": "from typing import Any",
}
#: TrainConfig fields the script takes from the lab (the rest are the script's options).
_SETTING_KEYS = ("task", "optimizer", "lr", "batch_size", "steps", "weight_decay", "momentum",
                 "grad_clip", "loss", "seed", "val_every", "dtype", "device")


def needs_digits(task: str) -> bool:
    """Whether the script for ``task`` reads the digits file (to ship beside it)."""
    return task == "digits"


def export_train_source(spec: ModelSpec, settings: Mapping[str, Any]) -> str:
    """The training script for ``spec`` with these settings (TrainConfig field names).

    ``settings["task"]`` is a built-in task name or the path of a user data file.
    """
    template = TEMPLATE_PATH.read_text(encoding="utf-8")
    regions = {m.group(1): m.group(2) for m in _REGION.finditer(template)}
    kept = _top_level_names(_REGION.sub("", template))
    task = str(settings["task"])
    data_lines, data_imports, data_names = _data_section(spec, task, reserved=kept)
    model_lines, model_imports = model_section(spec, reserved_names=kept | data_names)
    imports = _statements(regions["imports"]) | set(data_imports.values())
    imports |= set(model_imports.values())
    filled = {
        "imports": _render_imports(imports),
        "settings": _settings_text(spec, settings),
        "model": "\n".join(model_lines) + "\n\n\n",
        "data": "\n".join(data_lines) + "\n\n\n",
        "note": "",
    }
    return _REGION.sub(lambda m: filled[m.group(1)], template)


# --- the regions -------------------------------------------------------------------------------
def _settings_text(spec: ModelSpec, settings: Mapping[str, Any]) -> str:
    from dataclasses import asdict

    from tuilab.core.training import TrainConfig

    defaults = asdict(TrainConfig())
    defaults["val_every"] = 0  # the script's own: a tenth of --steps, as `tuilab train` does
    values = {key: settings.get(key, defaults[key]) for key in _SETTING_KEYS}
    builtin = not _is_file_task(str(values["task"]))
    values["data"] = None if builtin else str(Path(str(values["task"])).resolve())
    body = "".join(f"    {key!r}: {value!r},\n" for key, value in values.items())
    return (f"# Exported by tuilab {__version__} from the model {spec.name!r}.\n"
            f"TITLE = {spec.name!r}\n"
            f"SETTINGS: dict[str, Any] = {{\n{body}}}\n")


def _is_file_task(task: str) -> bool:
    return task.lower().endswith((".csv", ".npz", ".pt"))


def _data_section(spec: ModelSpec, task: str, *, reserved: set[str]
                  ) -> tuple[list[str], dict[str, str], set[str]]:
    """The task's code copied from tasks.py, and ``load_data(args, model)`` that calls it."""
    provided = {"_digits_arrays"} if needs_digits(task) else set()
    if _is_file_task(task):
        targets = [f"{_TASKS_MODULE}:load_user_data"]
        call = ("    if not args.data:\n"
                "        raise RunError('give the data file with --data PATH')\n"
                "    return load_user_data(args.data, seed=args.seed)\n")
        what = "The user's data file (--data), read as tuilab reads it: same seed, same split."
    else:
        targets = [f"{_TASKS_MODULE}:_{task}", f"{_TASKS_MODULE}:_Options"]
        shape = tuple(spec.input_shape[1:])
        options = (f"_Options(name={task!r}, input_shape={shape!r}, samples=None, noise=0.1,\n"
                   f"                    val_fraction=0.2, seed=args.seed, "
                   f"vocab_size={spec.vocab_size!r},\n"
                   f"                    num_classes=None, model=model)")
        call = f"    return _{task}({options})\n"
        what = f"The lab's task {task!r}, built as tuilab builds it: same seed, same tensors."
    if needs_digits(task):
        targets.append(f"{_TASKS_MODULE}:_read_digits")
    targets.append("tuilab.core.runtime:make_loss")
    definitions = source_definitions(targets, known_imports=_TRAIN_IMPORTS, provided=provided)
    names = {d.name for d in definitions} | {"load_data"} | provided
    clash = sorted(names & reserved)
    if clash:
        raise RuntimeError(f"the task code defines {clash}, which the template defines too")
    lines: list[str] = []
    for definition in definitions:
        lines += [definition.text, "", ""]
    if provided:
        lines += [
            "def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:",
            '    """The digits file: --data, by default digits.npz beside this script."""',
            "    return _read_digits(DIGITS_PATH[0])",
            "",
            "",
            f"DIGITS_PATH = [Path(__file__).with_name({DIGITS_FILE!r})]",
            "",
            "",
        ]
    lines += [
        "def load_data(args: argparse.Namespace, model: nn.Module) -> TaskData:",
        f'    """{what}"""',
    ]
    if provided:
        lines += ["    DIGITS_PATH[0] = Path(args.data) if args.data else DIGITS_PATH[0]"]
    lines += [call.rstrip("\n")]
    imports = {name: _TRAIN_IMPORTS[name] for d in definitions for name in external_names(d)}
    imports.update({name: _TRAIN_IMPORTS[name] for d in definitions
                    for name in _annotation_names(d.text) if name in _TRAIN_IMPORTS})
    if provided:
        imports.update(np=_TRAIN_IMPORTS["np"], Path=_TRAIN_IMPORTS["Path"])
    return lines, imports, names


# --- imports -----------------------------------------------------------------------------------
def _annotation_names(text: str) -> set[str]:
    """Names used in annotations only: the copy needs their imports for the linters' sake
    (the file defers annotations, so they are never evaluated)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        annotations: list[ast.expr | None] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            every = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                     node.args.vararg, node.args.kwarg]
            annotations = [a.annotation for a in every if a is not None] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in annotations:
            if annotation is not None:
                names.update(n.id for n in ast.walk(annotation) if isinstance(n, ast.Name))
    return names


def _statements(text: str) -> set[str]:
    """The one-name import statements of an import block."""
    out: set[str] = set()
    for stmt in ast.parse(text).body:
        if isinstance(stmt, ast.Import):
            out.update(ast.unparse(ast.Import([alias])) for alias in stmt.names)
        elif isinstance(stmt, ast.ImportFrom):
            out.update(ast.unparse(ast.ImportFrom(stmt.module, [alias], stmt.level))
                       for alias in stmt.names)
    return out


def _render_imports(statements: Iterable[str]) -> str:
    """The import block as ruff's isort writes it: future, stdlib, third party."""
    plain: dict[str, set[str]] = {}
    froms: dict[str, set[tuple[str, str | None]]] = {}
    for statement in set(statements):
        node = ast.parse(statement).body[0]
        if isinstance(node, ast.Import):
            for alias in node.names:
                plain.setdefault(alias.name, set()).add(alias.asname or "")
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            for alias in node.names:
                froms.setdefault(node.module, set()).add((alias.name, alias.asname))
    sections: dict[int, list[str]] = {0: [], 1: [], 2: []}

    def section(module: str) -> int:
        top = module.split(".")[0]
        return 0 if top == "__future__" else 1 if top in sys.stdlib_module_names else 2

    for module in sorted(plain):
        for asname in sorted(plain[module]):
            line = f"import {module}" + (f" as {asname}" if asname else "")
            sections[section(module)].append(line)
    for module in sorted(froms):
        names = sorted(froms[module], key=lambda n: _isort_key(n[0]))
        text = ", ".join(n if a is None else f"{n} as {a}" for n, a in names)
        sections[section(module)].append(f"from {module} import {text}")
    blocks = ["\n".join(lines) for _, lines in sorted(sections.items()) if lines]
    return "\n\n".join(blocks) + "\n"


def _isort_key(name: str) -> tuple[int, str]:
    """isort's order-by-type: CONSTANTS, then Classes, then functions and modules."""
    if name.isupper() and len(name) > 1:
        return 0, name
    if name[:1].isupper():
        return 1, name
    return 2, name


def _top_level_names(text: str) -> set[str]:
    names: set[str] = set()
    for stmt in ast.parse(text).body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names.add(stmt.target.id)
    return names
