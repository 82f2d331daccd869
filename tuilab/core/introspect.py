"""A frozen, honest snapshot of any ``nn.Module``, and the diff between two snapshots.

The inspector shows what PyTorch itself keeps on each module — the ordered dicts
``_modules``, ``_parameters``, ``_buffers``, the ``_non_persistent_buffers_set``, the hook
dicts and the ``training`` flag (seed text 002) — and after every edit or run it updates only
the rows that changed. So this module does two things, both cheap:

* :func:`snapshot` walks the module tree once, reading those dicts directly, and records
  metadata (shape, dtype, device, ``requires_grad``, ``_version`` ...). It never moves or
  reduces a tensor (small CPU ones are only read for a checksum, below), so it is instant for
  a 1.5 B-parameter model on the ``meta`` device.
* :func:`diff` compares two snapshots row by row (frozen rows compared with ``==``) and names
  the keys that were added, removed or changed.

Change detection: ``_version`` is PyTorch's own in-place update counter, so an optimizer step
or ``nn.init`` shows up without reading a value. It is not the whole truth, though: writes
through ``.data`` (``net[0].weight.data[:] += 1``, the custom init of seed text 003) go to a
tensor with a fresh counter, and the batch-norm kernels update ``running_mean``/``running_var``
without bumping theirs (pytorch/pytorch#13402, #120622; only ``num_batches_tracked`` moves).
So each *small CPU* tensor (up to ``checksum_limit`` bytes, 1 MiB by default) also gets a CRC-32
of its bytes, read in place (~0.5 µs for a typical layer, ~4 GB/s beyond). Larger tensors,
GPU tensors and ``meta`` ones rely on ``_version`` alone.

Values are computed only on demand, for the row the user is looking at (:func:`tensor_stats`,
:func:`grad_norms`).

Paths and keys follow ``named_modules(remove_duplicate=False)`` /
``named_parameters(remove_duplicate=False)`` exactly, so a tied (shared) module or parameter
appears at every place it is used, and ``shared_with`` says where else; totals count each
tensor object once, as ``model.parameters()`` does (tied weights are not double counted).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import weakref
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parameter import is_lazy

__all__ = [
    "HOOK_DICTS",
    "Checksums",
    "ModuleRow",
    "Snapshot",
    "SnapshotDiff",
    "TableDiff",
    "TableName",
    "TensorRow",
    "TensorStats",
    "diff",
    "global_hook_rows",
    "grad_norms",
    "hook_rows",
    "module_at",
    "snapshot",
    "state_dict_rows",
    "tensor_stats",
]

TableName = Literal["modules", "parameters", "buffers"]

_HOOK_DICT_CANDIDATES = (
    "_forward_pre_hooks",
    "_forward_hooks",
    "_backward_pre_hooks",
    "_backward_hooks",
    "_state_dict_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
# Only the dicts this torch really has (they came and went across releases); the
# ``*_with_kwargs`` / ``*_always_called`` dicts are flags keyed by hook id, not hooks.
_PROBE = nn.Module()
HOOK_DICTS: tuple[str, ...] = tuple(
    name for name in _HOOK_DICT_CANDIDATES if isinstance(getattr(_PROBE, name, None), dict)
)
del _PROBE

_GLOBAL_HOOK_DICTS = (
    "_global_forward_pre_hooks",
    "_global_forward_hooks",
    "_global_backward_pre_hooks",
    "_global_backward_hooks",
    "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
    "_global_buffer_registration_hooks",
)

# float64 accumulation in chunks: exact enough for display and never more than ~32 MiB extra,
# even for a 50 M-element embedding.
_STATS_CHUNK = 1 << 22


# --------------------------------------------------------------------------------------------
# rows


@dataclass(frozen=True, slots=True)
class ModuleRow:
    """One module as PyTorch holds it, at one path (a tied module has one row per path)."""

    path: str
    """Qualified name as ``named_modules`` gives it: ``""`` for the root, ``"layers.3.fc"``."""
    cls: str
    """``type(m).__name__``."""
    training: bool
    own_params: int
    """numel of this module's own ``_parameters`` (children not included)."""
    own_buffers: int
    """numel of this module's own ``_buffers``."""
    children: tuple[str, ...]
    """Keys of ``_modules`` in order (``None`` entries skipped, as ``named_modules`` does)."""
    hooks: tuple[tuple[str, int], ...]
    """``(hook dict name, number of hooks)`` for each *non-empty* hook dict in :data:`HOOK_DICTS`;
    empty dicts are left out so the common row stays ``()``."""
    extra_repr: str
    shared_with: tuple[str, ...]
    """Other paths at which the same module object appears (tied layers)."""
    tied_params: tuple[str, ...] = ()
    """This module's own parameters that a *different* module holds too, as
    ``"weight ⇄ transformer.wte.weight"`` (GPT-2's ``lm_head``: a weight tie, not a layer tie)."""

    @property
    def hook_count(self) -> int:
        return sum(n for _, n in self.hooks)


@dataclass(frozen=True, slots=True)
class TensorRow:
    """One entry of a module's ``_parameters`` or ``_buffers``: metadata only, never values."""

    key: str
    """Full key as ``named_parameters``/``named_buffers`` give it, e.g. ``"0.weight"``."""
    module: str
    """Owning module path."""
    name: str
    """Attribute name, e.g. ``"weight"``."""
    kind: str
    """``"parameter"`` or ``"buffer"``."""
    shape: tuple[int, ...]
    dtype: str
    """Without the ``torch.`` prefix: ``"float32"``."""
    device: str
    """``"cpu"``, ``"cuda:0"``, ``"meta"``."""
    requires_grad: bool
    numel: int
    nbytes: int
    persistent: bool
    """Buffers: not in ``_non_persistent_buffers_set`` (so in the ``state_dict``); parameters:
    always True."""
    shared_with: tuple[str, ...]
    """Other keys naming the same tensor object (tied weights)."""
    version: int
    """``tensor._version``: bumped by in-place ops on the tensor itself (optimizer steps,
    ``nn.init``, ``copy_``) — change detection without reading values; -1 where torch keeps no
    counter (inference tensors). Blind to ``.data`` writes and batch-norm running stats: see
    ``checksum``."""
    has_grad: bool
    lazy: bool = False
    """An uninitialized lazy parameter/buffer (``nn.LazyLinear`` before its first forward): it
    has a dtype and device but no shape yet, so ``shape == ()`` and ``numel == nbytes == 0``."""
    checksum: int | None = None
    """CRC-32 of the bytes of a CPU tensor of at most ``checksum_limit`` bytes, catching the
    writes ``version`` misses; None where not read (bigger, not on the CPU, empty, lazy)."""


def _frozen(d: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(d)


@dataclass(frozen=True)
class Snapshot:
    """Everything the inspector shows about a model, frozen at one moment.

    The three tables are read-only mappings in ``named_modules(remove_duplicate=False)``
    order, so a tied module (and its tensors) appears at every path that uses it.
    """

    modules: Mapping[str, ModuleRow]
    parameters: Mapping[str, TensorRow]
    buffers: Mapping[str, TensorRow]
    total_params: int
    """numel over unique parameter objects (tied weights counted once)."""
    trainable_params: int
    """numel over unique parameters with ``requires_grad``."""
    param_bytes: int
    """bytes over unique parameters."""
    buffer_bytes: int
    """bytes over unique buffers."""

    def rows(self, table: TableName) -> Mapping[str, ModuleRow] | Mapping[str, TensorRow]:
        """The table called ``table`` (the names :class:`SnapshotDiff` uses)."""
        if table == "modules":
            return self.modules
        if table == "parameters":
            return self.parameters
        if table == "buffers":
            return self.buffers
        raise KeyError(f"no table {table!r}; expected 'modules', 'parameters' or 'buffers'")

    def tensors_of(self, path: str) -> list[TensorRow]:
        """The parameter rows, then the buffer rows, owned directly by the module at ``path``."""
        return [
            row
            for table in (self.parameters, self.buffers)
            for row in table.values()
            if row.module == path
        ]


# --------------------------------------------------------------------------------------------
# snapshot

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_DTYPE_NAMES: dict[torch.dtype, str] = {}
_DTYPE_INFO: dict[torch.dtype, tuple[str, int]] = {}
_DEVICE_NAMES: dict[torch.device, str] = {}


def _dtype_name(dtype: torch.dtype) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


def _walk(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Pre-order ``(path, module)`` exactly as ``named_modules(remove_duplicate=False)``.

    Iterative rather than recursive, so a very deep model cannot hit the recursion limit, and
    a module that contains itself (a cycle, where ``named_modules`` would recurse forever) is
    not entered a second time.
    """
    stack: list[tuple[str, nn.Module, int]] = [("", model, 0)]
    on_path: list[int] = []
    on_path_set: set[int] = set()
    while stack:
        path, module, depth = stack.pop()
        while len(on_path) > depth:
            on_path_set.discard(on_path.pop())
        mid = id(module)
        if mid in on_path_set:
            continue
        on_path.append(mid)
        on_path_set.add(mid)
        yield path, module
        children = module.__dict__.get("_modules")
        if children:
            dot = f"{path}." if path else ""
            stack.extend(
                (dot + name, child, depth + 1)
                for name, child in reversed(children.items())
                if child is not None
            )


def _hook_counts(md: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    counts: tuple[tuple[str, int], ...] = ()
    for name in HOOK_DICTS:  # a plain loop: ~2x a generator for the usual all-empty case
        hooks = md.get(name)
        if hooks:
            counts += ((name, len(hooks)),)
    return counts


def _extra_repr(module: nn.Module) -> str:
    # A user's own extra_repr can fail (it reads attributes set later, or tensor values on
    # meta); the snapshot shows the failure instead of refusing the whole model.
    try:
        return module.extra_repr()
    except Exception as exc:
        return f"<extra_repr failed: {type(exc).__name__}: {exc}>"


def _checksum(t: torch.Tensor, nbytes: int) -> int | None:
    """CRC-32 of a dense CPU tensor's bytes, read where they lie (no copy when contiguous)."""
    try:
        if t.layout != torch.strided or t.is_nested:
            return None
        if not t.is_contiguous():
            t = t.detach().contiguous()  # small by the caller's limit
        # The tensor (and so its storage) stays referenced for the whole read.
        return zlib.crc32((ctypes.c_char * nbytes).from_address(t.data_ptr()))
    except (RuntimeError, ValueError, TypeError):  # an exotic tensor subclass: version only
        return None


class Checksums:
    """The CRC-32s one snapshot read, for the next snapshot to reuse where nothing wrote.

    A snapshot reads each small CPU tensor's bytes because ``_version`` misses some writes
    (``.data``, batch-norm kernels). Between two snapshots where the caller ran nothing that
    writes values — a structural edit, a train/eval flip of palette blocks — reading them all
    again is waste (10,000 tensors on the bench's ``rows_10k``): a *trusted* snapshot reuses
    the CRC of a tensor that is the same object (a weak reference, so a freed tensor's id
    cannot be mistaken for it), at the same address, with the same byte count, dtype and
    ``_version``. Anything else — a new tensor, a cast, an in-place update — is read. An
    untrusted snapshot (after a run, a set value, user code) reads every tensor, as before.
    """

    def __init__(self) -> None:
        # id(tensor) -> (weak reference, address, nbytes, dtype, _version, crc)
        self._seen: dict[int, _Read] = {}
        self._next: dict[int, _Read] = {}
        self._trusted = False
        self.read = 0
        """Tensors whose bytes the last snapshot read (the rest were reused)."""

    def begin(self, trusted: bool) -> None:
        self._trusted = trusted
        self._next = {}
        self.read = 0

    def end(self) -> None:
        """Keep only what this snapshot saw: tensors that left the model are forgotten."""
        self._seen, self._next = self._next, {}

    def checksum(self, t: torch.Tensor, nbytes: int, version: int, dtype: str) -> int | None:
        """The CRC of `t`: reused when trusted and nothing about `t` moved, else read."""
        try:
            address = t.data_ptr()
        except (RuntimeError, ValueError, TypeError):  # no storage to point at
            address = -1
        key = (address, nbytes, dtype, version)
        before = self._seen.get(id(t)) if self._trusted and version >= 0 else None
        if before is not None and before[0]() is t and before[1] == key and before[2] is not None:
            crc: int | None = before[2]
        else:
            self.read += 1
            crc = _checksum(t, nbytes)
        with contextlib.suppress(TypeError):  # no weak references: read every time
            self._next[id(t)] = (weakref.ref(t), key, crc)
        return crc


_Read = tuple["weakref.ref[torch.Tensor]", tuple[int, int, str, int], "int | None"]


def _tensor_row(
    key: str,
    module: str,
    name: str,
    kind: str,
    t: torch.Tensor,
    persistent: bool,
    checksum_limit: int,
    checksums: Checksums | None = None,
) -> TensorRow:
    # The hot loop of snapshot(): a few µs per tensor, so dtype/device names are cached and
    # the row is built positionally (field order of TensorRow).
    lazy = is_lazy(t)
    if lazy:
        shape: tuple[int, ...] = ()
        numel = 0
    else:
        shape = tuple(t.shape)
        numel = math.prod(shape)
    try:
        version = t._version
    except RuntimeError:  # inference tensors keep no version counter
        version = -1
    dtype = t.dtype
    dtype_info = _DTYPE_INFO.get(dtype)
    if dtype_info is None:
        dtype_info = _DTYPE_INFO[dtype] = (_dtype_name(dtype), dtype.itemsize)
    device = t.device
    device_name = _DEVICE_NAMES.get(device)
    if device_name is None:
        device_name = _DEVICE_NAMES[device] = str(device)
    nbytes = numel * dtype_info[1]
    if 0 < nbytes <= checksum_limit and device_name == "cpu":
        checksum = (_checksum(t, nbytes) if checksums is None
                    else checksums.checksum(t, nbytes, version, dtype_info[0]))
    else:
        checksum = None
    return TensorRow(
        key,
        module,
        name,
        kind,
        shape,
        dtype_info[0],
        device_name,
        t.requires_grad,
        numel,
        nbytes,
        persistent,
        (),  # shared_with: filled in afterwards for the few tied tensors
        version,
        t.is_leaf and t.grad is not None,  # .grad of a non-leaf warns; only leaves get one
        lazy,
        checksum,
    )


def _mark_shared(rows: dict[str, Any], ties: dict[int, list[str]]) -> None:
    """Fill ``shared_with`` for the (few) objects seen at more than one key."""
    for keys in ties.values():
        for key in keys:
            rows[key] = replace(rows[key], shared_with=tuple(k for k in keys if k != key))


def _mark_tied_params(modules: dict[str, ModuleRow], parameters: dict[str, TensorRow],
                      param_ties: dict[int, list[str]],
                      module_ties: dict[int, list[str]]) -> None:
    """Mark on each module row the own parameters that another module object holds too.

    A module shared whole lists its parameters at every path it appears, and its row already
    says ``shared_with``: those keys are not a weight tie, so paths of one object are skipped.
    """
    same: dict[str, list[str]] = {p: paths for paths in module_ties.values() for p in paths}
    for keys in param_ties.values():
        for key in keys:
            row = parameters[key]
            alike = same.get(row.module, [row.module])
            others = [k for k in keys if parameters[k].module not in alike]
            if others:
                module = modules[row.module]
                modules[row.module] = replace(
                    module, tied_params=(*module.tied_params, f"{row.name} ⇄ {others[0]}"))


def _tie(first: dict[int, str], ties: dict[int, list[str]], obj: object, key: str) -> None:
    """Record that ``obj``, first seen elsewhere, is seen again at ``key`` (a tied object).

    The caller checks ``first.setdefault(id(obj), key) is key`` inline (the hot, untied case:
    nothing allocated); only tied objects reach here and get a list.
    """
    oid = id(obj)
    keys = ties.get(oid)
    if keys is None:
        ties[oid] = [first[oid], key]
    else:
        keys.append(key)


def snapshot(model: nn.Module, *, checksum_limit: int = 1 << 20,
             checksums: Checksums | None = None, trusted: bool = False) -> Snapshot:
    """Snapshot ``model``'s tree: one walk, direct reads of each module's own dicts.

    Reads metadata, plus a CRC-32 of each CPU tensor of at most ``checksum_limit`` bytes (0
    turns that off; see the module docstring for why ``_version`` alone misses changes). The
    only tensor memory it allocates is a contiguous copy of a small non-contiguous tensor to
    checksum, so a ``meta`` model of any size costs the same as its metadata.

    With ``checksums`` (kept from the last snapshot) and ``trusted`` — the caller promises
    that nothing wrote tensor values since then other than through new tensors — the CRCs of
    unchanged tensors are reused instead of read (see :class:`Checksums`).
    """
    if checksums is not None:
        checksums.begin(trusted)
    try:
        return _snapshot(model, checksum_limit, checksums)
    finally:
        if checksums is not None:
            checksums.end()


def _snapshot(model: nn.Module, checksum_limit: int, checksums: Checksums | None) -> Snapshot:
    modules: dict[str, ModuleRow] = {}
    parameters: dict[str, TensorRow] = {}
    buffers: dict[str, TensorRow] = {}
    # id -> first path/key, one map per table (a tensor could be a parameter here and a buffer
    # there; each table's ties and totals stay within that table).
    first_module: dict[int, str] = {}
    first_param: dict[int, str] = {}
    first_buffer: dict[int, str] = {}
    module_ties: dict[int, list[str]] = {}
    param_ties: dict[int, list[str]] = {}
    buffer_ties: dict[int, list[str]] = {}
    total = trainable = param_bytes = buffer_bytes = 0
    tensor_row = _tensor_row

    for path, module in _walk(model):
        md = module.__dict__
        if first_module.setdefault(id(module), path) is not path:
            _tie(first_module, module_ties, module, path)
        dot = f"{path}." if path else ""

        own_params = 0
        for name, p in (md.get("_parameters") or _EMPTY).items():
            if p is None:
                continue
            key = dot + name
            row = parameters[key] = tensor_row(
                key, path, name, "parameter", p, True, checksum_limit, checksums
            )
            own_params += row.numel
            if first_param.setdefault(id(p), key) is not key:
                _tie(first_param, param_ties, p, key)
            else:
                total += row.numel
                param_bytes += row.nbytes
                if row.requires_grad:
                    trainable += row.numel

        own_buffers = 0
        buffer_dict = md.get("_buffers")
        if buffer_dict:
            non_persistent = md.get("_non_persistent_buffers_set") or ()
            for name, b in buffer_dict.items():
                if b is None:
                    continue
                key = dot + name
                persistent = name not in non_persistent
                row = buffers[key] = tensor_row(
                    key, path, name, "buffer", b, persistent, checksum_limit, checksums
                )
                own_buffers += row.numel
                if first_buffer.setdefault(id(b), key) is not key:
                    _tie(first_buffer, buffer_ties, b, key)
                else:
                    buffer_bytes += row.nbytes

        children = md.get("_modules") or _EMPTY
        child_keys = tuple(children)
        if child_keys and None in children.values():
            child_keys = tuple(k for k, c in children.items() if c is not None)
        modules[path] = ModuleRow(
            path,
            type(module).__name__,
            _training_flag(module),
            own_params,
            own_buffers,
            child_keys,
            _hook_counts(md),
            _extra_repr(module),
            (),  # shared_with: filled in below for the few tied modules
        )

    _mark_shared(modules, module_ties)
    _mark_shared(parameters, param_ties)
    _mark_tied_params(modules, parameters, param_ties, module_ties)
    _mark_shared(buffers, buffer_ties)

    return Snapshot(
        modules=_frozen(modules),
        parameters=_frozen(parameters),
        buffers=_frozen(buffers),
        total_params=total,
        trainable_params=trainable,
        param_bytes=param_bytes,
        buffer_bytes=buffer_bytes,
    )


def with_training_flags(old: Snapshot, model: nn.Module) -> Snapshot:
    """``old`` with each module row's ``training`` read again from ``model``; nothing else.

    For ``model.train(mode)`` on modules whose ``train`` only sets the flag (every palette
    block): the tensors, hooks and structure are those of ``old``, so the walk reads one
    attribute per module instead of every tensor's metadata (gpt2_xl: ~0.5 ms instead of
    5-9 ms). The rows that did not change stay the same objects, so the diff passes over
    them by identity. A module at a path ``old`` does not hold means the caller's promise was
    wrong: that is raised, not papered over.
    """
    modules = dict(old.modules)
    for path, module in _walk(model):
        row = modules.get(path)
        if row is None:
            raise ValueError(f"with_training_flags: {path!r} is not in the snapshot")
        training = _training_flag(module)
        if training != row.training:
            modules[path] = replace(row, training=training)
    return replace(old, modules=_frozen(modules))


def _training_flag(module: nn.Module) -> bool:
    training = module.__dict__.get("training")
    if training is None:  # a class that keeps `training` elsewhere (a property)
        training = getattr(module, "training", False)
    return bool(training)


# --------------------------------------------------------------------------------------------
# diff


@dataclass(frozen=True)
class TableDiff:
    """Keys added (in new order), removed (in old order) and changed (any field differs)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass(frozen=True)
class SnapshotDiff:
    """What the inspector must add, remove and refresh, per table."""

    modules: TableDiff
    parameters: TableDiff
    buffers: TableDiff

    @property
    def empty(self) -> bool:
        return self.modules.empty and self.parameters.empty and self.buffers.empty

    def table(self, name: TableName) -> TableDiff:
        """The diff of the table called ``name`` (same names as :meth:`Snapshot.rows`)."""
        if name not in ("modules", "parameters", "buffers"):
            raise KeyError(f"no table {name!r}; expected 'modules', 'parameters' or 'buffers'")
        return getattr(self, name)


def _diff_table(old: Mapping[str, Any], new: Mapping[str, Any]) -> TableDiff:
    added = tuple(k for k in new if k not in old)
    removed = tuple(k for k in old if k not in new)
    changed = tuple(
        k
        for k, row in new.items()
        if (before := old.get(k)) is not None and before is not row and before != row
    )
    return TableDiff(added, removed, changed)


def diff(old: Snapshot | None, new: Snapshot) -> SnapshotDiff:
    """Rows to add, remove and refresh to turn ``old`` into ``new`` (``None``: all added)."""
    if old is None:
        return SnapshotDiff(
            modules=TableDiff(added=tuple(new.modules)),
            parameters=TableDiff(added=tuple(new.parameters)),
            buffers=TableDiff(added=tuple(new.buffers)),
        )
    return SnapshotDiff(
        modules=_diff_table(old.modules, new.modules),
        parameters=_diff_table(old.parameters, new.parameters),
        buffers=_diff_table(old.buffers, new.buffers),
    )


# --------------------------------------------------------------------------------------------
# values, on demand


@dataclass(frozen=True, slots=True)
class TensorStats:
    """Summary of one tensor's values, for display (all computed in float64)."""

    numel: int
    mean: float
    std: float
    """Sample standard deviation (``correction=1``, as ``torch.std``); 0.0 for one element,
    where torch would say nan (a single scalar such as PReLU's weight has no spread)."""
    min: float
    max: float
    norm: float
    """L2 norm of all elements."""
    zero_fraction: float
    nonfinite: int
    """How many elements are nan or ±inf (then mean/std/norm are not finite either)."""


def _accumulate_device(t: torch.Tensor) -> torch.device:
    # MPS has no float64: accumulate those chunks on the CPU instead.
    return torch.device("cpu") if t.device.type == "mps" else t.device


def tensor_stats(t: torch.Tensor | None) -> TensorStats | None:
    """Mean/std/min/max/norm/zero fraction of ``t``, or None where there are no values to read.

    None for: no tensor, the ``meta`` device, no elements, uninitialized lazy parameters,
    complex, sparse and quantized tensors. Integer and bool tensors (``num_batches_tracked``)
    and half/bfloat16 ones are widened to float64 chunk by chunk, so the sums are exact enough
    and at most ~32 MiB is allocated whatever the tensor's size.
    """
    if t is None or is_lazy(t) or t.device.type == "meta":
        return None
    if t.layout != torch.strided or t.is_complex() or t.is_quantized:
        return None
    n = t.numel()
    if n == 0:
        return None
    acc = _accumulate_device(t)
    flat = t.detach().reshape(-1)
    with torch.no_grad():
        if n <= _STATS_CHUNK:
            chunks: list[torch.Tensor] = [flat.to(device=acc, dtype=torch.float64)]

            def parts() -> Iterator[torch.Tensor]:
                return iter(chunks)
        else:

            def parts() -> Iterator[torch.Tensor]:
                for start in range(0, n, _STATS_CHUNK):
                    yield flat[start : start + _STATS_CHUNK].to(device=acc, dtype=torch.float64)

        total = torch.zeros((), dtype=torch.float64, device=acc)
        squares = torch.zeros((), dtype=torch.float64, device=acc)
        zeros = torch.zeros((), dtype=torch.int64, device=acc)
        nonfinite = torch.zeros((), dtype=torch.int64, device=acc)
        lo: torch.Tensor | None = None
        hi: torch.Tensor | None = None
        for c in parts():
            total += c.sum()
            squares += c.square().sum()
            zeros += (c == 0).sum()
            nonfinite += (~torch.isfinite(c)).sum()
            cmin, cmax = c.min(), c.max()
            lo = cmin if lo is None else torch.minimum(lo, cmin)
            hi = cmax if hi is None else torch.maximum(hi, cmax)
        assert lo is not None and hi is not None
        mean = total / n
        # Two passes (sum of squared deviations from the mean), not E[x²]-E[x]², which loses
        # every digit when the mean is large against the spread.
        spread = torch.zeros((), dtype=torch.float64, device=acc)
        for c in parts():
            spread += (c - mean).square().sum()
        std = (spread / (n - 1)).sqrt() if n > 1 else torch.zeros_like(spread)
        values = torch.stack([mean, std, lo, hi, squares.sqrt()]).tolist()
        zero_count, bad = torch.stack([zeros, nonfinite]).tolist()
    return TensorStats(
        numel=n,
        mean=values[0],
        std=values[1],
        min=values[2],
        max=values[3],
        norm=values[4],
        zero_fraction=zero_count / n,
        nonfinite=bad,
    )


def grad_norms(model: nn.Module) -> dict[str, float]:
    """``{parameter key: L2 norm of its .grad}`` (float64) for every parameter that has one.

    Keys follow ``named_parameters(remove_duplicate=False)``, so a tied weight appears under
    each of its keys with the same norm (its one shared gradient, computed once). Gradients on
    ``meta`` have no values and are left out. The norms are gathered per device and read back
    in one transfer, so a GPU model is not synchronised once per parameter.
    """
    keys: list[str] = []
    slots: list[int] = []
    seen: dict[int, int] = {}
    norms: list[torch.Tensor] = []
    with torch.no_grad():
        for key, p in model.named_parameters(remove_duplicate=False):
            g = p.grad
            if g is None or g.device.type == "meta":
                continue
            slot = seen.get(id(p))
            if slot is None:
                if g.layout != torch.strided:
                    g = g.coalesce().values() if g.is_sparse else g.to_dense()
                acc = _accumulate_device(g)
                g = g.detach()
                if g.is_complex():
                    g = g.abs()
                norm = torch.linalg.vector_norm(g.to(device=acc, dtype=torch.float64))
                slot = seen[id(p)] = len(norms)
                norms.append(norm)
            keys.append(key)
            slots.append(slot)
    by_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(norms):
        by_device.setdefault(t.device, []).append(i)
    values: list[float] = [0.0] * len(norms)
    for idx in by_device.values():
        for i, v in zip(idx, torch.stack([norms[i] for i in idx]).tolist(), strict=True):
            values[i] = v
    return {key: values[slot] for key, slot in zip(keys, slots, strict=True)}


# --------------------------------------------------------------------------------------------
# lookups for the inspector's other tabs


def module_at(model: nn.Module, path: str) -> nn.Module:
    """The module at ``path`` (``""`` is the root), walking ``_modules`` key by key.

    Raises KeyError naming the missing part, where it was looked for, and what is there.
    """
    module = model
    if path == "":
        return module
    walked: list[str] = []
    for part in path.split("."):
        children = module.__dict__.get("_modules") or {}
        child = children.get(part)
        if child is None:
            where = ".".join(walked) or "<root>"
            there = [k for k, c in children.items() if c is not None]
            reason = "is None" if part in children else "does not exist"
            raise KeyError(
                f"no module at {path!r}: {where} ({type(module).__name__}) has no child "
                f"{part!r} (it {reason}); its children are {there}"
            )
        module = child
        walked.append(part)
    return module


def state_dict_rows(model: nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    """``(key, shape, dtype)`` for each ``state_dict`` entry, in order, without copying.

    ``keep_vars=True`` hands back the live tensors instead of detached copies. The
    ``state_dict`` hooks run, as they would on save, so the keys are the ones a save writes.
    An uninitialized lazy entry reads ``shape ()`` and ``"<dtype> (uninitialized)"``; a
    non-tensor extra state reads ``()`` and ``"<TypeName>"``.
    """
    rows: list[tuple[str, tuple[int, ...], str]] = []
    for key, value in model.state_dict(keep_vars=True).items():
        if not isinstance(value, torch.Tensor):
            rows.append((key, (), f"<{type(value).__name__}>"))
        elif is_lazy(value):
            rows.append((key, (), f"{_dtype_name(value.dtype)} (uninitialized)"))
        else:
            rows.append((key, tuple(value.shape), _dtype_name(value.dtype)))
    return rows


def _callable_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a hook, looking through wrappers and partials.

    torch keeps load-state-dict pre hooks in a ``_WrappedHook`` (made with
    ``functools.update_wrapper``, so ``__wrapped__`` leads to the user's callable); decorators
    made with ``functools.wraps`` lead the same way.
    """
    for _ in range(8):  # __wrapped__ chains are short; never loop forever on an odd object
        if isinstance(fn, functools.partial):
            return f"functools.partial({_callable_name(fn.func)})"
        inner = getattr(fn, "__wrapped__", None)
        if inner is None or inner is fn or not callable(inner):
            break
        fn = inner
    qualname = getattr(fn, "__qualname__", None)
    owner = fn
    if not isinstance(qualname, str):  # a callable object: name its class
        owner = type(fn)
        qualname = owner.__qualname__
    mod = getattr(owner, "__module__", None)
    return f"{mod}.{qualname}" if isinstance(mod, str) and mod else qualname


def hook_rows(model: nn.Module) -> list[tuple[str, str, int, str]]:
    """``(module path, hook dict name, hook id, callable's qualified name)`` for every hook.

    Includes hooks torch itself registers (lazy modules, ``weight_norm``, parametrizations),
    since they run all the same. A hook on a tied module is listed at each of its paths, where
    it fires. Global hooks live on no module: see :func:`global_hook_rows`.
    """
    rows: list[tuple[str, str, int, str]] = []
    for path, module in _walk(model):
        md = module.__dict__
        for name in HOOK_DICTS:
            hooks = md.get(name)
            if hooks:
                rows.extend((path, name, int(hid), _callable_name(fn)) for hid, fn in hooks.items())
    return rows


def global_hook_rows() -> list[tuple[str, int, str]]:
    """``(dict name, hook id, qualified name)`` for hooks registered on *every* module.

    ``nn.modules.module.register_module_forward_hook`` and friends fire for all modules but
    are stored on none, so a per-module view would hide them.
    """
    from torch.nn.modules import module as module_mod

    rows: list[tuple[str, int, str]] = []
    for name in _GLOBAL_HOOK_DICTS:
        hooks = getattr(module_mod, name, None)
        if isinstance(hooks, dict):
            rows.extend((name, int(hid), _callable_name(fn)) for hid, fn in hooks.items())
    return rows
