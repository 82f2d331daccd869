"""Plain-data views of a live model for the app's run side: Grad-CAM, decision boundaries, tables.

Why a module of its own: the Textual app may not compute on tensors (``tuilab/app`` never
imports torch), yet its run panel has to draw a Grad-CAM heat map over a digit, the decision
regions of a 2-D classifier, and the tables of a forward or backward report. Everything here
takes the live module (or a report) and returns lists of floats, ints and strings that a widget
can draw as they are, so the widgets stay dumb and these functions can be tested against
PyTorch itself.

Every function that runs the model leaves it as it found it: each module's ``training`` flag is
restored in ``finally``, nothing is registered that outlives the call, and gradients are not
touched (``no_grad`` here, ``torch.autograd.grad`` inside :func:`tuilab.core.runtime.grad_cam`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tuilab.core.errors import TuilabError
from tuilab.core.runtime import (
    HOOK_ACTIONS,
    HOOK_KINDS,
    INIT_SCHEMES,
    BackwardReport,
    ForwardReport,
    HookEvent,
    HookInfo,
    HookKit,
    first_tensor,
    grad_cam,
    model_device,
    model_dtype,
    restore_training,
    training_flags,
)

if TYPE_CHECKING:
    from tuilab.core.lab import Lab, LabUpdate
    from tuilab.core.tasks import TaskData

__all__ = [
    "BACKWARD_COLUMNS",
    "FORWARD_COLUMNS",
    "HOOK_ACTIONS",
    "HOOK_KINDS",
    "INIT_SCHEMES",
    "PARAMETER_COLUMNS",
    "TWO_D_TASKS",
    "DecisionBoundary",
    "GradCamView",
    "HookBoard",
    "HookEvent",
    "HookInfo",
    "backward_rows",
    "check_train_settings",
    "conv_layer_paths",
    "decision_boundary",
    "forward_header",
    "forward_rows",
    "grad_cam_task",
    "grad_cam_view",
    "parameter_rows",
    "task_names",
    "train_defaults",
]

#: The tasks whose inputs are 2-D points, so the model's decision regions can be drawn.
TWO_D_TASKS = ("spirals", "moons", "circles", "xor", "blobs")

FORWARD_COLUMNS = ("layer", "type", "output", "mean", "std", "min", "max", "zeros", "ms")
BACKWARD_COLUMNS = ("parameter", "grad norm")
PARAMETER_COLUMNS = ("parameter", "shape", "mean", "std", "min", "max", "zeros", "grad norm")


# --------------------------------------------------------------------------------------------
# tables


def _num(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def _shape(shape: Sequence[int] | None) -> str:
    return "–" if shape is None else "(" + ", ".join(str(d) for d in shape) + ")"


def forward_header(report: ForwardReport) -> str:
    """One line above the table: the mode matters (BatchNorm, Dropout), so it comes first."""
    mode = "TRAIN mode" if report.training else "EVAL mode"
    return (f"{mode} · output {_shape(report.output_shape)} · "
            f"{report.seconds * 1e3:.2f} ms · {len(report.layers)} module calls")


def forward_rows(report: ForwardReport) -> list[tuple[str, ...]]:
    """The rows of the forward table, one per module call, as strings (``FORWARD_COLUMNS``).

    ``zeros`` is the fraction of exact zeros in the output, the dead-ReLU signal; a row whose
    output holds nan/inf says so in its mean column.
    """
    rows = []
    for layer in report.layers:
        zeros = ("–" if math.isnan(layer.zero_fraction)
                 else f"{layer.zero_fraction * 100:.1f}%")
        mean = _num(layer.mean) if layer.finite else f"{_num(layer.mean)} (non-finite)"
        rows.append((
            layer.path or "(root)", layer.type, _shape(layer.output_shape), mean,
            _num(layer.std), _num(layer.min), _num(layer.max), zeros, f"{layer.time_ms:.3f}",
        ))
    return rows


def backward_rows(report: BackwardReport) -> list[tuple[str, str]]:
    """``(parameter key, gradient norm)`` rows in ``named_parameters`` order."""
    return [(key, _num(norm)) for key, norm in report.grad_norms.items()]


def parameter_rows(model: nn.Module, path: str = "") -> list[tuple[str, ...]]:
    """Value statistics of each parameter under ``path`` (``PARAMETER_COLUMNS``).

    The run panel shows these after an init, a backward or a run, so the user sees the weights
    move (``my_init`` zeroing every |w| < 5, a NaN run's inf). Tied parameters are listed once,
    under their first key, as ``model.parameters()`` counts them.
    """
    from tuilab.core.introspect import grad_norms, module_at, tensor_stats

    try:
        module = module_at(model, path)
    except KeyError as err:
        raise TuilabError(str(err.args[0]), where=path) from None
    norms = grad_norms(module)
    rows = []
    for key, p in module.named_parameters():
        full = f"{path}.{key}" if path else key
        stats = tensor_stats(p)
        grad = _num(norms[key]) if key in norms else "–"
        if stats is None:
            rows.append((full, _shape(tuple(p.shape)), "–", "–", "–", "–", "–", grad))
            continue
        rows.append((full, _shape(tuple(p.shape)), _num(stats.mean), _num(stats.std),
                     _num(stats.min), _num(stats.max), f"{stats.zero_fraction * 100:.1f}%",
                     grad))
    return rows


# --------------------------------------------------------------------------------------------
# Grad-CAM


@dataclass(frozen=True)
class GradCamView:
    """A digit and where the model looked for ``class_index``, both (H, W) with values in [0, 1].

    Rows run top to bottom. ``predicted`` is the model's argmax for the image and
    ``probabilities`` its softmax, so the view can say "label 3, predicted 8 (71%)".
    """

    image: list[list[float]]
    heat: list[list[float]]
    label: int
    predicted: int
    class_index: int
    layer_path: str
    index: int
    probabilities: list[float] = field(default_factory=list)


def conv_layer_paths(model: nn.Module) -> list[str]:
    """Paths of every ``nn.Conv2d`` in the model, in order; Grad-CAM's choice of layers."""
    return [path for path, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def grad_cam_task(lab: Lab) -> str:
    """The task to draw Grad-CAM images from: the model's own if it is ``digits``, else digits."""
    task = lab.train_settings.get("task") or (lab.spec.task if lab.editable else "")
    return task if task == "digits" else "digits"


def _to_unit(t: Tensor) -> Tensor:
    lo, hi = t.min(), t.max()
    return (t - lo) / (hi - lo) if hi > lo else torch.zeros_like(t)


def _fit(t: Tensor, max_side: int) -> Tensor:
    """(H, W) shrunk by area averaging so its longer side is at most ``max_side``."""
    h, w = t.shape
    if max(h, w) <= max_side:
        return t
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.adaptive_avg_pool2d(t[None, None], size)[0, 0]


def grad_cam_view(model: nn.Module, data: TaskData, index: int, class_index: int | None = None,
                  layer_path: str | None = None, *, max_side: int = 32) -> GradCamView:
    """Grad-CAM for validation image ``index`` of ``data`` (an image classification task).

    ``class_index`` None explains the predicted class; ``layer_path`` None takes the last
    Conv2d. Images bigger than ``max_side`` (AlexNet's 224×224) are averaged down for the
    terminal, image and heat alike, so they stay aligned.
    """
    if data.kind != "classification" or len(data.input_shape) != 3:
        raise TuilabError(f"Grad-CAM needs an image classification task; {data.name!r} has "
                          f"inputs of shape {data.input_shape}", where="grad-cam")
    count = data.val_size
    if not 0 <= index < count:
        raise TuilabError(f"image index {index} is out of range: the validation set has "
                          f"{count} images (0 to {count - 1})", where="grad-cam")
    return grad_cam_input_view(model, data.x_val[index : index + 1], class_index, layer_path,
                               max_side=max_side, label=int(data.y_val[index]), index=index)


def grad_cam_input_view(model: nn.Module, image: torch.Tensor, class_index: int | None = None,
                        layer_path: str | None = None, *, max_side: int = 32, label: int = -1,
                        index: int = -1) -> GradCamView:
    """Grad-CAM for one image of shape (1, C, H, W): the lab's chosen input
    (`lab.current_input.tensor`) or a task image; `label` -1 when it has none."""
    if image.dim() != 4 or image.shape[0] != 1:
        raise TuilabError(f"Grad-CAM needs one image of shape (1, C, H, W); got "
                          f"{tuple(image.shape)}", where="grad-cam")
    if not conv_layer_paths(model):
        raise TuilabError("Grad-CAM needs a Conv2d layer and this model has none",
                          where="grad-cam")
    flags = training_flags(model)
    try:
        model.eval()
        with torch.no_grad():
            x = image.to(device=model_device(model), dtype=model_dtype(model))
            out = first_tensor(model(x))
    finally:
        restore_training(flags)
    if out is None or out.dim() != 2 or out.shape[0] != 1:
        raise TuilabError("Grad-CAM needs class scores of shape (1, classes); the model "
                          f"returned {None if out is None else tuple(out.shape)}",
                          where="grad-cam")
    probs = torch.softmax(out.detach().to(torch.float32), dim=1)[0].cpu()
    predicted = int(probs.argmax())
    target = predicted if class_index is None else int(class_index)
    path = layer_path or conv_layer_paths(model)[-1]
    try:
        heat = grad_cam(model, image, target, path)
    except ValueError as err:
        raise TuilabError(str(err), where="grad-cam") from None
    pixels = _to_unit(image[0].to(torch.float32).mean(dim=0))
    return GradCamView(
        image=_fit(pixels, max_side).tolist(),
        heat=_fit(heat.to(torch.float32), max_side).clamp(0, 1).tolist(),
        label=label, predicted=predicted, class_index=target, layer_path=path, index=index,
        probabilities=probs.tolist(),
    )


# --------------------------------------------------------------------------------------------
# decision boundary


@dataclass(frozen=True)
class DecisionBoundary:
    """The predicted class over a grid covering the data, plus the data points on it.

    ``grid[r][c]`` is the class at row ``r`` (top = largest y) and column ``c`` (left =
    smallest x); ``confidence`` is the winning probability there. ``points`` are
    ``(u, v, label)`` with u, v in [0, 1] (u left to right, v top to bottom), so a widget can
    place them at any size. ``extent`` is ``(x_min, x_max, y_min, y_max)`` of the grid.
    """

    grid: list[list[int]]
    confidence: list[list[float]]
    points: list[tuple[float, float, int]]
    extent: tuple[float, float, float, float]
    num_classes: int
    accuracy: float


def _classes(out: Tensor) -> tuple[Tensor, Tensor]:
    """(class, probability) per row of logits: argmax/softmax, or one logit through sigmoid."""
    out = out.detach().to(torch.float32).reshape(out.shape[0], -1)
    if out.shape[1] == 1:
        p = torch.sigmoid(out[:, 0])
        cls = (p > 0.5).to(torch.int64)
        return cls, torch.where(cls == 1, p, 1 - p)
    probs = torch.softmax(out, dim=1)
    conf, cls = probs.max(dim=1)
    return cls, conf


def decision_boundary(model: nn.Module, data: TaskData, resolution: int = 48, *,
                      max_points: int = 300, margin: float = 0.1) -> DecisionBoundary:
    """Evaluate a 2-D classifier on a ``resolution``×``resolution`` grid over its data.

    The grid spans the validation and training points plus ``margin`` of their range on each
    side; ``points`` are up to ``max_points`` validation points (evenly taken), and
    ``accuracy`` is the model's on the whole validation set.
    """
    if data.input_shape != (2,) or data.kind != "classification":
        raise TuilabError(f"the decision boundary needs a 2-D classification task; "
                          f"{data.name!r} has inputs of shape {data.input_shape}",
                          where="decision boundary")
    if not 2 <= resolution <= 512:
        raise TuilabError(f"resolution must be from 2 to 512, got {resolution}",
                          where="decision boundary")
    both = torch.cat([data.x_train, data.x_val]).to(torch.float32)
    lo, hi = both.min(dim=0).values, both.max(dim=0).values
    span = (hi - lo).clamp_min(1e-6)
    lo, hi = lo - margin * span, hi + margin * span
    xs = torch.linspace(float(lo[0]), float(hi[0]), resolution)
    ys = torch.linspace(float(hi[1]), float(lo[1]), resolution)  # top row = largest y
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid_points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    device, dtype = model_device(model), model_dtype(model)

    def scores(x: Tensor) -> Tensor:
        out = first_tensor(model(x.to(device=device, dtype=dtype)))
        if out is None or out.dim() < 1 or out.shape[0] != x.shape[0]:
            raise TuilabError("the model must return one row of class scores per point",
                              where="decision boundary")
        return out.cpu()

    flags = training_flags(model)
    try:
        model.eval()
        with torch.no_grad():
            grid_out = torch.cat([scores(chunk) for chunk in grid_points.split(4096)])
            val_out = scores(data.x_val)
    finally:
        restore_training(flags)
    cls, conf = _classes(grid_out)
    val_cls, _ = _classes(val_out)
    accuracy = float((val_cls == data.y_val).to(torch.float32).mean())
    step = max(1, math.ceil(data.val_size / max_points))
    px, py = data.x_val[::step, 0].tolist(), data.x_val[::step, 1].tolist()
    labels = data.y_val[::step].tolist()
    x0, x1, y0, y1 = float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])
    points = [((x - x0) / (x1 - x0), (y1 - y) / (y1 - y0), int(c))
              for x, y, c in zip(px, py, labels, strict=True)]
    classes = max(data.num_classes or 2, int(cls.max()) + 1)
    return DecisionBoundary(
        grid=cls.reshape(resolution, resolution).tolist(),
        confidence=conf.reshape(resolution, resolution).tolist(),
        points=points, extent=(x0, x1, y0, y1), num_classes=classes, accuracy=accuracy,
    )


# --------------------------------------------------------------------------------------------
# hooks


class HookBoard:
    """The user's hooks on the live model, and the code-log / inspector update for each change.

    It wraps :class:`~tuilab.core.runtime.HookKit` (which registers the real hooks, so the
    module's ``_forward_hooks`` show them) and re-snapshots the lab after each add or remove,
    so the inspector's hook counts follow.
    """

    def __init__(self, maxlen: int = 1000) -> None:
        self.kit = HookKit(maxlen=maxlen)

    def add(self, lab: Lab, path: str, kind: str, action: str) -> tuple[HookInfo, LabUpdate]:
        try:
            hook_id = self.kit.add(lab.model, path, kind, action)
        except ValueError as err:
            raise TuilabError(str(err), where=path or "hooks") from None
        info = next(h for h in self.kit.active() if h.id == hook_id)
        update = lab.refresh(f"{kind} hook ({action}) on {path or 'the model'}", info.code)
        return info, update

    def remove(self, lab: Lab, hook_id: int) -> LabUpdate:
        try:
            code = self.kit.remove(hook_id)
        except KeyError as err:
            raise TuilabError(str(err.args[0]), where="hooks") from None
        return lab.refresh(f"removed hook {hook_id}", code)

    def remove_all(self, lab: Lab) -> LabUpdate | None:
        active = self.kit.active()
        if not active:
            return None
        self.kit.remove_all()
        return lab.refresh("removed every hook",
                           "\n".join(f"h{info.id}.remove()" for info in active))

    def active(self) -> list[HookInfo]:
        return self.kit.active()

    def drain(self) -> list[HookEvent]:
        return self.kit.drain()

    @property
    def dropped(self) -> int:
        return self.kit.dropped


# --------------------------------------------------------------------------------------------
# training settings


def task_names() -> list[str]:
    """The built-in tasks for the settings form, in their documented order."""
    from tuilab.core.tasks import list_tasks

    return [info.name for info in list_tasks()]


def _config_fields() -> dict[str, Any]:
    from tuilab.core.training import TrainConfig

    values: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return values


def train_defaults(lab: Lab) -> dict[str, Any]:
    """The settings form's starting values: TrainConfig's defaults, the model's task and the
    settings that make that task learn, then the preset's or the lab's last settings (so a
    second run starts from the first one's choices)."""
    from tuilab.core.training import task_defaults

    values = _config_fields()
    values["task"] = lab.default_task
    values.update(task_defaults(values["task"], lab.model))  # settings known to make it learn
    values.update({k: v for k, v in lab.train_settings.items() if k in values or k == "task"})
    values["device"], values["dtype"] = lab.device, lab.dtype_name
    values["processes"] = lab.train_settings.get("processes", 1)  # >1: torchrun
    return values


def check_train_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the form's values with the trainer's own checks; TuilabError names the field."""
    from tuilab.core.distributed import check_processes
    from tuilab.core.training import TrainConfig, check_config

    known = _config_fields()
    settings = dict(settings)
    processes = settings.pop("processes", 1)
    unknown = sorted(set(settings) - set(known) - {"task"})
    if unknown:
        raise TuilabError(f"unknown training setting {unknown[0]!r}", where=unknown[0])
    try:
        config = check_config(TrainConfig(**settings))
        check_processes(processes)
    except TuilabError:
        raise
    except ValueError as err:
        where = "processes" if str(err).startswith("processes") else "training settings"
        raise TuilabError(str(err), where=where) from None
    except TypeError as err:
        raise TuilabError(str(err), where="training settings") from None
    checked = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else settings
    return {**checked, "processes": processes}
