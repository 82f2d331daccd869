"""Presets and workspaces as TOML: data that is read, checked and never executed.

A preset is a model (`[model]`); a workspace is a model plus what the user was doing with it
(`[modes]`, `[training]`, `[[runs]]` with their loss histories). Both go through one reader
that refuses anything it does not know with a message naming the file and the field
("lenet.toml: model.root.children[3].args.kernel_size: …"), and blocks can only be palette
names, so a file can never make tuilab import or run anything. Saving is atomic: a temp file
in the same folder, flushed, then renamed over the old one, so a crash leaves either the old
file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

import tomli_w

from tuilab.core.catalog import CATALOG, get_block, similar_blocks
from tuilab.core.edits import check_input_shape
from tuilab.core.errors import ArgumentError, EditError, SpecFileError
from tuilab.core.files import read_regular_file
from tuilab.core.paths import presets_dir
from tuilab.core.safe_text import check_printable
from tuilab.core.spec import (
    ModelSpec,
    Node,
    check_model_name,
    check_tree,
    new_id,
    path_of,
    walk,
)

FORMAT_VERSION = 1
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 20_000
MAX_RUNS = 200
MAX_POINTS_PER_RUN = 200_000

_NODE_KEYS = {"name", "block", "args", "children", "share", "frozen"}
_MODEL_KEYS = {"name", "description", "input_shape", "task", "root"}


@dataclass(frozen=True)
class PresetInfo:
    name: str
    description: str


@dataclass
class Workspace:
    """Everything a user would hate to lose: the model, its modes, settings and run history."""

    spec: ModelSpec
    modes: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    input: dict[str, Any] = field(default_factory=dict)
    """The chosen input (`expression`, `seed`; see core/inputs.py); empty: a random one."""


# --- reading ------------------------------------------------------------------------------
def parse_toml(text: str, *, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecFileError(f"not valid TOML: {error}", where=source) from None
    except RecursionError:
        raise SpecFileError("nested too deeply to read", where=source) from None


def read_file_text(path: Path) -> str:
    """A workspace's text: a regular file up to MAX_FILE_BYTES (never /dev/zero or a FIFO),
    UTF-8 with or without a byte-order mark (Windows editors write one)."""
    if path.is_dir():
        raise SpecFileError("is a folder, not a .toml file", where=str(path))
    data = read_regular_file(path, limit=MAX_FILE_BYTES)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SpecFileError("is not UTF-8 text (is it a TOML file?)", where=str(path)) from None


def spec_from_data(data: Mapping[str, Any], *, source: str) -> ModelSpec:
    """Check a parsed `[model]` document and turn it into a spec."""
    model = _table(data, "model", source)
    _known_keys(model, _MODEL_KEYS, f"{source}: model")
    name = _string(model, "name", f"{source}: model", default="model")
    description = _string(model, "description", f"{source}: model", default="")
    task = _string(model, "task", f"{source}: model", default="teacher")
    try:
        check_model_name(name, where=f"{source}: model.name")
        check_printable(description, what="description", where=f"{source}: model.description",
                        lines=True)
    except EditError as error:
        raise SpecFileError(error.message, where=error.where) from None
    try:
        input_shape = check_input_shape(model.get("input_shape"))
    except EditError as error:
        raise SpecFileError(error.message, where=f"{source}: model.input_shape") from None
    if "root" not in model:
        raise SpecFileError("missing the [model.root] table", where=f"{source}: model")
    counter = [0]
    shares: list[tuple[str, str, str]] = []
    root = _node_from_data(model["root"], f"{source}: model.root", "", 0, counter, shares)
    root = _resolve_shares(root, shares)
    try:
        check_tree(root)
    except EditError as error:
        raise SpecFileError(error.message, where=f"{source}: node {error.where}") from None
    return ModelSpec(name=name, root=root, input_shape=input_shape, description=description,
                     task=task)


def _node_from_data(data: Any, where: str, path: str, depth: int, counter: list[int],
                    shares: list[tuple[str, str, str]]) -> Node:
    if not isinstance(data, Mapping):
        raise SpecFileError(f"expected a table, got {type(data).__name__}", where=where)
    if depth > MAX_DEPTH:
        raise SpecFileError(f"nodes are nested more than {MAX_DEPTH} deep", where=where)
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise SpecFileError(f"more than {MAX_NODES} nodes", where=where)
    _known_keys(data, _NODE_KEYS, where)
    name = _string(data, "name", where, default="" if depth == 0 else None)
    block = _string(data, "block", where, default=None)
    if block not in CATALOG:
        close = similar_blocks(block)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SpecFileError(
            f"unknown block {block!r}{hint}; blocks come from tuilab's palette only "
            f"(`tuilab blocks` lists them)",
            where=f"{where}.block",
        )
    frozen = data.get("frozen", False)
    if not isinstance(frozen, bool):
        raise SpecFileError("must be true or false", where=f"{where}.frozen")
    node_id = new_id()
    if "share" in data:
        target = data["share"]
        if not isinstance(target, str):
            raise SpecFileError("must be the path of the shared node, e.g. '2'",
                                where=f"{where}.share")
        if "args" in data or "children" in data:
            raise SpecFileError("a shared node takes no args or children of its own",
                                where=where)
        shares.append((node_id, target, where))
        return Node(name=name, block=block, ref=target, id=node_id)
    args = data.get("args", {})
    if not isinstance(args, Mapping):
        raise SpecFileError("must be a table of argument values", where=f"{where}.args")
    args = _upgrade_args(block, args)
    try:
        values = get_block(block).validate(args, where=f"{where}.args")
    except ArgumentError as error:
        raise SpecFileError(error.message, where=error.where or where) from None
    raw_children = data.get("children", [])
    if not isinstance(raw_children, list):
        raise SpecFileError("must be an array of tables", where=f"{where}.children")
    children = tuple(
        _node_from_data(child, f"{where}.children[{i}]", path, depth + 1, counter, shares)
        for i, child in enumerate(raw_children)
    )
    return Node(name=name, block=block, args=values, children=children, frozen=frozen,
                id=node_id)


_RECURRENT = frozenset({"RNN", "LSTM", "GRU"})
_OLD_SELECT_INDEX = {0: "output", 1: "h_n"}


def _upgrade_args(block: str, args: Mapping[str, Any]) -> Mapping[str, Any]:
    """Read files written before two arguments changed, meaning what they meant then.

    Recurrent blocks used to be built with batch_first=True, fixed, so a file whose RNN, LSTM
    or GRU does not name `batch_first` keeps True (the writer names every argument now, so a
    new file always says which). SelectOutput took an `index` into (output, state); it now
    takes `which`.
    """
    if block in _RECURRENT and "batch_first" not in args:
        return {**args, "batch_first": True}
    if block == "SelectOutput" and "index" in args and "which" not in args:
        index = args["index"]
        rest = {key: value for key, value in args.items() if key != "index"}
        if isinstance(index, int) and not isinstance(index, bool) and index in _OLD_SELECT_INDEX:
            return {**rest, "which": _OLD_SELECT_INDEX[index]}
    return args


def _resolve_shares(root: Node, shares: list[tuple[str, str, str]]) -> Node:
    """Shared nodes name their target by path in the file; in memory they hold its id."""
    from dataclasses import replace

    if not shares:
        return root
    by_path = {path: node for path, node in walk(root)}
    fixed: dict[str, str] = {}
    for node_id, target_path, where in shares:
        target = by_path.get(target_path)
        if target is None or target.ref is not None:
            raise SpecFileError(f"shares {target_path!r}, which is not a block in this model",
                                where=f"{where}.share")
        if target.block != next(n.block for _, n in walk(root) if n.id == node_id):
            raise SpecFileError(f"block must match the shared node's block ({target.block})",
                                where=f"{where}.block")
        fixed[node_id] = target.id

    def rebuild(node: Node) -> Node:
        if node.id in fixed:
            return replace(node, ref=fixed[node.id])
        if not node.children:
            return node
        return replace(node, children=tuple(rebuild(c) for c in node.children))

    return rebuild(root)


def _table(data: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise SpecFileError(f"missing the [{key}] table", where=source)
    return value


def _string(data: Mapping[str, Any], key: str, where: str, default: str | None) -> str:
    if key not in data:
        if default is None:
            raise SpecFileError(f"missing '{key}'", where=where)
        return default
    value = data[key]
    if not isinstance(value, str):
        raise SpecFileError(f"must be text, got {type(value).__name__}", where=f"{where}.{key}")
    return value


def _known_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SpecFileError(
            f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})", where=where
        )


# --- presets ------------------------------------------------------------------------------
def list_presets() -> list[PresetInfo]:
    infos = []
    for path in sorted(presets_dir().glob("*.toml")):
        data = parse_toml(read_file_text(path), source=path.name)
        model = data.get("model", {})
        infos.append(PresetInfo(path.stem, str(model.get("description", ""))))
    return infos


def preset_names() -> list[str]:
    return sorted(path.stem for path in presets_dir().glob("*.toml"))


def load_preset(name: str) -> ModelSpec:
    path = presets_dir() / f"{name}.toml"
    if not name or "/" in name or "\\" in name or not path.is_file():
        close = difflib.get_close_matches(name, preset_names(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SpecFileError(
            f"unknown preset {name!r}{hint}; `tuilab presets` lists them")
    return load_workspace(path).spec


def load_spec_arg(text: str) -> ModelSpec:
    """A command-line SPEC: a preset name, or the path of a workspace/preset .toml file."""
    return load_workspace_arg(text).spec


def load_workspace_arg(text: str) -> Workspace:
    if text.endswith(".toml") or os.sep in text or "/" in text:
        return load_workspace(Path(text))
    load_preset(text)  # the friendly unknown-preset message
    return load_workspace(presets_dir() / f"{text}.toml")


# --- workspaces ---------------------------------------------------------------------------
def load_workspace(path: str | Path) -> Workspace:
    path = Path(path)
    source = path.name
    data = parse_toml(read_file_text(path), source=source)
    header = data.get("tuilab", {})
    if not isinstance(header, Mapping):
        raise SpecFileError("must be a table", where=f"{source}: tuilab")
    version = header.get("format", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise SpecFileError(f"format {version!r} is not one this tuilab reads "
                            f"(it reads format {FORMAT_VERSION})", where=f"{source}: tuilab")
    unknown = sorted(set(data) - {"tuilab", "model", "modes", "training", "runs", "input"})
    if unknown:
        raise SpecFileError(f"unknown table [{unknown[0]}]", where=source)
    spec = spec_from_data(data, source=source)
    modes = _plain_table(data, "modes", source)
    training = _plain_table(data, "training", source)
    runs = data.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, Mapping) for r in runs):
        raise SpecFileError("must be an array of tables", where=f"{source}: runs")
    if len(runs) > MAX_RUNS:
        raise SpecFileError(f"more than {MAX_RUNS} runs", where=f"{source}: runs")
    checked_runs = [_check_run(run, f"{source}: runs[{i}]") for i, run in enumerate(runs)]
    chosen = _plain_table(data, "input", source)
    if chosen:  # checking it loads torch: only when there is one
        from tuilab.core.inputs import check_input_data

        check_input_data(chosen, where=f"{source}: input")
    return Workspace(spec=spec, modes=modes, training=training, runs=checked_runs,
                     input=chosen)


def _plain_table(data: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise SpecFileError("must be a table", where=f"{source}: {key}")
    for name, item in value.items():
        if not isinstance(item, (str, int, float, bool)):
            raise SpecFileError("must be text, a number or true/false",
                                where=f"{source}: {key}.{name}")
    return dict(value)


# What the known fields of a [[runs]] entry must hold (other fields are kept as they are).
_RUN_LISTS = ("steps", "losses", "val_steps", "val_losses", "val_accuracy")
_RUN_TEXT = ("name", "status", "error")
_RUN_STATUS = ("running", "finished", "stopped", "failed")


def _check_run(run: Mapping[str, Any], where: str) -> dict[str, Any]:
    for key in _RUN_LISTS:
        if key in run and not isinstance(run[key], list):
            raise SpecFileError("must be a list of numbers", where=f"{where}.{key}")
    for key in _RUN_TEXT:
        if key in run and not isinstance(run[key], str):
            raise SpecFileError(f"must be text, got {type(run[key]).__name__}",
                                where=f"{where}.{key}")
    if "status" in run and run["status"] not in _RUN_STATUS:
        raise SpecFileError(f"must be one of {', '.join(_RUN_STATUS)}", where=f"{where}.status")
    if "config" in run and not isinstance(run["config"], Mapping):
        raise SpecFileError("must be a table of training settings", where=f"{where}.config")
    rate = run.get("steps_per_s", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise SpecFileError("must be a number", where=f"{where}.steps_per_s")
    for first, second in (("steps", "losses"), ("val_steps", "val_losses")):
        if len(run.get(first, ())) != len(run.get(second, ())):
            raise SpecFileError(f"{first} and {second} must have the same length "
                                f"({len(run.get(first, ()))} and {len(run.get(second, ()))})",
                                where=f"{where}.{second}")
    out: dict[str, Any] = {}
    for key, value in run.items():
        if isinstance(value, list):
            if len(value) > MAX_POINTS_PER_RUN:
                raise SpecFileError(f"more than {MAX_POINTS_PER_RUN} points",
                                    where=f"{where}.{key}")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise SpecFileError("must be a list of numbers", where=f"{where}.{key}")
        elif isinstance(value, Mapping):
            value = _plain_table(run, key, where)
        elif not isinstance(value, (str, int, float, bool)):
            raise SpecFileError("unsupported value", where=f"{where}.{key}")
        out[key] = value
    return out


# --- writing ------------------------------------------------------------------------------
def node_to_data(root: Node, node: Node) -> dict[str, Any]:
    data: dict[str, Any] = {"name": node.name, "block": node.block}
    if node.ref is not None:
        data["share"] = path_of(root, node.ref)
        return data
    args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in node.args.items()
            if v is not None}
    if args:
        data["args"] = args
    if node.frozen:
        data["frozen"] = True
    if node.children:
        data["children"] = [node_to_data(root, child) for child in node.children]
    return data


def spec_to_data(spec: ModelSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "input_shape": list(spec.input_shape),
        "task": spec.task,
        "root": node_to_data(spec.root, spec.root),
    }


def workspace_to_text(workspace: Workspace) -> str:
    document: dict[str, Any] = {
        "tuilab": {"format": FORMAT_VERSION},
        "model": spec_to_data(workspace.spec),
    }
    if workspace.modes:
        document["modes"] = dict(workspace.modes)
    if workspace.training:
        document["training"] = {k: v for k, v in workspace.training.items() if v is not None}
    if workspace.input:
        document["input"] = dict(workspace.input)
    if workspace.runs:
        document["runs"] = [
            {k: v for k, v in run.items() if v is not None} for run in workspace.runs
        ]
    return tomli_w.dumps(document)


def save_workspace(workspace: Workspace, path: str | Path) -> Path:
    """Write atomically; on any failure the old file is untouched and no temp file remains."""
    path = Path(path)
    write_atomic(path, workspace_to_text(workspace))
    return path


def _new_file_mode() -> int:
    """What `open(path, "w")` would give a new file: 0o666 less the process umask."""
    try:  # Linux says it without changing it (os.umask is process-wide, not thread-safe)
        with open("/proc/self/status", encoding="ascii") as status:
            line = next(x for x in status if x.startswith("Umask:"))
        mask = int(line.split()[1], 8)
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: Path, text: str) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise SpecFileError(f"folder {str(folder)!r} {what}", where=str(path))
    temp_name: str | None = None
    try:
        try:  # keep the file's permissions (mkstemp makes it 0600, private to its owner)
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = _new_file_mode()
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), mode)
        os.replace(temp_name, path)
        temp_name = None
        _sync_folder(folder)
    except OSError as error:
        raise SpecFileError(f"could not save: {error.strerror or error}", where=str(path)) from None
    finally:
        if temp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)


def _sync_folder(folder: Path) -> None:
    """Flush the rename itself to disk (a power cut could otherwise undo it); best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
