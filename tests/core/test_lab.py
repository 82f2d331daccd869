"""The Lab: edits rebuild the live module and report the inspector's diff; files and modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tuilab.core.errors import EditError, FileChangedError, ModeError
from tuilab.core.lab import Lab
from tuilab.core.workspace import load_preset, load_workspace_arg


def lab_for(name: str) -> Lab:
    return Lab.from_workspace(load_workspace_arg(name))


def test_adding_a_linear_reports_its_module_and_parameters() -> None:
    lab = lab_for("mlp")
    update = lab.edit("add", "Linear", "", args={"in_features": 10, "out_features": 3})
    assert update.diff.modules.added == ("3",)
    assert set(update.diff.parameters.added) == {"3.weight", "3.bias"}
    assert update.code == "torch.manual_seed(1)\nnet.append(nn.Linear(10, 3))"
    assert isinstance(lab.model[3], nn.Linear)
    assert lab.code_log[-1] == update.code and lab.dirty


def test_a_refused_edit_changes_neither_spec_nor_module() -> None:
    lab = lab_for("mlp")
    spec, model, snap = lab.spec, lab.model, lab.snapshot
    with pytest.raises(EditError, match="in_features"):
        lab.edit("set_arg", "0", "in_features", -1)
    assert lab.spec is spec and lab.model is model and lab.snapshot is snap


def test_train_mode_forward_moves_batchnorm_buffers_eval_does_not() -> None:
    lab = lab_for("resnet")
    _, update = lab.forward()
    assert "bn.running_mean" in update.diff.buffers.changed
    assert "bn.num_batches_tracked" in update.diff.buffers.changed
    lab.set_training(False)
    _, update = lab.forward()
    assert update.diff.buffers.changed == ()


def test_eval_flips_every_training_flag() -> None:
    lab = lab_for("lenet")
    update = lab.set_training(False)
    assert set(update.diff.modules.changed) == set(lab.snapshot.modules)
    assert not any(row.training for row in lab.snapshot.modules.values())
    assert update.code == "net.eval()"


@pytest.mark.parametrize("name", ["shared_mlp", "transformer", "resnet"])
def test_train_eval_snapshot_is_what_a_full_snapshot_reads(name: str) -> None:
    """set_training re-reads only the flags: the inspector must still see exactly the model."""
    from tuilab.core.introspect import snapshot

    lab = lab_for(name)
    for training in (False, True, False):
        lab.set_training(training)
        assert lab.snapshot == snapshot(lab.model)
    lab.forward()  # a full snapshot after the fast ones: still consistent
    assert lab.snapshot == snapshot(lab.model)


def test_dtype_change_shows_in_the_parameter_rows_and_absent_device_is_refused() -> None:
    lab = lab_for("mlp")
    lab.set_dtype("float64")
    assert {row.dtype for row in lab.snapshot.parameters.values()} == {"float64"}
    before = {k: v.clone() for k, v in lab.model.state_dict().items()}
    if not torch.cuda.is_available():
        with pytest.raises(ModeError):
            lab.set_device("cuda")
    after = lab.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_gpt2_xl_lives_on_meta_and_refuses_to_run() -> None:
    lab = Lab(load_preset("gpt2_xl"))
    assert lab.on_meta and lab.snapshot.total_params > 1_500_000_000
    with pytest.raises(ModeError, match="GiB"):
        lab.forward()
    update = lab.edit("set_arg", "ln_f", "eps", 1e-6)
    assert update.diff.modules.changed == ("ln_f",)


def test_save_open_round_trip_keeps_modes_and_runs(tmp_path) -> None:
    lab = lab_for("shared_mlp")
    lab.set_training(False)
    path = lab.save(tmp_path / "work.toml")
    again = Lab.open(path)
    assert again.spec == lab.spec or [c.name for c in again.spec.root.children] == [
        c.name for c in lab.spec.root.children]
    assert again.training is False and again.model[2] is again.model[4]
    assert not again.dirty


def test_a_file_changed_on_disk_is_not_overwritten_without_asking(tmp_path) -> None:
    lab = lab_for("mlp")
    path = lab.save(tmp_path / "work.toml")
    other = Lab.open(path)
    other.edit("add", "ReLU", "")
    other.save()
    lab.edit("add", "Tanh", "")
    with pytest.raises(FileChangedError):
        lab.save()
    assert "ReLU" in path.read_text() and "Tanh" not in path.read_text()
    lab.save(overwrite=True)
    assert "Tanh" in path.read_text()


def test_user_modules_are_inspected_but_not_edited() -> None:
    lab = Lab(module=nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), input_shape=(8, 3),
              name="mine")
    assert lab.snapshot.total_params == 3 * 4 + 4 + 8
    with pytest.raises(EditError, match="palette edits are off"):
        lab.edit("add", "ReLU", "")
    _, update = lab.forward()
    assert "1.running_mean" in update.diff.buffers.changed
