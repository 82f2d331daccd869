"""Saving and loading a model's ``state_dict`` without ever running code from a file.

Why this module is strict:

- A ``.pt`` file is a pickle, and unpickling can run any code. tuilab therefore *writes*
  safetensors only, and *reads* ``.pt``/``.pth`` only through
  ``torch.load(..., weights_only=True)`` passed explicitly (an explicit ``True`` also beats
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``). A file that needs more than tensors is refused; there
  is no "unsafe" fallback.
- ``nn.Module.load_state_dict`` copies every matching tensor *before* it raises on a size
  mismatch, leaving a half-loaded model. ``load_weights`` checks keys and shapes first
  (``check_weights`` never touches the model) so a refused load leaves the model as it was.
- safetensors refuses tensors that share memory, but tied weights (one ``nn.Linear`` used
  twice) put two keys on one tensor. ``save_weights`` writes such a tensor once and records the
  other name in the file's metadata the way ``safetensors.torch.save_model`` does
  (``{removed_name: kept_name}``), and ``read_weights`` restores the alias, so files stay
  compatible with ``safetensors.torch.load_model`` in both directions.
- Saving is atomic: a temporary file in the same folder, then ``os.replace``. A crash or a
  full disk never leaves a half-written file under the user's name, nor a temporary one.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn.parameter import UninitializedTensorMixin

from tuilab.core.errors import SpecFileError
from tuilab.core.files import check_torch_archive, memory_budget, regular_file

__all__ = [
    "SAFETENSORS_SUFFIX",
    "TORCH_SUFFIXES",
    "LoadReport",
    "WeightsError",
    "check_weights",
    "load_weights",
    "read_weights",
    "save_weights",
]

SAFETENSORS_SUFFIX = ".safetensors"
#: Pickle-based PyTorch files; read with ``weights_only=True`` only, never written.
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
#: Keys under which training checkpoints commonly nest the state_dict.
_NESTED_KEYS = ("state_dict", "model_state_dict")
_LIST_LIMIT = 8


class WeightsError(ValueError):
    """A weights file cannot be saved, read or loaded; the message says which and why."""


def _shape(shape: tuple[int, ...]) -> str:
    return str(tuple(shape))


def _names(keys: tuple[str, ...]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    more = len(keys) - _LIST_LIMIT
    return shown + (f" … and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class LoadReport:
    """How a state_dict fits a model, key by key (computed without touching the model)."""

    missing: tuple[str, ...]  # in the model, not in the file
    unexpected: tuple[str, ...]  # in the file, not in the model
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # key, model, file
    loaded: tuple[str, ...]  # keys whose values the model gets

    @property
    def ok(self) -> bool:
        """True when every tensor of the model is covered and the file has nothing else."""
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """One sentence, then one line per kind of problem; fit for an error message."""
        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        if self.ok:
            return f"The weights fit the model: all {total} tensors match."
        counts = []
        if self.missing:
            counts.append(f"{len(self.missing)} missing")
        if self.unexpected:
            counts.append(f"{len(self.unexpected)} unexpected")
        if self.mismatched:
            counts.append(f"{len(self.mismatched)} with the wrong shape")
        lines = [
            f"The weights do not fit this model: {', '.join(counts)}; "
            f"{len(self.loaded)} of the model's {total} tensors match."
        ]
        if self.missing:
            lines.append(f"missing from the file: {_names(self.missing)}")
        if self.unexpected:
            lines.append(f"in the file but not in the model: {_names(self.unexpected)}")
        if self.mismatched:
            shown = [
                f"{key} is {_shape(want)} in the model, {_shape(got)} in the file"
                for key, want, got in self.mismatched[:_LIST_LIMIT]
            ]
            more = len(self.mismatched) - _LIST_LIMIT
            lines.append(
                "wrong shape: " + "; ".join(shown) + (f" … and {more} more" if more > 0 else "")
            )
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# save


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``model.state_dict()`` to ``path`` as safetensors, atomically.

    Tied tensors are written once; the other names go into the metadata. Tensors on any
    device are written from CPU copies; the model itself is not changed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        raise WeightsError(
            f"{path}: tuilab saves weights as safetensors, not {suffix} (a pickle that can "
            f"carry code); save to {path.with_suffix(SAFETENSORS_SUFFIX).name} instead"
        )
    if suffix != SAFETENSORS_SUFFIX:
        raise WeightsError(
            f"{path}: tuilab saves weights as safetensors; the file name must end in "
            f"{SAFETENSORS_SUFFIX}"
        )
    if not isinstance(model, nn.Module):
        raise WeightsError(f"{path}: expected an nn.Module to save, got {type(model).__name__}")
    parent = path.parent
    if not parent.is_dir():
        raise WeightsError(f"{path}: the folder {parent} does not exist")
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, not a file name")
    tensors, aliases = _prepare_for_safetensors(model.state_dict(), path)
    metadata = {"format": "pt", **aliases}

    tmp: Path | None = None
    try:
        # mkstemp inside the try: a read-only folder fails here, and says so in one line.
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb+") as handle:  # the bytes reach the disk before the rename
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(err, Exception):  # OSError, and safetensors' own SafetensorError
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise WeightsError(f"{path}: could not be written: {reason}") from err
        raise


def _prepare_for_safetensors(
    state: Mapping[str, Tensor], path: Path
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """CPU, contiguous, memory-disjoint tensors for safetensors, plus ``{alias: kept}``."""
    tensors: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    seen_views: dict[tuple[object, ...], str] = {}
    used_storage: set[int] = set()
    for key, value in state.items():
        if isinstance(value, UninitializedTensorMixin):
            raise WeightsError(
                f"{path}: {key} is not materialised yet (a lazy module): run one forward "
                f"pass first so it gets a shape"
            )
        if value.is_meta:
            raise WeightsError(
                f"{path}: {key} lives on the meta device and holds no values; build the model "
                f"on a real device to save it"
            )
        value = value.detach()
        if value.numel():
            view = (
                value.device, value.untyped_storage().data_ptr(), value.storage_offset(),
                tuple(value.shape), tuple(value.stride()), value.dtype,
            )
            if view in seen_views:  # the very same tensor under a second name: tied
                aliases[key] = seen_views[view]
                continue
            seen_views[view] = key
        cpu = value.to("cpu").contiguous()
        ptr = cpu.untyped_storage().data_ptr()
        if cpu.numel() and ptr in used_storage:
            cpu = cpu.clone()  # overlapping views of one storage: safetensors wants them apart
        elif cpu.numel():
            used_storage.add(ptr)
        tensors[key] = cpu
    return tensors, aliases


# ----------------------------------------------------------------------------------------
# read


def read_weights(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a flat ``{name: tensor}`` dict (on the CPU) from a weights file.

    ``.safetensors`` directly; ``.pt``/``.pth``/``.bin``/``.ckpt`` with
    ``weights_only=True`` only. A checkpoint that nests the weights under ``'state_dict'``
    (or ``'model_state_dict'``) is accepted. Anything else raises ``WeightsError``.
    """
    path = Path(path)
    try:
        regular_file(path, limit=memory_budget())  # never /dev/zero, a FIFO or a folder
    except SpecFileError as err:
        raise WeightsError(str(err)) from err
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    if suffix in TORCH_SUFFIXES:
        return _as_state_dict(_read_torch(path), path)
    raise WeightsError(
        f"{path}: tuilab reads {SAFETENSORS_SUFFIX} files, or {'/'.join(TORCH_SUFFIXES)} files "
        f"holding tensors only; not {suffix or 'a file without a suffix'}"
    )


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types, OSError, ...
        raise WeightsError(
            f"{path}: not a valid safetensors file (truncated or corrupt?): {err}"
        ) from err
    for alias, kept in metadata.items():  # tied names written once (save_model's convention)
        if alias not in tensors and kept in tensors:
            tensors[alias] = tensors[kept]
    return tensors


def torch_load_checked(path: Path) -> object:
    """``torch.load(path, weights_only=True)`` after the checks a hostile file needs.

    The file must be a regular file (never /dev/zero or a FIFO) within the memory budget, and
    a zip archive whose members are stored uncompressed: a 1 MB file inflating to 1 GiB is
    refused from the archive's directory before anything is inflated. A zip archive is then
    memory-mapped, so the caller can compare keys and shapes before any value is read.
    Raises :class:`SpecFileError` for a refused file, ``pickle.UnpicklingError`` for a
    pickle that needs more than tensors, and whatever torch raises for a damaged one.
    """
    zipped = check_torch_archive(path, limit=memory_budget())
    # weights_only=True explicitly: torch then ignores TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.
    return torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)


def _read_torch(path: Path) -> object:
    try:
        return torch_load_checked(path)
    except SpecFileError as err:
        raise WeightsError(str(err)) from err
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"{path}: holds more than tensors, and tuilab refuses to run code from it "
            f"(it loads .pt files with weights_only=True only): {unpickling_reason(err)}. If "
            f"you trust the file, load it in Python yourself and save the model's state_dict "
            f"as {SAFETENSORS_SUFFIX}."
        ) from err
    except Exception as err:  # zip/EOF/runtime errors from a damaged file
        raise WeightsError(
            f"{path}: cannot be read as a PyTorch file (truncated or corrupt?): "
            f"{type(err).__name__}: {err}"
        ) from err


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def unpickling_reason(err: BaseException) -> str:
    """What the safe unpickler refused, in our words: "it needs numpy.core…_reconstruct,
    which is not a tensor type". Never torch's advice to re-run with weights_only=False
    (the unsafe load tuilab never does) nor its terminal escapes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    found = _GLOBAL.search(text)
    if found:
        return (f"it needs the Python object {found.group(1)}, which is not one of the "
                f"tensor types a weights file may hold")
    operand = re.search(r"Unsupported operand (\d+)", text)
    if operand:
        return (f"it uses an unsupported pickle instruction (operand {operand.group(1)}): a "
                f"plain Python pickle, not a file torch.save wrote")
    for line in (part.strip() for part in text.splitlines()):
        if line.startswith("WeightsUnpickler error:"):
            return line.removeprefix("WeightsUnpickler error:").strip().rstrip(".")
    return "it is not a plain dict of tensors"


def _as_state_dict(obj: object, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for nested in _NESTED_KEYS:
            if isinstance(obj.get(nested), Mapping):
                obj = obj[nested]
                break
    if not isinstance(obj, Mapping):
        raise WeightsError(
            f"{path}: holds {type(obj).__name__}, not a state_dict (a dict of names to tensors)"
        )
    state: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise WeightsError(f"{path}: key {key!r} is not a string; not a state_dict")
        if not isinstance(value, Tensor):
            hint = ""
            nested = [k for k, v in obj.items() if isinstance(v, Mapping)]
            if nested:
                hint = f" (it has dict entries {', '.join(map(repr, nested[:4]))}; tuilab " \
                       f"looks for the weights under {' or '.join(map(repr, _NESTED_KEYS))})"
            raise WeightsError(
                f"{path}: entry {key!r} is {type(value).__name__}, not a tensor; a state_dict "
                f"maps names to tensors{hint}"
            )
        state[key] = value
    return state


# ----------------------------------------------------------------------------------------
# check and load


def check_weights(model: nn.Module, state: Mapping[str, Tensor]) -> LoadReport:
    """Compare ``state`` with ``model.state_dict()`` by keys and shapes; the model is untouched.

    A key the file lacks still counts as loaded when the model ties it to a key the file has
    (the same tensor under two names), since loading one fills both. A lazy module's
    unmaterialised parameter accepts any shape (loading gives it that shape).
    """
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise WeightsError("check_weights needs a dict of names to tensors")
    expected = model.state_dict(keep_vars=True)  # references, no copies; keeps tied identity
    missing: list[str] = []
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    loaded: list[str] = []
    for key, target in expected.items():
        if key not in state:
            missing.append(key)
            continue
        got = tuple(state[key].shape)
        if isinstance(target, UninitializedTensorMixin) or tuple(target.shape) == got:
            loaded.append(key)
        else:
            mismatched.append((key, tuple(target.shape), got))
    filled = {id(expected[key]) for key in loaded}
    tied = [key for key in missing if id(expected[key]) in filled]
    loaded += tied
    missing = [key for key in missing if key not in tied]
    unexpected = [key for key in state if key not in expected]
    return LoadReport(
        missing=tuple(missing),
        unexpected=tuple(unexpected),
        mismatched=tuple(mismatched),
        loaded=tuple(loaded),
    )


def load_weights(
    model: nn.Module, path: str | os.PathLike[str], *, partial: bool = False
) -> LoadReport:
    """Load a weights file into ``model`` in place, all or nothing unless ``partial``.

    Without ``partial`` a file that does not fit raises ``WeightsError`` (the report's
    description) and the model keeps every value it had. With ``partial`` only the tensors
    whose name and shape match are loaded, and the report says which. Values are cast to each
    target tensor's dtype and copied onto the model's device; tied parameters stay tied.
    """
    path = Path(path)
    state = read_weights(path)
    report = check_weights(model, state)
    if not report.ok and not partial:
        raise WeightsError(f"{path}: {report.describe()}")
    targets = model.state_dict(keep_vars=True)
    chosen: dict[str, Tensor] = {}
    for key in report.loaded:
        if key not in state:
            continue  # a tied name, filled through its twin
        value, target = state[key], targets[key]
        if not isinstance(target, UninitializedTensorMixin) and value.dtype != target.dtype:
            value = value.to(target.dtype)
        chosen[key] = value
    try:
        # strict=False: the keys were checked above, and tied names may be absent on purpose.
        model.load_state_dict(chosen, strict=False)
    except Exception as err:  # a module's own _load_from_state_dict may still object
        raise WeightsError(f"{path}: the model refused the weights: {err}") from err
    return report
