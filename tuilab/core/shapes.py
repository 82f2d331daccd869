"""Output shapes, parameter counts and MACs of every layer, found without allocating.

The model runs once on the *meta* device: tensors there carry shape and dtype but no data, so
a 1.6 B-parameter GPT-2 XL "runs" in well under a second and a few hundred MB. A forward
pre-hook and a forward hook on every module record, per layer, the output shape of each call
and keep a stack of the modules running; :class:`tuilab.core.flops.MacCounter` watches the
operators underneath and charges every matrix product to the module on top of that stack, so
functional attention and foreign layers count as much as ``nn.Linear`` does.

When a forward fails, the failing layer is the innermost one whose forward started and did
not finish; everything recorded before it is kept, so the user sees the partial table up to
the broken layer (torchinfo cannot: its #288), with torch's own message and, where the cause
is plain, a hint (``in_features should be 400``).

Some forwards need real values (the seed's ``FixedHiddenMLP`` loops ``while X.abs().sum() >
1``, which meta cannot decide). Then, if the model fits in ``CPU_FALLBACK_BYTES``, the same
thing runs on a real CPU copy under ``torch.no_grad()``, and ``Summary.method`` says "cpu".

The caller's module is never touched: ``summarize_module`` runs a copy whose tensors are
swapped for meta (or CPU) tensors during the deepcopy itself, so a 6 GB model costs no
copy of its weights, BatchNorm's running statistics cannot move, lazy layers stay lazy and
the original's ``state_dict()`` stays bit-identical. The lessons of torchinfo's issue list
apply: tied weights are counted once (#322, #377), nothing is moved to another device (#287),
and PyTorch's fast path of ``TransformerEncoderLayer``, which skips submodule hooks in eval,
is switched off for the run (#213).
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.modules.pooling import _AvgPoolNd, _MaxPoolNd
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter, is_lazy

from tuilab.core.flops import OPAQUE, MacCounter, module_macs
from tuilab.core.memory import LiveBytes
from tuilab.core.outputs import first_tensor

if TYPE_CHECKING:
    from tuilab.core.spec import ModelSpec

# A forward that needs real values runs on a CPU copy only when weights + input fit in this.
CPU_FALLBACK_BYTES = 2 * 1024**3

__all__ = [
    "CPU_FALLBACK_BYTES",
    "LayerShape",
    "ShapeError",
    "Summary",
    "copy_to_device",
    "make_input",
    "summarize_module",
    "summarize_spec",
]


# --- results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerShape:
    """One row of the summary: one entry of ``named_modules(remove_duplicate=False)``.

    ``output_shape`` is the first tensor of the output (RNNs return ``(output, state)``), from
    the first call attributed to this row; None when this row never ran. ``params`` counts the
    module's own parameters recursively, each once. ``macs`` covers every call attributed to
    this row, batch included; a container's is the sum of its rows below. ``calls`` is how
    many times the module object's forward ran, counted on its first row (0 on the rows that
    repeat a shared module). ``shared_with`` names the other path of a tied module, or, where
    two different modules hold one parameter (GPT-2's ``lm_head.weight`` *is*
    ``transformer.wte.weight``), the other parameter's full name; ``tied_params`` then lists
    this module's own parameters that are held elsewhere too (counted once in the totals).
    """

    path: str
    type: str
    depth: int
    output_shape: tuple[int, ...] | None
    params: int
    macs: int
    calls: int
    shared_with: str | None
    tied_params: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShapeError:
    """Where the forward failed, torch's own message, and what to change when it is plain."""

    path: str
    message: str
    hint: str | None


@dataclass(frozen=True)
class Summary:
    """A model's layer table and totals; ``error`` is set when the forward failed.

    Totals count each parameter tensor once, however many modules share it. ``method`` is
    "meta" when the shapes were found without allocating, "cpu" when the forward needed real
    values and ran on a CPU copy (or the device type of the module itself, in the rare case a
    module cannot be copied at all).
    """

    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] | None
    layers: tuple[LayerShape, ...]
    total_params: int
    trainable_params: int
    param_bytes: int
    total_macs: int
    error: ShapeError | None
    method: str
    forward_peak_bytes: int | None = None
    """Peak bytes alive during the forward (no grad), parameters and input included; None
    when it failed. The memory plan takes it from here rather than run the forward again."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (tuples as lists), for ``tuilab summary --json`` and tests."""

        def shape(value: tuple[int, ...] | None) -> list[int] | None:
            return None if value is None else list(value)

        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "output_shape": shape(self.output_shape),
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "param_bytes": self.param_bytes,
            "total_macs": self.total_macs,
            "method": self.method,
            "layers": [
                {
                    "path": layer.path,
                    "type": layer.type,
                    "depth": layer.depth,
                    "output_shape": shape(layer.output_shape),
                    "params": layer.params,
                    "macs": layer.macs,
                    "calls": layer.calls,
                    "shared_with": layer.shared_with,
                    "tied_params": list(layer.tied_params),
                }
                for layer in self.layers
            ],
            "error": None
            if self.error is None
            else {"path": self.error.path, "message": self.error.message, "hint": self.error.hint},
        }


# --- inputs -------------------------------------------------------------------------------
def make_input(
    shape: Sequence[int],
    *,
    takes_tokens: bool,
    vocab_size: int | None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """A random input: floats in [0, 1) as the seeds use, or token ids in [0, vocab_size).

    ``dtype`` applies to float inputs only; token ids are always int64, what Embedding takes.
    """
    size = tuple(int(d) for d in shape)
    if takes_tokens:
        if vocab_size is None or vocab_size < 1:
            raise ValueError("a model that takes token ids needs its vocabulary size")
        return torch.randint(0, vocab_size, size, device=device)
    return torch.rand(size, device=device, dtype=dtype)


# --- public entry points --------------------------------------------------------------------
def summarize_spec(spec: ModelSpec, input_shape: Sequence[int] | None = None, *,
                   training: bool = True) -> Summary:
    """The summary of a spec: built on meta; built afresh on CPU only if values are needed.

    ``training`` picks the mode the model runs in (the lab passes its own): a few layers
    differ, e.g. BatchNorm refuses a batch of one only while training.
    """
    from tuilab.core.build import Builder

    def build(device: str) -> nn.Module:
        return Builder(device=device, training=training).build(spec)

    shape = tuple(spec.input_shape if input_shape is None else input_shape)
    tokens, vocab = spec.takes_tokens, spec.vocab_size
    try:
        model = build("meta")
    except Exception as error:  # a constructor's refusal is the user's to see, not a crash
        return _unbuilt(spec.name, shape, error)
    meta_input = make_input(shape, takes_tokens=tokens, vocab_size=vocab, device="meta")
    summary, error = _summarize(model, meta_input, name=spec.name, method="meta")
    if error is None or not _needs_values(error):
        return summary
    needed = _tensor_bytes(model) + _input_bytes(shape, tokens)
    if needed > CPU_FALLBACK_BYTES:
        return _too_big_for_values(summary, needed)
    del model
    with _private_rng():
        try:
            cpu_model = build("cpu")
        except Exception as build_error:
            return _unbuilt(spec.name, shape, build_error)
        cpu_input = make_input(shape, takes_tokens=tokens, vocab_size=vocab, device="cpu")
        return _summarize(cpu_model, cpu_input, name=spec.name, method="cpu")[0]


def summarize_module(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    takes_tokens: bool = False,
    vocab_size: int | None = None,
    name: str = "",
) -> Summary:
    """The summary of any module, leaving it exactly as it was.

    A copy runs, never ``model`` itself: its parameters and buffers are replaced by meta
    tensors while it is deep-copied (no weight is copied), so BatchNorm statistics, lazy
    layers, ``training`` flags and the device stay as they were. Only if the module cannot be
    deep-copied at all does its own forward run, under ``torch.no_grad()`` in eval mode
    (BatchNorm then reads its running statistics instead of updating them), with every
    ``training`` flag restored afterwards.
    """
    shape = tuple(int(d) for d in input_shape)
    name = name or type(model).__name__
    if takes_tokens and vocab_size is None:
        vocab_size = next(
            (m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)), None
        )
    # Float inputs in the model's own dtype: a float64 model fed float32 fails on CPU.
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    try:
        meta_copy: nn.Module | None = copy_to_device(model, torch.device("meta"))
    except Exception:
        meta_copy = None
    if meta_copy is not None:
        x = make_input(shape, takes_tokens=takes_tokens, vocab_size=vocab_size, device="meta",
                       dtype=dtype)
        summary, error = _summarize(meta_copy, x, name=name, method="meta")
        if error is None or not _needs_values(error):
            return summary
        needed = _tensor_bytes(model) + _input_bytes(shape, takes_tokens)
        if needed > CPU_FALLBACK_BYTES:
            return _too_big_for_values(summary, needed)
        del meta_copy
    with _private_rng():
        try:
            cpu_copy: nn.Module | None = copy_to_device(model, torch.device("cpu"))
        except Exception:
            cpu_copy = None
        if cpu_copy is not None:
            x = make_input(shape, takes_tokens=takes_tokens, vocab_size=vocab_size, device="cpu",
                           dtype=dtype)
            return _summarize(cpu_copy, x, name=name, method="cpu")[0]
        return _summarize_in_place(model, shape, takes_tokens, vocab_size, name, dtype)


# --- copies ---------------------------------------------------------------------------------
def copy_to_device(model: nn.Module, device: torch.device) -> nn.Module:
    """A deep copy whose parameters and buffers live on ``device``, made without copying data.

    ``copy.deepcopy`` looks every object up in its memo first, so mapping each tensor's id to
    its replacement swaps the tensors during the copy: ties stay tied (one id, one
    replacement), the source is only read, and a meta target costs no memory at all.
    """
    memo: dict[int, Any] = {}
    for tensor in _own_tensors(model):
        memo[id(tensor)] = _replacement(tensor, device)
    return copy.deepcopy(model, memo)


def _own_tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    for module in model.modules():
        for tensor in (*module._parameters.values(), *module._buffers.values()):
            if tensor is not None:
                yield tensor


def _replacement(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    is_param = isinstance(tensor, nn.Parameter)
    if is_lazy(tensor):
        kind = UninitializedParameter if is_param else UninitializedBuffer
        return kind(requires_grad=tensor.requires_grad, device=device, dtype=tensor.dtype)
    if device.type == "meta":
        data = torch.empty_like(tensor, device=device)
    elif tensor.device.type == "meta":
        # A meta model has no values to copy; small random ones let a data-dependent forward
        # run (shapes are all we report).
        data = torch.zeros(tensor.shape, dtype=tensor.dtype, device=device)
        if data.is_floating_point():
            data.normal_(0.0, 0.02)
    else:
        data = tensor.detach().to(device, copy=True)
    if is_param:
        return nn.Parameter(data, requires_grad=tensor.requires_grad)
    return data


def _tensor_bytes(model: nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for tensor in _own_tensors(model):
        if id(tensor) in seen or is_lazy(tensor):
            continue
        seen.add(id(tensor))
        total += tensor.numel() * tensor.element_size()
    return total


def _input_bytes(shape: Sequence[int], takes_tokens: bool) -> int:
    return math.prod(shape) * (8 if takes_tokens else 4)


def _summarize_in_place(model: nn.Module, shape: tuple[int, ...], takes_tokens: bool,
                        vocab_size: int | None, name: str, dtype: torch.dtype | None
                        ) -> Summary:
    """Last resort for a module that cannot be copied: its own forward, in eval, no grad."""
    device = next((t.device for t in _own_tensors(model) if not is_lazy(t)), torch.device("cpu"))
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        x = make_input(shape, takes_tokens=takes_tokens, vocab_size=vocab_size, device=device,
                       dtype=dtype)
        return _summarize(model, x, name=name, method=device.type)[0]
    finally:
        for module, training in modes.items():
            module.training = training


# --- the run --------------------------------------------------------------------------------
_fastpath_lock = threading.Lock()
_fastpath_users = 0
_fastpath_saved = True


@contextlib.contextmanager
def _no_mha_fastpath() -> Iterator[None]:
    """Switch off the fused eval path of TransformerEncoderLayer, which skips submodule hooks.

    The switch is process-wide, so concurrent summaries share one save/restore (a counter):
    the first one in saves the setting and the last one out restores it.
    """
    global _fastpath_users, _fastpath_saved
    with _fastpath_lock:
        if _fastpath_users == 0:
            _fastpath_saved = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)
        _fastpath_users += 1
    try:
        yield
    finally:
        with _fastpath_lock:
            _fastpath_users -= 1
            if _fastpath_users == 0:
                torch.backends.mha.set_fastpath_enabled(_fastpath_saved)


@contextlib.contextmanager
def _private_rng() -> Iterator[None]:
    """Repeatable CPU weights and inputs that leave the caller's global RNG where it was.

    Only the CPU fallback needs this: meta tensors draw no random numbers. The CPU generator
    is process-wide, so a training thread drawing numbers during a (rare) fallback would see
    the seeded stream; shapes do not depend on it. It holds `RNG_LOCK`, so a lab action that
    seeds (and the code log replays) never sees these draws.
    """
    from tuilab.core.rng import untracked

    with untracked():
        torch.manual_seed(0)
        yield


class _Recorder:
    """Hooks on every module: who is running (a stack), and what each row's calls produced.

    A module shared under several paths is one object, so each call is attributed to a path:
    the one whose parent is the path of the call that is running it (the k-th call from the
    same parent goes to the k-th such path), which gives a tied layer's two uses one row each.
    """

    def __init__(self, model: nn.Module) -> None:
        self.rows = list(model.named_modules(remove_duplicate=False))
        self.paths: dict[int, list[str]] = {}
        for path, module in self.rows:
            self.paths.setdefault(id(module), []).append(path)
        self.stack: list[tuple[nn.Module, str, tuple[Any, ...], dict[str, Any]]] = []
        self.shape: dict[str, tuple[int, ...] | None] = {}
        self.macs: dict[str, int] = {}
        self.calls: dict[int, int] = {}
        self.counters: dict[tuple[int, str | None], int] = {}
        self.opaque = 0  # how many modules on the stack price their own calls (flops.OPAQUE)
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        seen: set[int] = set()
        for _, module in self.rows:
            if id(module) in seen:
                continue
            seen.add(id(module))
            self.handles.append(module.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(module.register_forward_hook(self._post, with_kwargs=True))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _attribute(self, module: nn.Module) -> str:
        paths = self.paths.get(id(module), [""])
        if len(paths) == 1:
            return paths[0]
        parent = self.stack[-1][1] if self.stack else None
        options = paths
        if parent is not None:
            children = [p for p in paths if p.rpartition(".")[0] == parent and p != parent]
            inside = [p for p in paths if parent == "" or p.startswith(parent + ".")]
            options = children or inside or paths
        key = (id(module), parent)
        index = self.counters.get(key, 0)
        self.counters[key] = index + 1
        return options[min(index, len(options) - 1)]

    def _pre(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.stack.append((module, self._attribute(module), args, kwargs))
        if isinstance(module, OPAQUE):
            self.opaque += 1

    def charge(self) -> str | None:
        """The path an operator's MACs go to: the running module's (None inside OPAQUE)."""
        if self.opaque:
            return None
        return self.stack[-1][1] if self.stack else ""

    def _post(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
              output: Any) -> None:
        # Pop down to this module's own entry: a child whose exception the parent caught
        # never reached its forward hook and must not stay on the stack.
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] is module:
                path = self.stack[index][1]
                self.opaque -= sum(isinstance(entry[0], OPAQUE) for entry in self.stack[index:])
                del self.stack[index:]
                break
        else:
            return
        self.calls[id(module)] = self.calls.get(id(module), 0) + 1
        if path not in self.shape:
            tensor = first_tensor(output)
            self.shape[path] = None if tensor is None else tuple(tensor.shape)
        if isinstance(module, OPAQUE) and not self.opaque:
            try:
                macs = module_macs(module, args)
            except Exception:  # counting must never break the run it watches
                macs = 0
            self.macs[path] = self.macs.get(path, 0) + macs


def _summarize(model: nn.Module, x: torch.Tensor, *, name: str, method: str
               ) -> tuple[Summary, BaseException | None]:
    """Run ``model(x)`` with hooks; return the summary and the exception, if one was raised."""
    modes = {module: module.training for module in model.modules()}
    recorder = _Recorder(model)
    counter = MacCounter(recorder.charge)
    live = LiveBytes()  # the forward's peak memory, for the memory plan (core.memory)
    live.track_run(model, x)
    error: ShapeError | None = None
    caught: BaseException | None = None
    try:
        with _no_mha_fastpath(), torch.no_grad(), counter, live:
            try:
                model(x)
            except Exception as exc:  # the user's model failing is the result, not a crash
                caught = exc
                if recorder.stack:
                    module, path, args, kwargs = recorder.stack[-1]
                else:
                    module, path, args, kwargs = model, "", (x,), {}
                error = ShapeError(path, _our_sentence(module, args) + _message(exc),
                                   _hint(module, args, kwargs))
    finally:
        recorder.remove()
        for module, training in modes.items():
            module.training = training
    for path, macs in counter.macs.items():
        recorder.macs[path] = recorder.macs.get(path, 0) + macs
    summary = _table(model, recorder, name, tuple(x.shape), error, method)
    if error is None:
        summary = replace(summary, forward_peak_bytes=live.peak)
    return summary, caught


def _table(model: nn.Module, recorder: _Recorder, name: str, input_shape: tuple[int, ...],
           error: ShapeError | None, method: str) -> Summary:
    counts: dict[int, int] = {}
    macs = dict(recorder.macs)
    # Bottom-up: every row adds its total into its parent's (rows come parent first).
    for path, _ in reversed(recorder.rows):
        if path:
            parent = path.rpartition(".")[0]
            macs[parent] = macs.get(parent, 0) + macs.get(path, 0)
    first_row: set[str] = {paths[0] for paths in recorder.paths.values()}
    ties = _parameter_ties(recorder.rows)
    layers = []
    for path, module in recorder.rows:
        if id(module) not in counts:
            counts[id(module)] = _count(module.parameters())[0]
        paths = recorder.paths[id(module)]
        shared = None
        if len(paths) > 1:
            shared = paths[1] if path == paths[0] else paths[0]
        tied = ties.get(path, ())
        if tied and shared is None:
            shared = tied[0][1]
        layers.append(LayerShape(
            path=path,
            type=type(module).__name__,
            depth=0 if not path else path.count(".") + 1,
            output_shape=recorder.shape.get(path),
            params=counts[id(module)],
            macs=macs.get(path, 0),
            calls=recorder.calls.get(id(module), 0) if path in first_row else 0,
            shared_with=shared,
            tied_params=tuple(name for name, _ in tied),
        ))
    total, trainable, nbytes = _count(model.parameters())
    return Summary(
        name=name,
        input_shape=input_shape,
        output_shape=recorder.shape.get(""),
        layers=tuple(layers),
        total_params=total,
        trainable_params=trainable,
        param_bytes=nbytes,
        total_macs=macs.get("", 0),
        error=error,
        method=method,
    )


def _parameter_ties(rows: list[tuple[str, nn.Module]]) -> dict[str, list[tuple[str, str]]]:
    """Per module path, its own parameters that another module object holds too.

    Returns ``{path: [(name, other full name), ...]}``. A module shared whole (one object at
    two paths) is not a parameter tie: its rows already say so through the module itself.
    """
    holders: dict[int, list[tuple[str, str, int]]] = {}
    for path, module in rows:
        for name, param in module._parameters.items():
            if param is not None:
                holders.setdefault(id(param), []).append((path, name, id(module)))
    ties: dict[str, list[tuple[str, str]]] = {}
    for held in holders.values():
        if len({owner for _, _, owner in held}) < 2:
            continue
        for path, name, owner in held:
            other = next(f"{p}.{n}" if p else n for p, n, o in held if o != owner)
            ties.setdefault(path, []).append((name, other))
    return ties


def _count(params: Iterator[nn.Parameter]) -> tuple[int, int, int]:
    """(elements, trainable elements, bytes); ``parameters()`` already yields each tie once."""
    total = trainable = nbytes = 0
    for param in params:
        if is_lazy(param):
            continue  # not inferred yet: the forward failed before reaching it
        n = param.numel()
        total += n
        nbytes += n * param.element_size()
        if param.requires_grad:
            trainable += n
    return total, trainable, nbytes


def _unbuilt(name: str, shape: tuple[int, ...], error: Exception) -> Summary:
    from tuilab.core.errors import BuildError

    if isinstance(error, BuildError):  # the builder names the node whose constructor refused
        path = "" if error.where == "(root)" else error.where
        return Summary(name, shape, None, (), 0, 0, 0, 0,
                       ShapeError(path, f"the model does not build: {error.message}", None),
                       "meta")
    return Summary(name, shape, None, (), 0, 0, 0, 0,
                   ShapeError("", f"the model does not build: {_message(error)}", None), "meta")


def _too_big_for_values(summary: Summary, needed: int) -> Summary:
    assert summary.error is not None
    hint = (
        f"this forward needs real values (data-dependent Python in forward), and a CPU run "
        f"would need {needed / 1024**3:.1f} GiB, over the {CPU_FALLBACK_BYTES / 1024**3:.0f} GiB "
        "limit for a shape check"
    )
    return replace(summary, error=replace(summary.error, hint=hint))


def _needs_values(error: BaseException) -> bool:
    """True for the meta device's own limits (no data to read), not for a real shape error."""
    return isinstance(error, NotImplementedError) or "meta" in str(error).lower()


def _our_sentence(module: nn.Module, args: tuple[Any, ...]) -> str:
    """Our words before torch's: which layer refused which input ("Linear cannot take an
    input of shape (2, 300): "), so a newcomer reads what happened before torch's terms."""
    tensor = first_tensor(args)
    shape = f" of shape {tuple(tensor.shape)}" if tensor is not None else ""
    return f"{type(module).__name__} cannot take its input{shape}: "


def _message(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, KeyError) and text.startswith("'"):
        text = text.strip("'")
    return text or type(error).__name__


# --- hints -----------------------------------------------------------------------------------
def _dims(shape: Sequence[int]) -> str:
    return "×".join(str(d) for d in shape)


def _hint(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """What to change, when the failing module and its input make the cause plain."""
    try:
        return _hint_unchecked(module, args, kwargs)
    except Exception:  # a hint is a courtesy; never let it hide the real message
        return None


def _hint_unchecked(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
                    ) -> str | None:
    first = args[0] if args else next(iter(kwargs.values()), None)
    if isinstance(first, (tuple, list)) and not isinstance(module, (nn.RNNBase,)):
        return ("its input is a tuple (an RNN returns (output, state)): insert SelectOutput "
                "before it")
    if not isinstance(first, torch.Tensor):
        return None
    shape = tuple(first.shape)
    if isinstance(module, nn.Embedding):
        if first.is_floating_point():
            return (f"Embedding takes integer token ids, not {str(first.dtype)[6:]} values: "
                    "make it the model's first block")
        return None
    if not first.is_floating_point() and not first.is_complex() and any(
        p.is_floating_point() for p in module.parameters(recurse=False) if not is_lazy(p)
    ):
        return "its input holds integer token ids: start the model with an Embedding"
    if isinstance(module, nn.Linear) and not is_lazy(module.weight):
        return _linear_hint(module, shape)
    if isinstance(module, _BatchNorm):
        return _batchnorm_hint(module, shape)
    if isinstance(module, _InstanceNorm):
        return _channels_hint("num_features", module.num_features, shape, 2 if isinstance(
            module, nn.InstanceNorm2d) else 1 if isinstance(module, nn.InstanceNorm1d) else 3)
    if isinstance(module, nn.GroupNorm):
        if len(shape) >= 2 and shape[1] != module.num_channels:
            return f"num_channels should be {shape[1]} (the input's channels, dim 1)"
        return None
    if isinstance(module, nn.LayerNorm):
        expected = tuple(module.normalized_shape)
        actual = shape[-len(expected):] if len(shape) >= len(expected) else shape
        if actual != expected:
            return f"normalized_shape should be {actual} (the input's last dims)"
        return None
    if isinstance(module, _ConvNd) and not is_lazy(module.weight):
        return _conv_hint(module, shape)
    if isinstance(module, (_MaxPoolNd, _AvgPoolNd)):
        return _pool_hint(module, shape)
    if isinstance(module, nn.RNNBase):
        if len(shape) not in (2, 3):
            return (f"{type(module).__name__} takes (N, L, features) with batch_first; "
                    f"its input is {shape}")
        if shape[-1] != module.input_size:
            return f"input_size should be {shape[-1]} (the input's last dim)"
        return None
    if isinstance(module, nn.MultiheadAttention) and shape and shape[-1] != module.embed_dim:
        return (f"embed_dim (d_model) should be {shape[-1]}: the input has {shape[-1]} "
                "features per token")
    return None


def _linear_hint(module: nn.Linear, shape: tuple[int, ...]) -> str | None:
    hints = []
    flat = math.prod(shape[1:]) if len(shape) > 1 else None
    if shape and shape[-1] != module.in_features:
        hints.append(f"in_features should be {shape[-1]} (the input's last dim)")
    if flat is not None and (len(shape) >= 4 or (len(shape) == 3 and flat == module.in_features)):
        match = ("which matches in_features" if flat == module.in_features
                 else f"then in_features should be {flat}")
        flatten = (f"its input {shape} looks like a conv output: insert Flatten before it "
                   f"(that gives {flat} features, {match})")
        if flat == module.in_features:
            hints.insert(0, flatten)
        else:
            hints.append(flatten)
    return "; ".join(hints) or None


def _batchnorm_hint(module: _BatchNorm, shape: tuple[int, ...]) -> str | None:
    name = type(module).__name__
    wanted = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}
    allowed = next((dims for cls, dims in wanted.items() if isinstance(module, cls)), None)
    if allowed is not None and len(shape) not in allowed:
        if isinstance(module, nn.BatchNorm1d) and len(shape) > 3:
            flat = math.prod(shape[1:])
            return (f"BatchNorm1d takes (N, C) or (N, C, L) but got {shape}, a conv output: "
                    f"insert Flatten before it (then num_features should be {flat}), "
                    "or use BatchNorm2d")
        layout = {1: "(N, C) or (N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}
        dims = 1 if allowed == (2, 3) else allowed[0] - 2
        return f"{name} takes {layout[dims]}; its input is {shape}"
    if len(shape) >= 2 and shape[1] != module.num_features:
        return f"num_features should be {shape[1]} (the input's channels, dim 1)"
    if module.training and len(shape) >= 2 and math.prod(shape) // shape[1] <= 1:
        return ("in train mode BatchNorm normalises over the batch and needs more than one "
                "value per channel: use a batch of 2 or more, or switch to eval mode")
    return None


def _channels_hint(arg: str, expected: int, shape: tuple[int, ...], dims: int) -> str | None:
    if len(shape) < dims + 1:
        return None
    channels = shape[-(dims + 1)]
    if channels != expected:
        return f"{arg} should be {channels} (the input's channels)"
    return None


def _conv_hint(module: _ConvNd, shape: tuple[int, ...]) -> str | None:
    dims = len(module.kernel_size)
    name = type(module).__name__
    if len(shape) not in (dims + 1, dims + 2):
        layout = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[dims]
        fix = ("insert Unflatten before it" if len(shape) < dims + 1
               else "check the blocks before it")
        return f"{name} takes {layout}; its input is {shape}: {fix}"
    channels = shape[-(dims + 1)]
    if channels != module.in_channels:
        return f"in_channels should be {channels} (the input's channels)"
    spatial = shape[-dims:]
    padding = (0,) * dims if isinstance(module.padding, str) else tuple(module.padding)
    padded = tuple(s + 2 * p for s, p in zip(spatial, padding, strict=False))
    span = tuple(d * (k - 1) + 1 for d, k in zip(module.dilation, module.kernel_size,
                                                 strict=False))
    if any(p < k for p, k in zip(padded, span, strict=False)):
        return _too_small(spatial, padded, span, "kernel")
    return None


def _pool_hint(module: nn.Module, shape: tuple[int, ...]) -> str | None:
    dims = next((n for n in (1, 2, 3) if type(module).__name__.endswith(f"{n}d")), None)
    if dims is None or len(shape) < dims:
        return None

    def expand(value: Any) -> tuple[int, ...]:
        return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * dims

    kernel = expand(module.kernel_size)
    padding = expand(getattr(module, "padding", 0))
    dilation = expand(getattr(module, "dilation", 1))
    spatial = shape[-dims:]
    padded = tuple(s + 2 * p for s, p in zip(spatial, padding, strict=False))
    span = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel, strict=False))
    if any(p < k for p, k in zip(padded, span, strict=False)):
        return _too_small(spatial, padded, span, "window")
    return None


def _too_small(spatial: tuple[int, ...], padded: tuple[int, ...], span: tuple[int, ...],
               what: str) -> str:
    size = _dims(spatial)
    if padded != spatial:
        size += f" ({_dims(padded)} with padding)"
    return (f"the input is {size} but the {what} spans {_dims(span)}: use a smaller {what}, "
            "add padding, or feed a larger input")
