"""tuilab.core.views against PyTorch itself: every number the run panel shows is recomputed here.

The views turn tensors into lists and strings for the app, so each test computes the same
quantity directly with torch (the oracle) and compares; the model must come back as it went in
(training flags, gradients, hooks).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tuilab.core import views
from tuilab.core.errors import TuilabError
from tuilab.core.lab import Lab
from tuilab.core.runtime import backward_report, forward_report
from tuilab.core.tasks import make_task
from tuilab.core.workspace import load_preset


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10),
    )


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


# --------------------------------------------------------------------------------------------
# tables


def test_forward_rows_match_the_outputs_torch_computes() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    x = torch.randn(4, 5)
    report = forward_report(model, x)
    rows = views.forward_rows(report)
    assert [r[0] for r in rows] == ["(root)", "0", "1", "2"]
    assert [r[1] for r in rows] == ["Sequential", "Linear", "ReLU", "Linear"]
    assert all(len(r) == len(views.FORWARD_COLUMNS) for r in rows)
    with torch.no_grad():
        hidden = torch.relu(model[0](x))
    assert rows[2][2] == "(4, 7)"
    assert rows[2][7] == f"{(hidden == 0).float().mean().item() * 100:.1f}%"
    assert float(rows[2][3]) == pytest.approx(hidden.mean().item(), rel=1e-3)
    assert float(rows[2][6]) == pytest.approx(hidden.max().item(), rel=1e-3)
    header = views.forward_header(report)
    assert header.startswith("TRAIN mode") and "(4, 3)" in header
    model.eval()
    assert views.forward_header(forward_report(model, x)).startswith("EVAL mode")


def test_backward_rows_are_the_gradient_norms() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 1, 0])
    report = backward_report(model, x, y, "cross_entropy")
    rows = dict(views.backward_rows(report))
    assert list(rows) == [k for k, _ in model.named_parameters()]
    for key, p in model.named_parameters():
        assert float(rows[key]) == pytest.approx(p.grad.norm().item(), rel=1e-3)


def test_parameter_rows_match_torch_and_count_tied_weights_once() -> None:
    torch.manual_seed(3)
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    rows = views.parameter_rows(model)
    assert [r[0] for r in rows] == ["0.weight", "0.bias"]
    w = shared.weight.detach().double()
    assert float(rows[0][2]) == pytest.approx(w.mean().item(), rel=1e-3, abs=1e-6)
    assert float(rows[0][3]) == pytest.approx(w.std().item(), rel=1e-3)
    assert rows[0][1] == "(4, 4)" and rows[0][7] == "–"
    sub = views.parameter_rows(nn.Sequential(nn.Sequential(nn.Linear(2, 3))), "0")
    assert [r[0] for r in sub] == ["0.0.weight", "0.0.bias"]
    with pytest.raises(TuilabError):
        views.parameter_rows(model, "nope")


# --------------------------------------------------------------------------------------------
# Grad-CAM


def _oracle_cam(model: nn.Module, image: torch.Tensor, cls: int, layer: nn.Module) -> torch.Tensor:
    """Grad-CAM written out by hand: hook, gradient, channel weights, relu, upsample, scale."""
    acts: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, a, out: acts.append(out))
    model.eval()
    try:
        out = model(image.requires_grad_(True))
        (grad,) = torch.autograd.grad(out[0, cls], acts[0])
    finally:
        handle.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts[0]).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    return cam / cam.max() if cam.max() > 0 else cam


def test_grad_cam_view_matches_a_hand_written_grad_cam() -> None:
    model = _small_cnn()
    model.train()
    data = make_task("digits", input_shape=(1, 8, 8), samples=60)
    before = _flags(model)
    view = views.grad_cam_view(model, data, 3, class_index=7, layer_path="2")
    assert _flags(model) == before  # train mode restored
    assert all(p.grad is None for p in model.parameters())  # gradients left alone
    assert not model[2]._forward_hooks  # nothing left behind
    image = data.x_val[3:4].clone()
    expected = _oracle_cam(model, image, 7, model[2])
    model.train()
    assert torch.allclose(torch.tensor(view.heat), expected, atol=1e-4)
    pixels = data.x_val[3, 0]
    unit = (pixels - pixels.min()) / (pixels.max() - pixels.min())
    assert torch.allclose(torch.tensor(view.image), unit, atol=1e-6)
    model.eval()
    with torch.no_grad():
        logits = model(data.x_val[3:4])
    model.train()
    assert view.predicted == int(logits.argmax())
    assert view.label == int(data.y_val[3]) and view.class_index == 7 and view.index == 3
    assert view.probabilities == pytest.approx(torch.softmax(logits, 1)[0].tolist(), abs=1e-5)


def test_grad_cam_view_defaults_to_the_predicted_class_and_last_conv() -> None:
    model = _small_cnn()
    data = make_task("digits", input_shape=(1, 8, 8), samples=40)
    view = views.grad_cam_view(model, data, 0)
    assert view.layer_path == "2" == views.conv_layer_paths(model)[-1]
    assert view.class_index == view.predicted


def test_grad_cam_view_shrinks_big_images_for_the_terminal() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(2, 10))
    data = make_task("digits", input_shape=(1, 64, 64), samples=20)
    view = views.grad_cam_view(model, data, 1, max_side=16)
    assert len(view.image) == len(view.heat) == 16
    assert len(view.image[0]) == len(view.heat[0]) == 16
    assert all(0.0 <= v <= 1.0 for row in view.heat for v in row)


def test_grad_cam_view_refuses_what_it_cannot_explain() -> None:
    data = make_task("digits", input_shape=(1, 8, 8), samples=20)
    with pytest.raises(TuilabError, match="out of range"):
        views.grad_cam_view(_small_cnn(), data, data.val_size)
    with pytest.raises(TuilabError, match="Conv2d"):
        views.grad_cam_view(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), data, 0)
    with pytest.raises(TuilabError, match="image classification"):
        views.grad_cam_view(_small_cnn(), make_task("moons", samples=20), 0)


def test_grad_cam_task_prefers_digits() -> None:
    lab = Lab(load_preset("lenet"))
    assert views.grad_cam_task(lab) == "digits"


# --------------------------------------------------------------------------------------------
# decision boundary


def test_decision_boundary_is_the_argmax_on_the_grid() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 3))
    model.train()
    data = make_task("blobs", samples=90)
    result = views.decision_boundary(model, data, resolution=12, max_points=20)
    assert model.training
    x0, x1, y0, y1 = result.extent
    assert len(result.grid) == 12 and all(len(r) == 12 for r in result.grid)
    xs, ys = torch.linspace(x0, x1, 12), torch.linspace(y1, y0, 12)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    model.eval()
    with torch.no_grad():
        logits = model(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1))
        val_pred = model(data.x_val).argmax(1)
    expected = logits.argmax(1).reshape(12, 12).tolist()
    assert result.grid == expected
    assert torch.allclose(torch.tensor(result.confidence),
                          torch.softmax(logits, 1).max(1).values.reshape(12, 12), atol=1e-5)
    assert result.accuracy == pytest.approx((val_pred == data.y_val).float().mean().item())
    both = torch.cat([data.x_train, data.x_val])
    assert x0 < both[:, 0].min() and x1 > both[:, 0].max()
    assert y0 < both[:, 1].min() and y1 > both[:, 1].max()
    assert 0 < len(result.points) <= 20
    assert all(0 <= u <= 1 and 0 <= v <= 1 and 0 <= k < 3 for u, v, k in result.points)
    assert result.num_classes == 3


def test_decision_boundary_places_points_where_they_are() -> None:
    model = nn.Sequential(nn.Linear(2, 1))
    data = make_task("xor", samples=50)
    result = views.decision_boundary(model, data, resolution=5, max_points=1000)
    x0, x1, y0, y1 = result.extent
    (u, v, label) = result.points[0]
    x, y = data.x_val[0].tolist()
    assert u == pytest.approx((x - x0) / (x1 - x0))
    assert v == pytest.approx((y1 - y) / (y1 - y0))  # v runs top to bottom
    assert label == int(data.y_val[0])
    with torch.no_grad():
        logit = model(torch.tensor([[x0, y1]]))  # the top-left grid point
    assert result.grid[0][0] == int(torch.sigmoid(logit)[0, 0] > 0.5)


def test_decision_boundary_needs_a_2d_classifier() -> None:
    with pytest.raises(TuilabError, match="2-D"):
        views.decision_boundary(nn.Linear(1, 1), make_task("sine", samples=20))


# --------------------------------------------------------------------------------------------
# hooks and settings


def test_hook_board_registers_on_the_live_module_and_streams_events() -> None:
    lab = Lab(load_preset("mlp"))
    board = views.HookBoard()
    info, update = board.add(lab, "0", "forward", "shapes")
    module = lab.model.get_submodule("0")
    assert len(module._forward_hooks) == 1
    assert update.snapshot.modules["0"].hook_count == 1
    assert "0" in update.diff.modules.changed
    assert info.code in lab.code_log
    lab.forward()
    events = board.drain()
    assert [(e.path, e.kind) for e in events] == [("0", "forward")]
    assert "(2, 20)" in events[0].message and "(2, 256)" in events[0].message
    assert board.drain() == []
    board.add(lab, "", "forward_pre", "stats")
    board.remove(lab, info.id)
    assert not module._forward_hooks
    update = board.remove_all(lab)
    assert update is not None and not lab.model._forward_pre_hooks
    assert board.remove_all(lab) is None
    with pytest.raises(TuilabError):
        board.add(lab, "nope", "forward", "shapes")
    with pytest.raises(TuilabError):
        board.remove(lab, 999)


def test_train_defaults_and_checks_use_the_trainer_rules() -> None:
    lab = Lab(load_preset("lenet"))
    lab.train_settings = {"steps": 7, "lr": 0.5}
    defaults = views.train_defaults(lab)
    assert defaults["task"] == "digits" and defaults["steps"] == 7 and defaults["lr"] == 0.5
    assert defaults["device"] == "cpu" and defaults["dtype"] == "float32"
    assert "digits" in views.task_names() and "spirals" in views.task_names()
    checked = views.check_train_settings({**defaults, "steps": 3})
    assert checked["steps"] == 3
    with pytest.raises(TuilabError) as info:
        views.check_train_settings({**defaults, "lr": -1.0})
    assert info.value.where == "lr"
    with pytest.raises(TuilabError):
        views.check_train_settings({**defaults, "colour": "red"})
    with pytest.raises(TuilabError):
        views.check_train_settings({**defaults, "lr": math.nan})
