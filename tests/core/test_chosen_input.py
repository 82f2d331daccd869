"""The lab's chosen input (fixed until changed, logged, saved) and set values (undo, ties)."""

from __future__ import annotations

import pytest
import torch

from tuilab.core.errors import EditError
from tuilab.core.expressions import ExpressionError
from tuilab.core.lab import Lab
from tuilab.core.workspace import load_spec_arg, load_workspace


def test_forward_after_forward_uses_the_same_input() -> None:
    lab = Lab(load_spec_arg("shared_mlp"))
    lab.forward()
    first = dict(lab.layer_outputs)
    lab.forward()
    assert torch.equal(first[""], lab.layer_outputs[""])
    # The default input is logged once, as runnable PyTorch, and is what the lab used
    # (after the model's own entry; each pass is seeded: dropout draws in train mode).
    assert lab.code_log[1].startswith("g = torch.Generator().manual_seed(0)\nx = torch.rand(2, 4")
    assert lab.code_log[1].endswith("torch.manual_seed(1)\nout = net(x)")
    assert lab.code_log[2] == "torch.manual_seed(2)\nout = net(x)"
    g = torch.Generator().manual_seed(0)
    assert torch.equal(lab.current_input.tensor, torch.rand(2, 4, generator=g))


def test_chosen_input_sets_shape_logs_and_saves(tmp_path) -> None:
    lab = Lab(load_spec_arg("shared_mlp"))
    update = lab.set_input("torch.arange(12.).view(3, 4)")
    assert update.code == "x = torch.arange(12.0).view(3, 4)"
    assert lab.input_shape == (3, 4)
    report, _ = lab.forward()
    assert report.layers[0].output_shape == (3, 1)
    assert torch.equal(lab.layer_outputs[""], lab.model(torch.arange(12.).view(3, 4)).detach())
    path = lab.save(tmp_path / "w.toml")
    assert 'expression = "torch.arange(12.).view(3, 4)"' in path.read_text()
    again = Lab.open(path)
    assert torch.equal(again.current_input.tensor, torch.arange(12.).view(3, 4))
    # An old file (no [input] table) still loads, with the random input.
    assert load_workspace(path).input["seed"] == 0


def test_bad_input_changes_nothing() -> None:
    lab = Lab(load_spec_arg("shared_mlp"))
    before = lab.current_input.tensor
    with pytest.raises(ExpressionError, match="not allowed"):
        lab.set_input("torch.load('x')")
    assert lab.chosen_input is None and torch.equal(lab.current_input.tensor, before)
    assert lab.code_log == [lab.code_log[0]]  # the model's entry alone: nothing logged


def test_set_value_on_a_tied_layer_shows_at_both_paths_and_undoes() -> None:
    lab = Lab(load_spec_arg("shared_mlp"))
    old = float(lab.model[2].weight.detach()[0, 0])
    update, paths = lab.set_value("net[2].weight.data[0, 0] = 100")
    assert paths == ("2.weight", "4.weight")
    assert lab.model[2].weight[0, 0] == 100 and lab.model[4].weight[0, 0] == 100
    assert update.code == "with torch.no_grad():\n    net[2].weight[0, 0] = 100"
    lab.edit("undo")
    assert float(lab.model[4].weight.detach()[0, 0]) == old
    assert "net[2].weight.copy_(" in lab.code_log[-1]


def test_set_value_undo_keeps_order_with_spec_edits() -> None:
    lab = Lab(load_spec_arg("shared_mlp"))
    lab.set_value("0.bias = 1")
    lab.edit("rename", "6", "out")
    lab.edit("undo")  # the rename
    assert "6" in dict(lab.model.named_children())
    assert torch.equal(lab.model[0].bias.detach(), torch.ones(8))
    lab.edit("undo")  # the value
    assert not torch.equal(lab.model[0].bias.detach(), torch.ones(8))


def test_set_value_refuses_what_does_not_fit() -> None:
    lab = Lab(load_spec_arg("shared_mlp"))
    before = lab.model[0].weight.detach().clone()
    for text, message in [("0.weight = torch.ones(3, 3)", "does not fit"),
                          ("0.weight[9, 9] = 1", "out of range"),
                          ("1.weight = 1", "no parameter or buffer"),
                          ("0.weight = exec('x')", "exec")]:
        with pytest.raises(ExpressionError, match=message):
            lab.set_value(text)
    assert torch.equal(lab.model[0].weight.detach(), before)


def test_backward_on_the_chosen_input_matches_torch() -> None:
    lab = Lab(load_spec_arg("shared_mlp"))
    lab.set_training(False)
    lab.set_input("torch.ones(2, 4)")
    twin = lab.model
    report, update = lab.backward()
    assert update.code == "torch.manual_seed(1)\nout = net(x)\nout.backward(torch.ones_like(out))"
    w = {n: p.detach().clone() for n, p in twin.named_parameters()}
    x = torch.ones(2, 4)
    ws = {n: t.clone().requires_grad_(True) for n, t in w.items()}
    h = torch.relu(x @ ws["0.weight"].T + ws["0.bias"])
    h = torch.relu(h @ ws["2.weight"].T + ws["2.bias"])
    h = torch.relu(h @ ws["2.weight"].T + ws["2.bias"])
    out = h @ ws["6.weight"].T + ws["6.bias"]
    out.sum().backward()
    assert torch.allclose(twin[2].weight.grad, ws["2.weight"].grad)
    assert report.loss == pytest.approx(float(out.detach().sum()))


def test_grad_cam_on_the_chosen_input() -> None:
    from tuilab.core.views import grad_cam_input_view

    lab = Lab(load_spec_arg("lenet"))
    lab.set_input("torch.rand(1, 1, 32, 32)")
    view = grad_cam_input_view(lab.model, lab.current_input.tensor)
    assert len(view.heat) == 32 and view.label == -1
    assert 0 <= view.predicted < 10
    with pytest.raises(ValueError, match="one image"):
        grad_cam_input_view(lab.model, torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize("text", [
    "net[2].weight.data[0, 0] = 100",
    "0.bias = 1",
    "0.weight = torch.randn(8, 4)",
    "6.bias[0:1] = torch.tensor([2.5])",
    "4.weight[1] = torch.arange(8.) / 2",
])
def test_set_value_log_replays_in_plain_pytorch(text: str) -> None:
    """The logged lines, run by plain PyTorch on a copy taken before, give the same weights;
    and the undo line puts the copy back to where the lab is after undo."""
    import copy

    lab = Lab(load_spec_arg("shared_mlp"))
    net = copy.deepcopy(lab.model)
    update, _ = lab.set_value(text, seed=3)
    exec(update.code, {"torch": torch, "net": net})
    for (name, a), b in zip(lab.model.state_dict().items(), net.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    undo = lab.edit("undo")
    if "too many" not in undo.code:
        exec(undo.code, {"torch": torch, "net": net})
        for a, b in zip(lab.model.state_dict().values(), net.state_dict().values(),
                        strict=True):
            assert torch.equal(a, b)


def test_redo_of_a_set_value_puts_the_same_values_back_at_every_tied_path() -> None:
    lab = Lab(load_spec_arg("shared_mlp"))
    lab.set_value("2.weight = torch.randn(8, 8)", seed=3)
    after = lab.model[2].weight.detach().clone()
    lab.edit("undo")
    assert not torch.equal(lab.model[4].weight.detach(), after)
    update = lab.edit("redo")
    assert torch.equal(lab.model[2].weight.detach(), after)
    assert torch.equal(lab.model[4].weight.detach(), after)
    assert "randn" in update.code and update.path == "2.weight"
    lab.edit("undo")  # and it can be undone again
    assert not torch.equal(lab.model[2].weight.detach(), after)


def test_redo_replays_set_values_and_spec_edits_in_their_order() -> None:
    lab = Lab(load_spec_arg("shared_mlp"))
    lab.set_value("0.bias = 1")
    lab.edit("rename", "6", "out")
    lab.edit("undo")
    lab.edit("undo")
    assert "6" in dict(lab.model.named_children())
    lab.edit("redo")  # the value first
    assert torch.equal(lab.model[0].bias.detach(), torch.ones(8))
    assert "6" in dict(lab.model.named_children())
    lab.edit("redo")  # then the rename
    assert "out" in dict(lab.model.named_children())
    with pytest.raises(EditError, match="nothing to redo"):
        lab.edit("redo")


def test_a_new_set_value_ends_what_can_be_redone() -> None:
    lab = Lab(load_spec_arg("shared_mlp"))
    lab.edit("rename", "6", "out")
    lab.edit("undo")
    lab.set_value("0.bias = 2")
    with pytest.raises(EditError, match="nothing to redo"):
        lab.edit("redo")
    assert "6" in dict(lab.model.named_children())
