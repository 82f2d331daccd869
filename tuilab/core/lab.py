"""One lab session: the spec being edited, the live module built from it, its modes and runs.

The Textual app holds a `Lab` and calls its methods; it never touches PyTorch itself. Every
method either succeeds and returns what changed (a `LabUpdate` with the PyTorch line for the
code log and the snapshot diff the inspector applies), or raises a `TuilabError` having
changed nothing, so the app can show the message and carry on with the user's work intact.

A user's own module (`tuilab file.py:NAME`, `tuilab.show(model)`) has no spec: the lab
inspects, runs and trains it as it is, and refuses palette edits with the reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuilab.core.build import Builder
from tuilab.core.codelog import ScriptWriter, edit_code
from tuilab.core.edits import EditResult, SpecEditor, check_input_shape
from tuilab.core.errors import (
    EditError,
    FileChangedError,
    ModeError,
    RunError,
    SpecFileError,
    TuilabError,
)
from tuilab.core.introspect import (
    Checksums,
    Snapshot,
    SnapshotDiff,
    diff,
    snapshot,
    with_training_flags,
)
from tuilab.core.rng import seeded, untracked
from tuilab.core.spec import ModelSpec, Node, walk
from tuilab.core.workspace import Workspace, load_workspace, save_workspace

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tuilab.core.input_guess import InputGuess
    from tuilab.core.inputs import ChosenInput, ValueChange
    from tuilab.core.introspect import TensorStats
    from tuilab.core.memory import MemoryPlan
    from tuilab.core.runtime import BackwardReport, ForwardReport, HookKit
    from tuilab.core.shapes import Summary
    from tuilab.core.training import MetricsBatch

# Models whose parameters would take more than this stay on the meta device: they can be
# inspected and summarised, but not run (gpt2_xl needs ~6.5 GB in float32).
MATERIALISE_LIMIT_BYTES = 2 * 2**30
# An edit whose new blocks hold less than this cannot be what pushes a model past the limit
# (unless it was nearly there), so the whole model is only measured above it.
_EDIT_SIZE_CHECK_BYTES = 64 * 2**20

DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")
RUN_FLUSH_SECONDS = 0.5
"""How often a run's metrics reach the app (see `Lab.train`)."""


@dataclass(frozen=True)
class LabUpdate:
    """What an action did: a sentence, its PyTorch line, and the inspector's diff."""

    description: str
    code: str
    diff: SnapshotDiff
    snapshot: Snapshot
    path: str | None = None


@dataclass
class RunRecord:
    """One training run's settings and history, kept when it stops, fails or finishes."""

    name: str
    config: dict[str, Any]
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    status: str = "running"  # running | finished | stopped | failed
    error: str = ""
    steps_per_s: float = 0.0
    output: str = ""  # the tensor of a tuple/dict/dataclass output it trained on

    def to_data(self) -> dict[str, Any]:
        # A worker thread may be appending while the UI thread saves: copy each list once,
        # then cut the pairs to a common length, so the file never holds a step without its
        # loss (or the other way round).
        steps, losses = list(self.steps), list(self.losses)
        n = min(len(steps), len(losses))
        val_steps, val_losses = list(self.val_steps), list(self.val_losses)
        val_accuracy = list(self.val_accuracy)
        m = min(len(val_steps), len(val_losses))
        return {
            "name": self.name, "config": dict(self.config), "steps": steps[:n],
            "losses": losses[:n], "val_steps": val_steps[:m],
            "val_losses": val_losses[:m], "val_accuracy": val_accuracy[:m],
            "status": self.status, "error": self.error, "steps_per_s": self.steps_per_s,
            "output": self.output,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RunRecord:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("name", "run")
        values.setdefault("config", {})
        if values.get("status", "running") == "running":
            values["status"] = "stopped"  # it was cut off when the process ended
        return cls(**values)


class Lab:
    """The engine behind one window of the app."""

    def __init__(self, spec: ModelSpec | None = None, *, module: nn.Module | None = None,
                 input_shape: tuple[int, ...] | None = None, name: str = "model",
                 source: str = "", takes_tokens: bool = False,
                 vocab_size: int | None = None) -> None:
        if (spec is None) == (module is None):
            raise ValueError("a Lab needs either a spec or a module")
        self.editor = SpecEditor(spec) if spec is not None else None
        self._shapes: tuple[ModelSpec, dict[str, tuple[int, ...] | None]] | None = None
        """The last summary's output shape per path, with the spec it was computed for."""
        self.source = source
        self._name = spec.name if spec is not None else name
        self._input_shape = tuple(spec.input_shape if spec is not None else (input_shape or ()))
        self._takes_tokens = takes_tokens
        self._vocab_size = vocab_size
        self.training = True
        self.dtype_name = "float32"
        self.device = "cpu"
        self.code_log: list[str] = []
        """The script text of every action, oldest first (`codelog.script_text` runs it)."""
        self.script = ScriptWriter()
        self.runs: list[RunRecord] = []
        self.train_settings: dict[str, Any] = {}
        self.path: Path | None = None
        self.dirty = False
        self.busy_reason = ""
        self.too_large_bytes = 0
        self.load_messages: list[str] = []
        self._disk_stamp: str | None = None
        self._hooks: HookKit | None = None
        # The chosen input (None: a seeded random one for the input shape, kept until the
        # shape changes), the input last echoed in the code log, each layer's output in the
        # last forward pass, and the undo journal: "spec" for a spec edit, a ValueChange
        # for a set value (see core/inputs.py).
        self.chosen_input: ChosenInput | None = None
        self._default_input: ChosenInput | None = None
        self._logged_input: ChosenInput | None = None
        self.layer_outputs: dict[str, torch.Tensor] = {}
        self._journal: list[str | ValueChange] = []
        self.input_guess: InputGuess | None = None  # how a user module's input was chosen
        self._per_token_output: dict[tuple[int, ...], bool] = {}
        self.weights_unsaved = False
        """A user's module was trained since its weights were last saved: no workspace file
        holds them, so quitting asks (see `save_weights`)."""
        self._data_dir: Path | None = None
        self._data_count = 0
        self._undone: list[str | ValueChange] = []
        """What undo took back, latest last: redo replays it in order (a set value or a
        spec edit, which the editor's own redo stack holds)."""
        if module is not None:
            self.builder = None
            self.model = module
            self.training = module.training
            first = next(module.parameters(), None)
            if first is not None:
                self.device = str(first.device)
                self.dtype_name = str(first.dtype).replace("torch.", "")
        else:
            self._choose_device_for_size()
            self.builder = Builder(device=self.device, training=self.training)
            seed = self.script.next_seed()
            with seeded(seed):
                self.model = self.builder.build(self.spec)
            self.code_log.append(self.script.load(self.spec, seed) + "\n" + self.load_line)
        if module is not None:
            self.code_log.append(self.load_line)
        self._checksums = Checksums()
        """The tensor CRCs of the last snapshot, which an edit that wrote no values reuses."""
        self.snapshot = snapshot(self.model, checksums=self._checksums)

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_workspace(cls, workspace: Workspace, *, path: Path | None = None) -> Lab:
        lab = cls(workspace.spec)
        lab.path = path
        lab._disk_stamp = _fingerprint(path) if path is not None else None
        lab.train_settings = dict(workspace.training)
        lab.runs = [RunRecord.from_data(dict(run)) for run in workspace.runs]
        modes = workspace.modes
        messages = []
        if workspace.input:
            try:
                lab.set_input(workspace.input["expression"],
                              seed=int(workspace.input.get("seed", 0)))
            except TuilabError as error:
                messages.append(str(error))
        for action, value in (("training", modes.get("training")),
                              ("dtype", modes.get("dtype")), ("device", modes.get("device"))):
            if value is None:
                continue
            try:
                if action == "training":
                    if not isinstance(value, bool):
                        raise SpecFileError(f"must be true or false, got {value!r}",
                                            where="modes.training")
                    lab.set_training(value)
                elif action == "dtype":
                    lab.set_dtype(str(value))
                else:
                    lab.set_device(str(value))
            except TuilabError as error:
                messages.append(str(error))
        lab.load_messages = messages
        lab.dirty = False
        return lab

    @classmethod
    def open(cls, path: str | Path) -> Lab:
        path = Path(path)
        return cls.from_workspace(load_workspace(path), path=path)

    def _choose_device_for_size(self) -> None:
        from tuilab.core.build import build

        total = param_bytes(build(self.spec, device="meta"))
        if total > MATERIALISE_LIMIT_BYTES:
            self.device = "meta"
            self.too_large_bytes = total

    @property
    def load_line(self) -> str:
        """The code log's line for loading this model (the script defines `build_model`)."""
        if self.editor is not None:
            return f"net = build_model()  # {self.name}"
        return f"net = {self._name}()  # your module (its code is not part of the log)"

    # --- what the app shows ---------------------------------------------------------------
    @property
    def editable(self) -> bool:
        return self.editor is not None

    @property
    def spec(self) -> ModelSpec:
        if self.editor is None:
            raise EditError(
                "this is your own module, not built from the palette: it can be inspected, run "
                "and trained, but palette edits are off", where=self._name)
        return self.editor.spec

    @property
    def name(self) -> str:
        return self.editor.spec.name if self.editor else self._name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.editor.spec.input_shape if self.editor else self._input_shape

    @property
    def takes_tokens(self) -> bool:
        return self.editor.spec.takes_tokens if self.editor else self._takes_tokens

    @property
    def vocab_size(self) -> int | None:
        return self.editor.spec.vocab_size if self.editor else self._vocab_size

    @property
    def on_meta(self) -> bool:
        return self.device == "meta"

    def too_large_message(self) -> str:
        gb = self.too_large_bytes / 2**30
        return (f"{self.name} needs {gb:.1f} GiB for its parameters and buffers, more than tuilab "
                f"materialises ({MATERIALISE_LIMIT_BYTES / 2**30:.0f} GiB): it lives on the "
                "meta device, to inspect and summarise without allocating it")

    # --- what the inspector reads ----------------------------------------------------------
    def tensor_stats(self, key: str, *, kind: str = "parameter") -> TensorStats | None:
        """Value summary of one parameter or buffer (None on meta, or for a lazy tensor)."""
        from tuilab.core.introspect import module_at, tensor_stats

        row = (self.snapshot.buffers if kind == "buffer" else self.snapshot.parameters).get(key)
        if row is None:
            return None
        module = module_at(self.model, row.module)
        table = module._buffers if kind == "buffer" else module._parameters
        return tensor_stats(table.get(row.name))

    def state_dict_rows(self, path: str = "") -> list[tuple[str, tuple[int, ...], str]]:
        """`net.state_dict()` rows, or one node's own (`net[2].state_dict()`: keys relative
        to it, as PyTorch prints them)."""
        from tuilab.core.introspect import module_at, state_dict_rows

        return state_dict_rows(module_at(self.model, path) if path else self.model)

    def hook_rows(self) -> list[tuple[str, str, int, str]]:
        from tuilab.core.introspect import hook_rows

        return hook_rows(self.model)

    def model_repr(self) -> str:
        """`print(model)`, exactly as PyTorch prints it."""
        return repr(self.model)

    def export_source(self) -> str:
        from tuilab.core.export import export_source

        return export_source(self.spec)

    # --- state changes --------------------------------------------------------------------
    def _check_idle(self) -> None:
        if self.busy_reason:
            raise EditError(f"{self.busy_reason}: stop it first", where=self.name)

    def _refresh(self, description: str, code: str, path: str | None = None, *,
                 dirty: bool = True, values_written: bool = True,
                 flags_only: bool = False) -> LabUpdate:
        """Snapshot, diff against the last snapshot, log the code line.

        `dirty=False` for what a workspace file does not hold (weights changed by a forward
        pass, an init, a hook): quitting after those has nothing unsaved to ask about.
        `values_written=False` where nothing ran that writes into an existing tensor (a
        structural edit builds new tensors only): the snapshot then reuses the CRCs of the
        tensors that did not move instead of reading every tensor again. `flags_only` where
        only `training` flags moved (train/eval of palette blocks): only those are read.
        """
        if flags_only:
            new = with_training_flags(self.snapshot, self.model)
        else:
            new = snapshot(self.model, checksums=self._checksums, trusted=not values_written)
        change = diff(self.snapshot, new)
        self.snapshot = new
        if code:
            self.code_log.append(code)
        self.dirty = self.dirty or dirty
        return LabUpdate(description, code, change, new, path)

    def edit(self, action: str, *args: Any, **kwargs: Any) -> LabUpdate:
        """Run a SpecEditor edit (`add`, `remove`, `move`, `indent`, `outdent`, `duplicate`,
        `rename`, `set_arg`, `set_args`, `share`, `set_frozen`, `set_input_shape`, `undo`,
        `redo`) and rebuild the live module from the new spec."""
        self._check_idle()
        if action == "undo" and self._journal and not isinstance(self._journal[-1], str):
            change = self._journal.pop()
            change.undo()
            self._undone.append(change)
            return self._refresh(f"undo {change.description}",
                                 change.undo_code(),
                                 dirty=False)
        if action == "redo" and not self._undone:
            # a set value since the last undo ends what can be redone, as any new edit does
            raise EditError("nothing to redo")
        if action == "redo" and not isinstance(self._undone[-1], str):
            change = self._undone.pop()
            change.redo()
            self._journal.append(change)
            return self._refresh(f"redo {change.description}", change.code,
                                 change.paths[0] if change.paths else None, dirty=False)
        editor = self._editor()
        method = getattr(editor, action, None)
        if action.startswith("_") or not callable(method):
            raise EditError(f"unknown edit {action!r}")
        before = editor.checkpoint()
        if action == "add" and self._shapes is not None and self._shapes[0] is editor.spec:
            kwargs.setdefault("shapes", self._shapes[1])  # a Linear takes its in_features
        result: EditResult = method(*args, **kwargs)
        try:
            self._check_fits(result.spec)
        except ModeError:
            editor.rollback(before)
            raise
        seed = self._seed_for(self.builder.new_nodes(result.spec))
        try:
            with seeded(seed):
                self.model = self.builder.build(result.spec)
        except Exception as error:
            editor.rollback(before)
            self.model = self.builder.build(editor.spec)
            raise EditError(f"the model could not be built after this edit: {error}",
                            where=result.path or "") from None
        if action == "undo":
            if self._journal:
                self._journal.pop()
            self._undone.append("spec")
        elif action == "redo":
            if self._undone:
                self._undone.pop()
            self._journal = [*self._journal[-199:], "spec"]
        else:
            self._journal = [*self._journal[-199:], "spec"]
            self._undone.clear()
        code = edit_code(self.script, action, before[0], result.spec, result.code,
                         self.builder.created, result.description)
        return self._refresh(result.description, _with_seed(seed, code), result.path,
                             values_written=False)

    def _seed_for(self, fresh: list[Node]) -> int | None:
        """A new seed when a new block will draw random weights (None when none will)."""
        if any(node_param_bytes(node) for node in fresh):
            return self.script.next_seed()
        return None

    def _check_fits(self, spec: ModelSpec) -> None:
        """Refuse an edit whose new blocks would push the live model past what tuilab
        materialises, before a byte is allocated (a 40 GB Linear would otherwise be made,
        and initialised, on the CPU)."""
        if self.builder is None or self.on_meta:
            return
        fresh = self.builder.new_nodes(spec)
        if not fresh:
            return
        added = sum(node_param_bytes(node, self.builder.dtype) for node in fresh)
        if added <= _EDIT_SIZE_CHECK_BYTES:
            return
        total = param_bytes(self.model) + added
        if total > MATERIALISE_LIMIT_BYTES:
            raise ModeError(
                f"this edit would make {self.name} need {total / 2**30:.1f} GiB for its "
                f"parameters and buffers, more than tuilab materialises "
                f"({MATERIALISE_LIMIT_BYTES / 2**30:.0f} GiB); the model was left as it was",
                where=next((p for p, n in walk(spec.root) if n.id == fresh[0].id), "") or "(root)")

    def _editor(self) -> SpecEditor:
        if self.editor is None:
            self.spec  # raises the explanation  # noqa: B018
        assert self.editor is not None
        return self.editor

    def set_training(self, training: bool) -> LabUpdate:
        self._check_idle()
        from tuilab.core.runtime import set_training

        code = set_training(self.model, training)
        self.training = training
        if self.builder is not None:
            self.builder.training = training
        self._script_suffix()
        # palette blocks only flip flags; a user's own module may override train() to do
        # anything, so its snapshot reads everything again
        return self._refresh("train mode" if training else "eval mode", code,
                             flags_only=self.editable)

    def set_dtype(self, name: str) -> LabUpdate:
        self._check_idle()
        from tuilab.core.runtime import change_mode, parse_dtype

        dtype = parse_dtype(name)
        code = change_mode(self.model, dtype=dtype, probe_input=self._probe_input(dtype=dtype))
        self.dtype_name = name
        if self.builder is not None:
            self.builder.dtype = dtype
        self._script_suffix()
        return self._refresh(f"dtype {name}", code + self._optimizer_note())

    def set_device(self, name: str) -> LabUpdate:
        self._check_idle()
        if self.on_meta:
            raise ModeError(self.too_large_message(), where="device")
        from tuilab.core.runtime import change_mode, parse_device

        device = parse_device(name)
        code = change_mode(self.model, device=device,
                           probe_input=self._probe_input(device=str(device)))
        self.device = str(device)
        if self.builder is not None:
            self.builder.device = self.device
        return self._refresh(f"device {self.device}", code + self._optimizer_note())

    def _script_suffix(self) -> None:
        """What the builder does to each new module, said in the script's constructors."""
        suffix = "" if self.dtype_name == "float32" else f".to(torch.{self.dtype_name})"
        self.script.suffix = suffix + ("" if self.training else ".eval()")

    def _optimizer_note(self) -> str:
        return "  # the optimizer is rebuilt for the next run: its state was reset"

    # --- inputs and runs ------------------------------------------------------------------
    def make_input(self, *, device: str | None = None,
                   dtype: torch.dtype | None = None) -> torch.Tensor:
        from tuilab.core.runtime import parse_dtype
        from tuilab.core.shapes import make_input

        return make_input(self.input_shape, takes_tokens=self.takes_tokens,
                          vocab_size=self.vocab_size, device=device or self.device,
                          dtype=dtype or parse_dtype(self.dtype_name))

    def _probe_input(self, *, device: str | None = None,
                     dtype: torch.dtype | None = None) -> torch.Tensor | None:
        if self.on_meta or not self.input_shape:
            return None
        return self.make_input(device=device, dtype=dtype)

    def _check_runnable(self) -> None:
        if self.on_meta:
            raise ModeError(self.too_large_message(), where="run")

    def summary(self) -> Summary:
        from tuilab.core.shapes import summarize_module, summarize_spec

        if self.editor is not None:
            spec = self.editor.spec
            summary = summarize_spec(spec, training=self.training)
            self._shapes = (spec, {layer.path: layer.output_shape for layer in summary.layers})
            return summary
        return summarize_module(self.model, self.input_shape, takes_tokens=self.takes_tokens,
                                vocab_size=self.vocab_size, name=self.name)

    # --- the chosen input and set values (logic in core/inputs.py) --------------------------
    @property
    def current_input(self) -> ChosenInput:
        """The input forward, backward and hooks use: the chosen one while its shape is the
        input shape, else a seeded `torch.rand(...)` of the input shape, fixed until the
        shape changes (forward after forward sees the same tensor)."""
        from tuilab.core.inputs import choose_input, default_input_text

        chosen = self.chosen_input
        if chosen is not None and tuple(chosen.tensor.shape) == tuple(self.input_shape):
            return chosen
        text = default_input_text(self.input_shape, takes_tokens=self.takes_tokens,
                                  vocab_size=self.vocab_size)
        if self._default_input is None or self._default_input.text != text:
            self._default_input = choose_input(text, max_numel=2**40)
        return self._default_input

    def set_input(self, text: str, *, seed: int = 0) -> LabUpdate:
        """Choose the input from the language (`torch.arange(9.).view(3, 3)`); its shape
        becomes the input shape. An ExpressionError (or a refused shape) changes nothing."""
        from tuilab.core.inputs import choose_input

        chosen = choose_input(text, seed=seed)
        shape = tuple(chosen.tensor.shape)
        if shape != tuple(self.input_shape):
            if self.editor is not None:
                self.edit("set_input_shape", check_input_shape(list(shape)))
            else:
                self._input_shape = shape
        self.chosen_input = self._logged_input = chosen
        return self._refresh(f"input {chosen.text}", chosen.code())

    def clear_input(self) -> LabUpdate:
        """Back to a seeded random input of the input shape."""
        self.chosen_input = None
        return self._refresh("random input", "")

    def input_data(self) -> dict[str, Any]:
        return self.chosen_input.to_data() if self.chosen_input is not None else {}

    def set_value(self, text: str, *, seed: int = 0) -> tuple[LabUpdate, tuple[str, ...]]:
        """`PATH = EXPR` on a parameter or buffer (`2.weight[0, 0] = 100`); undoable with
        `edit("undo")`; returns the update and every path the tensor shows at (ties)."""
        self._check_idle()
        self._check_runnable()
        from tuilab.core.inputs import set_value

        change = set_value(self.model, text, seed=seed, module_expr=self._module_expr)
        self._journal = [*self._journal[-199:], change]
        self._undone.clear()
        # dirty=False: a workspace file holds no weights (like an init), nothing to save
        return self._refresh(change.description, change.code, change.paths[0] if change.paths
                             else None, dirty=False), change.paths

    def _input_tensor(self) -> tuple[torch.Tensor, str]:
        """The current input on the model's device, and its code line if not yet logged."""
        chosen = self.current_input
        code = "" if chosen is self._logged_input else chosen.code() + "\n"
        self._logged_input = chosen
        from tuilab.core.runtime import parse_dtype

        x = chosen.tensor
        dtype = parse_dtype(self.dtype_name) if x.is_floating_point() else x.dtype
        return x.to(device=self.device, dtype=dtype), code

    def memory_plan(self, summary: Summary | None = None) -> MemoryPlan:
        """What a training step of this model needs, on meta (``core.memory``): with the
        optimizer of the last run's settings (Adam by default) and the lab's dtype. The
        ``summary`` of the same model lends its forward's peak where it ran in that dtype."""
        from tuilab.core.memory import OPTIMIZERS, plan_memory
        from tuilab.core.runtime import parse_dtype

        model = (Builder(device="meta", training=self.training).build(self.editor.spec)
                 if self.editor is not None else self.model)
        optimizer = str(self.train_settings.get("optimizer") or "adam")
        same_dtype = self.editor is None or self.dtype_name == "float32"  # specs build so
        forward_peak = (summary.forward_peak_bytes if summary is not None and same_dtype
                        and summary.method == "meta" else None)
        return plan_memory(model, self.input_shape, takes_tokens=self.takes_tokens,
                           vocab_size=self.vocab_size,
                           optimizer=optimizer if optimizer in OPTIMIZERS else "adam",
                           dtype=parse_dtype(self.dtype_name), forward_peak=forward_peak)

    def forward(self) -> tuple[ForwardReport, LabUpdate]:
        """One forward pass on the current input; in train mode BatchNorm's buffers change."""
        self._check_idle()
        self._check_runnable()
        from tuilab.core.runtime import forward_report

        x, code = self._input_tensor()
        outputs: dict[str, torch.Tensor] = {}
        seed = self.script.next_seed()  # dropout draws from the generator in train mode
        with seeded(seed), _unchanged_on_failure(self.model, "forward pass", x):
            report = forward_report(self.model, x, outputs=outputs)
        self.layer_outputs = outputs
        line = f"out = {self._net_call(x)}"
        return report, self._refresh("forward pass", code + _with_seed(seed, line), dirty=False)

    def _net_call(self, x: torch.Tensor) -> str:
        """`net(x)`, or `net(x.to(torch.float64))` where the lab casts the input to its dtype
        (the input's line makes float32 values)."""
        if x.is_floating_point() and self.dtype_name != "float32":
            return f"net(x.to(torch.{self.dtype_name}))"
        return "net(x)"

    def backward(self, grad: str | None = None) -> tuple[BackwardReport, LabUpdate]:
        """With a chosen input (or `grad` given): `out = net(x); out.backward(GRAD)`, GRAD
        from the language (`torch.ones_like(out)` by default), reported loss = sum(out·GRAD).
        Otherwise the task's loss on a batch of its data, as before."""
        self._check_idle()
        self._check_runnable()
        from tuilab.core.runtime import backward_report, parse_dtype

        if self.chosen_input is not None or grad is not None:
            return self._backward_on_input(grad)

        data = self.task_data(self.train_settings.get("task"),
                              samples=max(8, self.input_shape[0]))
        batch = slice(0, self.input_shape[0])
        dtype = parse_dtype(self.dtype_name)
        x = data.x_train[batch].to(self.device)
        y = data.y_train[batch].to(self.device)
        x = x.to(dtype) if x.is_floating_point() else x
        y = y.to(dtype) if y.is_floating_point() else y
        seed = self.script.next_seed()  # dropout draws from the generator in train mode
        with seeded(seed), _unchanged_on_failure(self.model, "backward pass", x):
            report = backward_report(self.model, x, y, data.loss)
        # The task's data is tuilab's, not PyTorch's: the script loads the very batch.
        where = self._save_data("batch", {"x": x.detach().cpu(), "y": y.detach().cpu()})
        code = _with_seed(seed, (
            f"batch = torch.load({str(where)!r}, weights_only=True)  # the task's x and y\n"
            f"loss = {data.loss}(net(batch['x']), batch['y'])\nloss.backward()"))
        return report, self._refresh("backward pass", code, dirty=False)

    def _save_data(self, kind: str, tensors: dict[str, Any]) -> Path:
        """Save tensors the script loads (a task's batch, a run's weights) in this session's
        folder; `torch.load(..., weights_only=True)` reads them back."""
        import tempfile

        import torch

        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="tuilab-log-"))
        self._data_count += 1
        path = self._data_dir / f"{kind}-{self._data_count}.pt"
        torch.save(tensors, path)
        return path

    # --- weights ----------------------------------------------------------------------------
    def save_state_dict(self, path: str | Path, node: str = "", *,
                        overwrite: bool = False) -> LabUpdate:
        """Save the `state_dict` of the model, or of the block at `node`, as safetensors.

        An existing file is kept unless `overwrite` (the app asks first)."""
        from tuilab.core.codelog import save_weights_code
        from tuilab.core.weights import WeightsError, save_weights

        self._check_runnable()
        target = Path(path).expanduser()
        if target.exists() and not overwrite:
            raise EditError("the file exists; choose another name or confirm overwriting it",
                            where=str(target))
        module = self._module_at(node)
        try:
            save_weights(module, target)
        except (WeightsError, OSError) as error:
            raise EditError(str(error), where=str(target)) from None
        if not node:
            self.weights_unsaved = False
        code = save_weights_code(self._module_expr(node), target.resolve())
        return self._refresh(f"weights of {node or 'the model'} saved to {target}", code, node,
                             dirty=False)

    def load_state_dict(self, path: str | Path, node: str = "") -> LabUpdate:
        """Load a weights file into the model, or into the block at `node` (a pre-trained
        sub-block, seed 002): all of it or, when a name or shape does not fit, nothing."""
        from tuilab.core.codelog import load_weights_code
        from tuilab.core.weights import WeightsError, load_weights

        self._check_idle()
        self._check_runnable()
        target = Path(path).expanduser()
        module = self._module_at(node)
        try:
            load_weights(module, target)
        except (WeightsError, OSError) as error:
            raise EditError(str(error), where=node or str(target)) from None
        code = load_weights_code(module, self._module_expr(node), target.resolve())
        return self._refresh(f"weights loaded into {node or 'the model'} from {target}", code,
                             node, dirty=False)

    def _module_at(self, node: str) -> nn.Module:
        from tuilab.core.introspect import module_at

        try:
            return module_at(self.model, node)
        except KeyError as error:
            raise EditError(str(error.args[0]), where=node) from None

    def grad_cam_code(self, data: Any, view: Any) -> str:
        """Seed 002's Grad-CAM as PyTorch, on the very image (saved: it is the task's), for the
        code log; it changes nothing in the model, as in the lab."""
        image = data.x_val[view.index : view.index + 1].detach().cpu()
        where = self._save_data("image", {"image": image})
        layer = self._module_expr(view.layer_path)
        restore = "net.train()" if self.training else "net.eval()"
        code = "\n".join([
            f"image = torch.load({str(where)!r}, weights_only=True)['image']"
            f"  # validation image {view.index}",
            "acts = {}",
            f"h = {layer}.register_forward_hook(lambda m, args, out: acts.update(a=out))",
            "net.eval()",
            f"scores = net(image.to(torch.{self.dtype_name}).requires_grad_())",
            "h.remove()",
            f"grads, = torch.autograd.grad(scores[0, {view.class_index}], acts['a'])",
            "cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * acts['a']).sum(dim=1))",
            restore,
        ])
        self.code_log.append(code)
        return code

    def after_run(self, run: RunRecord) -> LabUpdate:
        """Re-snapshot after a run; the log loads the weights the run ended with (a run's
        steps draw from tuilab's task data, so the script takes their result as values)."""
        if not run.steps or self.on_meta:
            return self.refresh("after training")
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        where = self._save_data("weights", state)
        code = (f"net.load_state_dict(torch.load({str(where)!r}, weights_only=True))"
                f"  # the weights {run.name} ended with")
        return self.refresh("after training", code)

    def _backward_on_input(self, grad: str | None) -> tuple[BackwardReport, LabUpdate]:
        import torch

        from tuilab.core.expressions import parse_expression
        from tuilab.core.inputs import backward_with
        from tuilab.core.introspect import grad_norms
        from tuilab.core.runtime import BackwardReport, first_tensor

        parse_expression(grad or "torch.ones_like(out)", names={"out"})  # refuse before running
        x, code = self._input_tensor()
        seed = self.script.next_seed()  # dropout draws from the generator in train mode
        with (seeded(seed), _unchanged_on_failure(self.model, "backward pass", x),
              torch.enable_grad()):
            out = first_tensor(self.model(x))
            if out is None:
                raise RunError("the model returned no tensor: nothing to differentiate")
            used, line = backward_with(out, grad)
        loss = float((out.detach().double() * used.double()).sum())
        report = BackwardReport(loss=loss, grad_norms=grad_norms(self.model))
        return report, self._refresh("backward pass",
                                     code + _with_seed(seed,
                                                       f"out = {self._net_call(x)}\n{line}"),
                                     dirty=False)

    def zero_grad(self) -> LabUpdate:
        from tuilab.core.runtime import zero_grad

        return self._refresh("zero_grad", zero_grad(self.model), dirty=False)

    def initialise(self, path: str, scheme: str, **options: Any) -> LabUpdate:
        self._check_idle()
        from tuilab.core.introspect import module_at
        from tuilab.core.runtime import apply_init

        module = module_at(self.model, path)
        seed = self.script.next_seed() if scheme not in ("constant", "zeros") else None
        with seeded(seed):
            code = _with_seed(seed, apply_init(module, scheme, **options))
        target = self._module_expr(path)
        return self._refresh(f"init {scheme} on {path or 'the model'}",
                             code.replace("net.", f"{target}.", 1) if target != "net" else code,
                             path, dirty=False)

    def _module_expr(self, path: str) -> str:
        if self.editor is None:
            return "net" if not path else f"net.get_submodule({path!r})"
        from tuilab.core.edits import module_expr

        return module_expr(self.editor.spec.root, path)

    @property
    def default_task(self) -> str:
        """The spec's task; for a user's module, next-token prediction when it takes token ids
        and returns a row of logits per token (a language model), else the teacher, which fits
        anything (a sequence classifier such as BERT's is fitted by the teacher)."""
        if self.editor is not None:
            return self.editor.spec.task
        if not self.takes_tokens:
            return "teacher"
        key = tuple(self.input_shape)
        if key not in self._per_token_output:
            out = self.summary().output_shape
            self._per_token_output[key] = bool(out and len(out) == 3 and out[:2] == key[:2])
        return "tokens" if self._per_token_output[key] else "teacher"

    def task_data(self, task: str | None = None, *, samples: int | None = None, seed: int = 0):
        from tuilab.core.tasks import make_task

        name = task or self.default_task
        with untracked():  # a task seeds the global generator: the log's seeds must not move
            return make_task(name, input_shape=self.input_shape[1:], vocab_size=self.vocab_size,
                             model=self.model, seed=seed, samples=samples,
                             base=self.path.parent if self.path is not None else None)

    # --- hooks ----------------------------------------------------------------------------
    @property
    def hooks(self) -> HookKit:
        """The hooks the user added from the app; created with the first one (torch loaded)."""
        if self._hooks is None:
            from tuilab.core.runtime import HookKit

            self._hooks = HookKit()
        return self._hooks

    def add_hook(self, path: str, kind: str, action: str) -> tuple[int, LabUpdate]:
        """Register a forward / forward_pre / backward hook on the live module at `path`."""
        hook_id = self.hooks.add(self.model, path, kind, action,
                                 target=self._module_expr(path))
        info = next(h for h in self.hooks.active() if h.id == hook_id)
        return hook_id, self._refresh(f"{kind} hook on {path or 'the model'}", info.code, path,
                                      dirty=False)

    def remove_hook(self, hook_id: int) -> LabUpdate:
        code = self.hooks.remove(hook_id)
        return self._refresh("hook removed", code, dirty=False)

    def devices(self) -> list[Any]:
        """Every device this machine could offer, with the reason an absent one is absent."""
        from tuilab.core.runtime import available_devices

        return available_devices()

    # --- training -------------------------------------------------------------------------
    def start_run(self, settings: dict[str, Any]) -> RunRecord:
        """Register a run; the app then iterates `train(run, stop, pause)` in a worker."""
        self._check_idle()
        self._check_runnable()
        settings = {k: v for k, v in settings.items() if (k, v) != ("processes", 1)}
        self._check_settings(settings)
        run = RunRecord(name=f"run {len(self.runs) + 1}", config=dict(settings))
        self.runs.append(run)
        self.train_settings = dict(settings)
        self.busy_reason = "a training run is going"
        self.dirty = True  # the run is history a workspace saves
        return run

    def _check_settings(self, settings: dict[str, Any]) -> None:
        """Refuse settings the trainer would refuse, before a run is registered: a bad value
        is a message beside its field, not a failed run in the history."""
        from tuilab.core.training import ConfigError, TrainConfig, check_config

        known = sorted([*TrainConfig.__dataclass_fields__, "processes"])
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ConfigError(f"unknown training setting {unknown[0]!r} (allowed: "
                              f"{', '.join(known)})", where=str(unknown[0]))
        check_config(TrainConfig(**{**_config_only(settings), "device": self.device,
                                    "dtype": self.dtype_name}))
        from tuilab.core.dtype_probe import check_dtype
        from tuilab.core.runtime import parse_dtype

        # The run trains the weights in the lab's dtype: a layer that cannot is refused here,
        # before a run enters the history.
        check_dtype(self.model, parse_dtype(self.dtype_name), self.device, backward=True)
        if settings.get("processes", 1) != 1:
            from tuilab.core.distributed import check_processes

            check_processes(settings["processes"])
            if self.editor is None:
                raise ConfigError("torchrun runs the exported script, which needs a model "
                                  "built in the lab (not your own module): use 1 process",
                                  where="processes")

    def train(self, run: RunRecord, stop: threading.Event,
              pause: threading.Event | None = None) -> Iterator[MetricsBatch]:
        """The training generator for `run`; safe to iterate in a worker thread.

        A batch of metrics every RUN_FLUSH_SECONDS: the app repaints its progress once a
        second and its plot less often, and each batch is a message the UI thread handles
        while the run waits for the GIL.
        """
        from tuilab.core.finite_weights import FiniteWeights
        from tuilab.core.training import TrainConfig, check_config, train

        try:
            config = check_config(TrainConfig(**{**_config_only(run.config),
                                                 "device": self.device,
                                                 "dtype": self.dtype_name}))
            started = time.perf_counter()
            if run.config.get("processes", 1) != 1:  # the exported script, under torchrun
                from tuilab.core.distributed import train_torchrun

                batches = train_torchrun(self.model, self.spec, config,
                                         nproc=run.config["processes"], stop=stop,
                                         pause=pause, flush_every_s=RUN_FLUSH_SECONDS)
            else:
                batches = train(self.model, self.task_data(config.task, seed=config.seed),
                                config, stop=stop, pause=pause, flush_every_s=RUN_FLUSH_SECONDS)
            guard = FiniteWeights(self.model)
            guard.keep(0)
            for batch in batches:
                batch = guard.after(batch)  # diverged: the last finite weights go back
                self._record(run, batch)
                yield batch
            run.steps_per_s = (len(run.steps) / (time.perf_counter() - started)
                               if run.steps else 0.0)
        except Exception as error:
            run.status = "failed"
            run.error = str(error)
            raise
        finally:
            self.busy_reason = ""
            if run.status == "running":
                run.status = "finished"
            self.dirty = True  # the run's history is part of the workspace
            if run.steps and self.editor is None:
                self.weights_unsaved = True

    @staticmethod
    def _record(run: RunRecord, batch: MetricsBatch) -> None:
        run.steps.extend(batch.steps)
        run.losses.extend(batch.losses)
        run.val_steps.extend(batch.val_steps)
        run.val_losses.extend(batch.val_losses)
        run.val_accuracy.extend(batch.val_accuracy)
        run.output = batch.output or run.output
        if batch.error:
            run.status = "failed"
            run.error = batch.error
        elif batch.done:
            run.status = "stopped" if batch.stopped else "finished"

    def refresh(self, description: str = "refresh", code: str = "") -> LabUpdate:
        """Re-snapshot after something ran (a training run, a hook) and return the diff."""
        return self._refresh(description, code)

    # --- files ----------------------------------------------------------------------------
    def workspace(self) -> Workspace:
        return Workspace(
            spec=self.spec,
            modes={"training": self.training, "device": self.device if not self.on_meta
                   else "cpu", "dtype": self.dtype_name},
            training={k: v for k, v in self.train_settings.items() if v is not None},
            runs=[run.to_data() for run in self.runs],
            input=self.input_data(),
        )

    def save(self, path: str | Path | None = None, *, overwrite: bool = False) -> Path:
        """Save atomically. A file another program (or another tuilab) changed since we read
        or wrote it is not overwritten unless the user says so (`overwrite=True`)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise EditError("choose a file name to save to", where="save")
        from tuilab.core.filenames import same_file

        ours = self.path is not None and same_file(target, self.path)
        if not overwrite and ours and self._changed_on_disk(target):
            raise FileChangedError(
                "changed on disk since tuilab opened it; save again to overwrite it, or save "
                "under another name", where=str(target))
        if not overwrite and not ours and target.exists():
            raise FileChangedError(
                "already exists, and this workspace was not opened from it; overwrite it, or "
                "save under another name", where=str(target))
        save_workspace(self.workspace(), target)
        self.path = target
        self._disk_stamp = _fingerprint(target)
        self.dirty = False
        return target

    def _changed_on_disk(self, path: Path) -> bool:
        # By content, not modification time: a filesystem with coarse times (FAT, some
        # network mounts) gives two writes in one second the same mtime.
        current = _fingerprint(path)
        return current is not None and current != self._disk_stamp

    def autosave(self) -> str | None:
        """Write the autosave copy; returns a message if that failed (the work is still here)."""
        if self.editor is None:
            return None
        from tuilab.core.autosave import autosave

        try:
            autosave(self.workspace())
        except Exception as error:  # never lose the session over its safety copy
            return f"autosave failed: {error}"
        return None

    def weights_path(self) -> str:
        """Where trained weights are offered to go: `<name>.safetensors` in the folder."""
        return f"{self.name}.safetensors"

    def save_weights(self, path: str | Path) -> Path:
        """Write the model's state_dict as safetensors (atomically); WeightsError says why
        not (a .pt name, a missing folder, a full disk) and leaves any old file whole."""
        from tuilab.core.weights import save_weights

        target = Path(path).expanduser()
        save_weights(self.model, target)
        self.weights_unsaved = False
        return target

    def set_input_shape(self, text: str) -> LabUpdate:
        shape = check_input_shape(text)
        if self.editor is not None:
            return self.edit("set_input_shape", shape)
        self._input_shape = shape
        from tuilab.core.edits import input_code

        return self._refresh(f"input shape {shape}", input_code(
            shape, takes_tokens=self.takes_tokens, vocab_size=self.vocab_size))


def _with_seed(seed: int | None, code: str) -> str:
    """`torch.manual_seed(n)` before the code of an action the lab seeded with n."""
    if seed is None or not code:
        return code
    return f"torch.manual_seed({seed})\n{code}"


def _fingerprint(path: Path) -> str | None:
    """SHA-256 of the file's bytes; None when it cannot be read (absent: nothing to lose)."""
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class _unchanged_on_failure:  # used as a `with` statement, like a function
    """Run a pass; if it raises, put every buffer back (BatchNorm layers before the failing
    one already updated their statistics) and raise a RunError naming the module that
    raised, found by re-running the pass with hooks (only after a failure)."""

    def __init__(self, model: nn.Module, what: str, x: torch.Tensor) -> None:
        self.model, self.what, self.x = model, what, x

    def __enter__(self) -> None:
        self.buffers = [(b, b.detach().clone()) for b in self.model.buffers()
                        if not b.is_meta and not _is_lazy(b)]

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> bool:
        if error is None or not isinstance(error, Exception) or isinstance(error, TuilabError):
            return False
        self._restore()
        path = _failing_module(self.model, self.x)
        self._restore()
        from tuilab.core.runtime import error_line

        where = "(model)" if path == "" else path
        text = f"the {self.what} failed"
        if path is not None:
            text += f" in {type(self.model.get_submodule(path)).__name__}"
        message = f"{text}: {error_line(error)}" + _user_frame(error)
        hint = _run_hint(error)
        raise RunError(message + (f"; {hint}" if hint else ""),
                       where=where if path is not None else "run") from error

    def _restore(self) -> None:
        import torch

        with torch.no_grad():
            for buffer, before in self.buffers:
                if buffer.shape == before.shape:
                    buffer.copy_(before)


def _is_lazy(tensor: Any) -> bool:
    from torch.nn.parameter import UninitializedTensorMixin

    return isinstance(tensor, UninitializedTensorMixin)


def _user_frame(error: BaseException) -> str:
    """Where the user's code raised, as ' (at net.py:12)': the innermost traceback line outside
    PyTorch, tuilab and the standard library; '' when there is none (a palette block)."""
    import sysconfig
    import traceback

    import torch

    roots = (Path(torch.__file__).resolve().parent, Path(__file__).resolve().parents[1],
             Path(sysconfig.get_paths()["stdlib"]).resolve())
    skip = tuple(str(root) for root in roots)
    found = ""
    for frame in traceback.extract_tb(error.__traceback__):
        filename = str(Path(frame.filename).resolve()) if frame.filename else ""
        if filename and not filename.startswith(skip) and not frame.filename.startswith("<"):
            found = f" (at {frame.filename}:{frame.lineno})"
    return found


def _run_hint(error: BaseException) -> str:
    text = str(error)
    if "Expected more than 1 value per channel when training" in text:
        return ("BatchNorm in train mode normalises over the batch and needs more than one "
                "value per channel: use a batch of 2 or more, or switch to eval mode (T)")
    return ""


def _failing_module(model: nn.Module, x: torch.Tensor) -> str | None:
    """The path of the innermost module whose forward raised on `x`, or None."""
    import torch

    paths: dict[int, str] = {}
    for path, module in model.named_modules():
        paths.setdefault(id(module), path)
    stack: list[str] = []
    failed: list[str] = []
    handles = []

    def pre(module: nn.Module, args: Any) -> None:
        stack.append(paths.get(id(module), "?"))

    def post(module: nn.Module, args: Any, output: Any) -> None:
        if stack:
            stack.pop()

    for module in {id(m): m for m in model.modules()}.values():
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    flags = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    except Exception:
        if stack:
            failed.append(stack[-1])
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in flags:
            module.training = flag
    return failed[0] if failed else None


def param_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters *and buffers* (BatchNorm1d(10**9, affine=False) has no
    parameter but 8 GB of running statistics), tied ones counted once; a lazy module's
    tensors that have no shape yet count as nothing."""
    from torch.nn.parameter import UninitializedTensorMixin

    seen: dict[int, Any] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return sum(t.numel() * t.element_size() for t in seen.values()
               if not isinstance(t, UninitializedTensorMixin))


def node_param_bytes(node: Node, dtype: torch.dtype | None = None) -> int:
    """Bytes of one node's own parameters and buffers (a container's children not included),
    found by constructing it on the meta device: nothing is allocated."""
    import torch
    from torch.nn.parameter import UninitializedTensorMixin

    definition = node.definition
    try:
        with torch.device("meta"):
            module = (definition.make(node.args, []) if definition.is_container
                      else definition.make(node.args))
    except Exception:
        return 0  # the builder reports the constructor's refusal, naming the node
    params = ((*module._parameters.values(), *module._buffers.values())
              if definition.is_container else (*module.parameters(), *module.buffers()))
    size = torch.empty((), dtype=dtype).element_size() if dtype is not None else None
    return sum(p.numel() * (size or p.element_size()) for p in params
               if p is not None and not isinstance(p, UninitializedTensorMixin))


def _config_only(settings: dict[str, Any]) -> dict[str, Any]:
    """The TrainConfig fields of a run's settings (``processes`` says how, not what)."""
    return {k: v for k, v in settings.items() if k != "processes"}
