"""Lessons: the seed texts as guided steps, each checking its own figure on a live Lab.

A lesson is data (`tuilab/lessons/*.toml`, like presets: never code). Each step names a model
(a preset, or blocks written as in a workspace), an input in the expression language, the modes,
the actions to take (forward, backward, init, set a value, add a block, a hook …) and the figure
to expect. `run_step` does all of that on a Lab and reads the lab's own figure, so the same
comparison serves `tuilab lessons --check` and the app's lesson pane.

A step without a model carries on from the previous step's lab: that is how a lesson shows a
dict growing (`MySequential._modules` gaining '0', '1', …) or a tied weight changing in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuilab.core.errors import SpecFileError, TuilabError
from tuilab.core.paths import shipped_dir
from tuilab.core.workspace import load_preset, parse_toml, read_file_text, spec_from_data

if TYPE_CHECKING:
    import torch

    from tuilab.core.lab import Lab, LabUpdate

ACTIONS = ("forward", "backward", "zero_grad", "init", "set", "train", "eval", "add", "hook",
           "dtype")
"""What a step can ask the lab to do, in order; each is one key (or a few) in the app."""

FIGURES = ("shape", "values", "count", "keys", "same", "is_none", "zero_or_abs_at_least",
           "abs_at_most", "orthonormal_rows", "std_near", "unchanged", "training", "dtype",
           "hook_events")
"""How a step's figure is compared: `expect = { figure = WHAT, <one of these> = VALUE }`."""

_STEP_KEYS = {"id", "title", "text", "section", "model", "input", "seed", "modes", "do", "keys",
              "expect", "note"}
_LESSON_KEYS = {"lesson", "steps"}
_HEADER_KEYS = {"id", "seed", "title", "summary", "note"}
_EXPECT_KEYS = {"figure", "tol", *FIGURES}


@dataclass(frozen=True)
class Step:
    """One example of a seed text: set the lab up, act, and compare one figure."""

    id: str
    title: str
    text: str
    expect: Mapping[str, Any]
    section: str = ""
    model: Mapping[str, Any] | None = None
    input: str | None = None
    seed: int = 0
    modes: Mapping[str, Any] = field(default_factory=dict)
    actions: tuple[Mapping[str, Any], ...] = ()
    keys: str = ""
    note: str = ""

    @property
    def expected_text(self) -> str:
        return describe_expected(self.expect)


@dataclass(frozen=True)
class Lesson:
    id: str
    seed: str
    title: str
    summary: str
    steps: tuple[Step, ...]
    note: str = ""


@dataclass(frozen=True)
class StepResult:
    """The expected figure and the lab's own, side by side."""

    step: Step
    expected: str
    got: str
    ok: bool


# --- loading ------------------------------------------------------------------------------
def lessons_dir() -> Path:
    return shipped_dir("lessons")


def load_lessons(folder: Path | None = None) -> list[Lesson]:
    """Every lesson, in the order of their ids (000 … 003)."""
    folder = folder or lessons_dir()
    lessons = [load_lesson(path) for path in sorted(folder.glob("*.toml"))]
    return sorted(lessons, key=lambda lesson: lesson.id)


def find_lesson(lesson_id: str, lessons: Sequence[Lesson] | None = None) -> Lesson:
    lessons = load_lessons() if lessons is None else lessons
    for lesson in lessons:
        if lesson.id == lesson_id or lesson.seed == lesson_id:
            return lesson
    known = ", ".join(lesson.id for lesson in lessons)
    raise SpecFileError(f"unknown lesson {lesson_id!r}; the lessons are {known}", where="lesson")


def load_lesson(path: Path) -> Lesson:
    """Read and check one lesson file; an error names `file: steps[i].field`."""
    source = path.name
    data = parse_toml(read_file_text(path), source=source)
    _known(data, _LESSON_KEYS, source)
    header = data.get("lesson")
    if not isinstance(header, Mapping):
        raise SpecFileError("missing the [lesson] table", where=source)
    _known(header, _HEADER_KEYS, f"{source}: lesson")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise SpecFileError("needs at least one [[steps]] table", where=source)
    steps = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_steps):
        where = f"{source}: steps[{index}]"
        step = _step_from_data(raw, where)
        if step.id in seen:
            raise SpecFileError(f"step id {step.id!r} is used twice", where=where)
        if index == 0 and step.model is None:
            raise SpecFileError("the first step must name a model", where=where)
        seen.add(step.id)
        steps.append(step)
    return Lesson(id=_text(header, "id", f"{source}: lesson"),
                  seed=_text(header, "seed", f"{source}: lesson"),
                  title=_text(header, "title", f"{source}: lesson"),
                  summary=str(header.get("summary", "")), steps=tuple(steps),
                  note=str(header.get("note", "")))


def _step_from_data(raw: Any, where: str) -> Step:
    if not isinstance(raw, Mapping):
        raise SpecFileError("must be a table", where=where)
    _known(raw, _STEP_KEYS, where)
    expect = raw.get("expect")
    if not isinstance(expect, Mapping):
        raise SpecFileError("missing the expected figure (expect = { figure = …, … })",
                            where=where)
    _known(expect, _EXPECT_KEYS, f"{where}.expect")
    kinds = [key for key in FIGURES if key in expect]
    if len(kinds) != 1:
        raise SpecFileError(f"expect needs exactly one of {', '.join(FIGURES)}",
                            where=f"{where}.expect")
    actions = raw.get("do", [])
    if not isinstance(actions, list) or not all(isinstance(a, Mapping) for a in actions):
        raise SpecFileError("must be a list of tables", where=f"{where}.do")
    for number, action in enumerate(actions):
        if action.get("action") not in ACTIONS:
            raise SpecFileError(f"action must be one of {', '.join(ACTIONS)}",
                                where=f"{where}.do[{number}]")
    model = raw.get("model")
    if model is not None and not isinstance(model, Mapping):
        raise SpecFileError("must be a table", where=f"{where}.model")
    modes = raw.get("modes", {})
    if not isinstance(modes, Mapping):
        raise SpecFileError("must be a table", where=f"{where}.modes")
    return Step(id=_text(raw, "id", where), title=_text(raw, "title", where),
                text=_text(raw, "text", where), expect=dict(expect),
                section=str(raw.get("section", "")), model=model,
                input=raw.get("input"), seed=int(raw.get("seed", 0)), modes=dict(modes),
                actions=tuple(dict(a) for a in actions), keys=str(raw.get("keys", "")),
                note=str(raw.get("note", "")))


def _known(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SpecFileError(f"unknown key {unknown[0]!r}", where=where)


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise SpecFileError(f"{key} must be a non-empty string", where=where)
    return value


# --- running ------------------------------------------------------------------------------
def make_lab(step: Step) -> Lab:
    """A fresh lab on the step's model (seeded, so random figures repeat)."""
    import torch

    from tuilab.core.lab import Lab

    model = step.model or {}
    torch.manual_seed(step.seed)
    if "preset" in model:
        spec = load_preset(str(model["preset"]))
    else:
        spec = spec_from_data({"model": {"name": step.id, **model}},
                              source=f"step {step.id}")
    return Lab(spec)


def prepare(lab: Lab | None, step: Step) -> Lab:
    """The lab at the start of `step`: a new one for a step naming a model, else `lab`, with
    the step's input and modes set. What the learner then does is `act`."""
    if step.model is not None or lab is None:
        lab = make_lab(step)
    if step.input is not None:
        lab.set_input(step.input, seed=step.seed)
    if "training" in step.modes and lab.training != bool(step.modes["training"]):
        lab.set_training(bool(step.modes["training"]))
    if "dtype" in step.modes and lab.dtype_name != step.modes["dtype"]:
        lab.set_dtype(str(step.modes["dtype"]))
    return lab


def act(lab: Lab, step: Step) -> list[LabUpdate]:
    """Do the step's actions on `lab` (what `n` does in the app), in order."""
    return [do_action(lab, action) for action in step.actions]


def do_action(lab: Lab, action: Mapping[str, Any]) -> LabUpdate:
    kind = action["action"]
    path = str(action.get("path", ""))
    if kind == "forward":
        return lab.forward()[1]
    if kind == "backward":
        return lab.backward(action.get("grad"))[1]
    if kind == "zero_grad":
        return lab.zero_grad()
    if kind == "init":
        options = {key: action[key] for key in ("value", "std") if key in action}
        return lab.initialise(path, str(action["scheme"]), **options)
    if kind == "set":
        return lab.set_value(str(action["text"]))[0]
    if kind in ("train", "eval"):
        return lab.set_training(kind == "train")
    if kind == "dtype":
        return lab.set_dtype(str(action["dtype"]))
    if kind == "add":
        return lab.edit("add", str(action["block"]), path, args=dict(action.get("args", {})))
    # hook
    return lab.add_hook(path, str(action.get("kind", "forward")),
                        str(action.get("hook", "shapes")))[1]


def baseline(lab: Lab, step: Step) -> torch.Tensor | None:
    """A copy of the figure before the step's actions, for an `unchanged` comparison."""
    if "unchanged" not in step.expect:
        return None
    tensor = _figure_tensor(lab, str(step.expect["figure"]))
    return None if tensor is None else tensor.detach().clone()


def lab_for_step(lesson: Lesson, index: int) -> Lab:
    """A lab as the lesson has it at the start of step `index`: from the last step at or
    before it that names a model, every earlier step prepared and acted in order. This is
    how the app brings a learner back to a step after they left the path."""
    start = max(i for i in range(index + 1) if lesson.steps[i].model is not None)
    lab: Lab | None = None
    for step in lesson.steps[start:index]:
        lab = prepare(lab, step)
        act(lab, step)
    lab = prepare(lab, lesson.steps[index])
    lab.dirty = False  # the lesson can make it again: nothing to save on leaving
    return lab


def run_step(lab: Lab | None, step: Step) -> tuple[Lab, StepResult]:
    """Prepare, act and compare one step headless; a refused action is a failed figure."""
    try:
        lab = prepare(lab, step)
        before = baseline(lab, step)
        act(lab, step)
        return lab, compare(lab, step, before=before)
    except TuilabError as error:
        return lab or make_lab(step), StepResult(step, step.expected_text, f"error: {error}",
                                                 False)


def check_all(lessons: Sequence[Lesson] | None = None) -> list[tuple[Lesson, list[StepResult]]]:
    """Every step of every lesson, run in order without a screen."""
    results = []
    for lesson in load_lessons() if lessons is None else lessons:
        lab: Lab | None = None
        rows = []
        for step in lesson.steps:
            lab, result = run_step(lab, step)
            rows.append(result)
        results.append((lesson, rows))
    return results


def check_report(results: Sequence[tuple[Lesson, list[StepResult]]]) -> dict[str, Any]:
    """The JSON of `tuilab lessons --check --json`."""
    lessons = [{"id": lesson.id, "seed": lesson.seed, "title": lesson.title,
                "steps": [{"id": r.step.id, "expected": r.expected, "got": r.got, "ok": r.ok}
                          for r in rows]}
               for lesson, rows in results]
    total = sum(len(rows) for _, rows in results)
    passed = sum(r.ok for _, rows in results for r in rows)
    return {"lessons": lessons, "passed": passed, "total": total}


# --- figures ------------------------------------------------------------------------------
def compare(lab: Lab, step: Step, *, before: torch.Tensor | None = None) -> StepResult:
    """Read the lab's figure for `step.expect` and compare it with the expected one."""
    expect = step.expect
    kind = next(key for key in FIGURES if key in expect)
    want = expect[kind]
    tol = float(expect.get("tol", 1e-4))
    try:
        got, ok = _CHECKS[kind](lab, str(expect["figure"]), want, tol, before)
    except NotYet as error:
        got, ok = str(error), False
    except TuilabError as error:
        got, ok = f"error: {error}", False
    return StepResult(step, describe_expected(expect), got, ok)


def describe_expected(expect: Mapping[str, Any]) -> str:
    kind = next((key for key in FIGURES if key in expect), "")
    want = expect.get(kind)
    figure = expect.get("figure", "")
    if kind == "shape":
        return f"{figure}.shape == {_shape_text(want)}"
    if kind == "values":
        tol = expect.get("tol")
        return f"{figure} == {want}" + (f" (±{tol})" if tol else "")
    if kind == "same":
        return f"{figure} and {want} are one tensor, equal everywhere"
    if kind == "is_none":
        return f"{figure} is None" if want else f"{figure} is not None"
    if kind == "zero_or_abs_at_least":
        return f"every {figure} is 0 or |w| ≥ {want}"
    if kind == "abs_at_most":
        return f"every |{figure}| ≤ {want}"
    if kind == "orthonormal_rows":
        return f"{figure} @ {figure}.T == I (±{expect.get('tol', 1e-4)})"
    if kind == "std_near":
        return f"{figure}.std() ≈ {want} (±{expect.get('tol', 1e-4)})"
    if kind == "unchanged":
        return f"{figure} unchanged by the step"
    if kind == "count":
        return f"{figure.replace('_', ' ')}: {int(want):,}"
    if kind == "keys":
        return f"{figure} keys {list(want)}"
    if kind == "dtype":
        return f"{figure}.dtype == torch.{want}"
    if kind == "training":
        return f"{figure}.training == {bool(want)}"
    return f"hooks fire on {', '.join(want)}, in that order"


def _shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _figure_tensor(lab: Lab, figure: str) -> torch.Tensor | None:
    from tuilab.core.values import resolve

    if figure == "x":
        return lab.current_input.tensor
    if figure == "net(x)":
        if "" not in lab.layer_outputs:
            raise _no_forward()
        return lab.layer_outputs[""]
    return resolve(lab.model, figure, outputs=lab.layer_outputs).tensor


class NotYet(TuilabError):
    """The figure does not exist yet (an output before any forward pass)."""


def _no_forward() -> TuilabError:
    return NotYet("no forward pass yet (f)")


def _check_shape(lab: Lab, figure: str, want: Any, tol: float, before: Any) -> tuple[str, bool]:
    tensor = _figure_tensor(lab, figure)
    if tensor is None:
        return "None", False
    got = tuple(tensor.shape)
    return _shape_text(got), got == tuple(int(d) for d in want)


def _check_values(lab: Lab, figure: str, want: Any, tol: float, before: Any) -> tuple[str, bool]:
    import torch

    tensor = _figure_tensor(lab, figure)
    if tensor is None:
        return "None", False
    got = tensor.detach().to("cpu", torch.float64)
    expected = torch.as_tensor(want, dtype=torch.float64)
    try:
        close = bool(torch.allclose(got, expected.expand_as(got), atol=tol, rtol=0))
    except RuntimeError:
        close = False
    return _values_text(got), close


def _values_text(tensor: torch.Tensor) -> str:
    from tuilab.core.values import to_nested

    if tensor.numel() > 16:
        return f"{tuple(tensor.shape)} tensor, mean {float(tensor.mean()):.4g}"
    values = to_nested(tensor.round(decimals=4))
    return str(values)


def _check_count(lab: Lab, figure: str, want: Any, tol: float, before: Any) -> tuple[str, bool]:
    counts = {
        "parameters": lambda: sum(p.numel() for p in lab.model.parameters()),
        "parameter_tensors": lambda: len(list(lab.model.parameters())),
        "buffers": lambda: sum(b.numel() for b in lab.model.buffers()),
        "modules": lambda: len(list(lab.model.modules())),
    }
    if figure not in counts:
        raise TuilabError(f"count of {figure!r}: choose one of {', '.join(counts)}",
                          where="figure")
    got = counts[figure]()
    return f"{got:,}", got == int(want)


def _check_keys(lab: Lab, figure: str, want: Any, tol: float, before: Any) -> tuple[str, bool]:
    from tuilab.core.introspect import module_at

    path, _, attribute = figure.rpartition(".") if "." in figure else ("", "", figure)
    module = module_at(lab.model, path)
    readers: dict[str, Callable[[], list[str]]] = {
        "_modules": lambda: list(module._modules),
        "_parameters": lambda: list(module._parameters),
        "_buffers": lambda: list(module._buffers),
        "state_dict": lambda: list(module.state_dict()),
        "named_parameters": lambda: [name for name, _ in module.named_parameters()],
    }
    if attribute not in readers:
        raise TuilabError(f"keys of {attribute!r}: choose one of {', '.join(readers)}",
                          where="figure")
    got = readers[attribute]()
    return str(got), got == list(want)


def _check_same(lab: Lab, figure: str, want: Any, tol: float, before: Any) -> tuple[str, bool]:
    first, second = _figure_tensor(lab, figure), _figure_tensor(lab, str(want))
    if first is None or second is None:
        return "None", False
    one_object = first.data_ptr() == second.data_ptr() and first.shape == second.shape
    equal = bool((first == second).all())
    return f"same object: {one_object}, equal: {equal}", one_object and equal


def _check_is_none(lab: Lab, figure: str, want: Any, tol: float, before: Any) -> tuple[str, bool]:
    tensor = _figure_tensor(lab, figure)
    got = tensor is None
    return ("None" if got else f"a {tuple(tensor.shape)} tensor"), got == bool(want)


def _check_sparse(lab: Lab, figure: str, want: Any, tol: float, before: Any) -> tuple[str, bool]:
    tensor = _figure_tensor(lab, figure)
    if tensor is None:
        return "None", False
    values = tensor.detach().abs()
    bad = int(((values != 0) & (values < float(want))).sum())
    zeros = int((values == 0).sum())
    return (f"{zeros} zeros, {values.numel() - zeros} with |w| ≥ {want}, {bad} between",
            bad == 0 and zeros < values.numel())


def _check_bound(lab: Lab, figure: str, want: Any, tol: float, before: Any) -> tuple[str, bool]:
    tensor = _figure_tensor(lab, figure)
    if tensor is None:
        return "None", False
    largest = float(tensor.detach().abs().max())
    return f"max |w| {largest:.4g}", largest <= float(want)


def _check_orthonormal(lab: Lab, figure: str, want: Any, tol: float,
                       before: Any) -> tuple[str, bool]:
    import torch

    tensor = _figure_tensor(lab, figure)
    if tensor is None or tensor.dim() != 2:
        return "not a matrix", False
    matrix = tensor.detach().double()
    gram = matrix @ matrix.T
    error = float((gram - torch.eye(gram.shape[0], dtype=gram.dtype)).abs().max())
    return f"max |W Wᵀ - I| = {error:.2g}", (error <= tol) == bool(want)


def _check_std(lab: Lab, figure: str, want: Any, tol: float, before: Any) -> tuple[str, bool]:
    tensor = _figure_tensor(lab, figure)
    if tensor is None:
        return "None", False
    std = float(tensor.detach().double().std())
    return f"std {std:.4g}", math.isclose(std, float(want), abs_tol=tol)


def _check_unchanged(lab: Lab, figure: str, want: Any, tol: float,
                     before: Any) -> tuple[str, bool]:
    after = _figure_tensor(lab, figure)
    if before is None or after is None:
        return "None", False
    same = bool(before.shape == after.shape and (before == after).all())
    return ("unchanged" if same else "changed"), same == bool(want)


def _check_training(lab: Lab, figure: str, want: Any, tol: float,
                    before: Any) -> tuple[str, bool]:
    from tuilab.core.introspect import module_at

    module = module_at(lab.model, "" if figure in ("", "model") else figure)
    return f"training={module.training}", module.training == bool(want)


def _check_dtype(lab: Lab, figure: str, want: Any, tol: float, before: Any) -> tuple[str, bool]:
    tensor = _figure_tensor(lab, figure)
    got = "None" if tensor is None else str(tensor.dtype).replace("torch.", "")
    return got, got == str(want).replace("torch.", "")


def _check_hook_events(lab: Lab, figure: str, want: Any, tol: float,
                       before: Any) -> tuple[str, bool]:
    paths = list(lab.hooks.fired)
    return str(paths), paths == list(want)


# The `before` snapshot of `unchanged` is taken by run_step; the others ignore it.
_CHECKS: dict[str, Callable[[Lab, str, Any, float, Any], tuple[str, bool]]] = {
    "shape": _check_shape,
    "values": _check_values,
    "count": _check_count,
    "keys": _check_keys,
    "same": _check_same,
    "is_none": _check_is_none,
    "zero_or_abs_at_least": _check_sparse,
    "abs_at_most": _check_bound,
    "orthonormal_rows": _check_orthonormal,
    "std_near": _check_std,
    "unchanged": _check_unchanged,
    "training": _check_training,
    "dtype": _check_dtype,
    "hook_events": _check_hook_events,
}
