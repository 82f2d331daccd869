"""Seed 002's layers in the palette, checked against PyTorch: the module each palette entry
builds has PyTorch's class, PyTorch's defaults, the same parameter and buffer names, and the
same output shape as the module PyTorch's own constructor makes. Also: the recurrent layers'
`batch_first`, SelectOutput's choice of output / h_n / c_n, and a Linear that takes its
`in_features` from the shape before it."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from tuilab.core.build import build
from tuilab.core.catalog import get_block
from tuilab.core.edits import SpecEditor
from tuilab.core.export import export_source
from tuilab.core.lab import Lab
from tuilab.core.spec import ModelSpec, Node
from tuilab.core.workspace import load_preset

# name: (the arguments given, PyTorch's own constructor, an input)
SEED_002 = {
    "MaxPool3d": ({}, lambda: nn.MaxPool3d(2), (2, 3, 4, 6, 6)),
    "AvgPool3d": ({"kernel_size": 3, "stride": 1, "padding": 1},
                  lambda: nn.AvgPool3d(3, stride=1, padding=1), (2, 3, 4, 6, 6)),
    "AdaptiveMaxPool1d": ({"output_size": 3}, lambda: nn.AdaptiveMaxPool1d(3), (2, 3, 10)),
    "AdaptiveMaxPool3d": ({"output_size": (1, 2, 2)},
                          lambda: nn.AdaptiveMaxPool3d((1, 2, 2)), (2, 3, 4, 6, 6)),
    "AdaptiveAvgPool3d": ({}, lambda: nn.AdaptiveAvgPool3d(1), (2, 3, 4, 6, 6)),
    "ZeroPad1d": ({"padding": (1, 2)}, lambda: nn.ZeroPad1d((1, 2)), (2, 3, 5)),
    "ZeroPad3d": ({}, lambda: nn.ZeroPad3d(1), (2, 3, 4, 5, 5)),
    "ReflectionPad1d": ({"padding": 2}, lambda: nn.ReflectionPad1d(2), (2, 3, 5)),
    "ReflectionPad3d": ({}, lambda: nn.ReflectionPad3d(1), (2, 3, 4, 5, 5)),
    "ReplicationPad1d": ({}, lambda: nn.ReplicationPad1d(1), (2, 3, 5)),
    "ReplicationPad3d": ({"padding": (1, 0, 2, 0, 0, 1)},
                         lambda: nn.ReplicationPad3d((1, 0, 2, 0, 0, 1)), (2, 3, 4, 5, 5)),
    "BatchNorm3d": ({"num_features": 3}, lambda: nn.BatchNorm3d(3), (2, 3, 4, 5, 5)),
    "InstanceNorm1d": ({"num_features": 3, "affine": True},
                       lambda: nn.InstanceNorm1d(3, affine=True), (2, 3, 7)),
    "InstanceNorm3d": ({"num_features": 3, "track_running_stats": True},
                       lambda: nn.InstanceNorm3d(3, track_running_stats=True), (2, 3, 4, 5, 5)),
    "Dropout3d": ({"p": 0.25}, lambda: nn.Dropout3d(0.25), (2, 3, 4, 5, 5)),
}


def _names(module: nn.Module) -> tuple[list[str], list[str]]:
    return ([n for n, _ in module.named_parameters()], [n for n, _ in module.named_buffers()])


@pytest.mark.parametrize("name", sorted(SEED_002))
def test_seed_002_layer_matches_pytorch(name: str) -> None:
    args, make_reference, shape = SEED_002[name]
    block = get_block(name)
    ours = block.make(block.validate(args))
    reference = make_reference()
    assert type(ours) is type(reference)
    assert _names(ours) == _names(reference)
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.eval()
    reference.eval()
    x = torch.randn(shape)
    assert ours(x).shape == reference(x).shape
    if name.startswith(("Zero", "Reflection", "Replication", "Adaptive", "MaxPool", "AvgPool")):
        torch.testing.assert_close(ours(x), reference(x))  # no weights: the same values


@pytest.mark.parametrize("name", sorted(SEED_002))
def test_seed_002_layer_defaults_are_pytorchs(name: str) -> None:
    """Every argument PyTorch gives a default has the same default in the palette."""
    block = get_block(name)
    cls = getattr(nn, name)
    torch_defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()
                      if p.default is not inspect.Parameter.empty}
    for arg in block.args:
        if arg.name in torch_defaults:
            assert arg.default == torch_defaults[arg.name], (name, arg.name)
    assert block.call_code(block.defaults()).startswith(f"nn.{name}(")


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_recurrent_batch_first_is_an_argument_with_pytorchs_default(name: str) -> None:
    block = get_block(name)
    assert block.arg("batch_first").default is False
    assert "batch_first" not in block.fixed
    defaults = block.validate({"input_size": 3, "hidden_size": 4})
    assert block.make(defaults).batch_first is False
    assert block.call_code(defaults) == f"nn.{name}(3, 4)"  # PyTorch's default: not written
    first = block.validate({"input_size": 3, "hidden_size": 4, "batch_first": True})
    assert block.make(first).batch_first is True
    assert block.call_code(first) == f"nn.{name}(3, 4, batch_first=True)"


@pytest.mark.parametrize("preset", ["lstm", "gru", "rnn"])
def test_recurrent_presets_stay_batch_first(preset: str) -> None:
    model = build(load_preset(preset))
    layer = next(m for m in model.modules() if isinstance(m, nn.RNNBase))
    assert layer.batch_first is True


@pytest.mark.parametrize(("which", "index"), [("output", 0), ("h_n", 1), ("c_n", 2)])
def test_select_output_chooses_lstm_output_h_n_or_c_n(which: str, index: int) -> None:
    editor = SpecEditor(ModelSpec("m", Node("", "Sequential"), (2, 5, 3)))
    editor.add("LSTM", args={"input_size": 3, "hidden_size": 4, "num_layers": 2,
                             "batch_first": True})
    result = editor.add("SelectOutput", args={"which": which})
    assert result.code == f"net.append(SelectOutput({which!r}))"
    torch.manual_seed(0)
    model = build(editor.spec)
    x = torch.randn(2, 5, 3)
    out, (h, c) = model[0](x)
    torch.testing.assert_close(model(x), (out, h, c)[index])
    namespace: dict[str, object] = {}
    exec(compile(export_source(editor.spec), "<export>", "exec"), namespace)
    exported = namespace["build_model"]()
    exported.load_state_dict(model.state_dict())
    torch.testing.assert_close(exported(x), model(x))


def test_select_output_refuses_an_unknown_choice() -> None:
    with pytest.raises(Exception, match="which"):
        get_block("SelectOutput").validate({"which": "hidden"})


# --- a Linear takes its in_features from the shape before it ----------------------------------
def test_linear_after_flatten_takes_the_flattened_size() -> None:
    editor = SpecEditor(ModelSpec("m", Node("", "Sequential"), (2, 3, 8, 8)))
    editor.add("Conv2d", args={"in_channels": 3, "out_channels": 4})
    editor.add("Flatten")
    lab = Lab(editor.spec)
    lab.summary()
    update = lab.edit("add", "Linear", "", None, args={"out_features": 10})
    linear = lab.spec.root.children[-1]
    assert linear.args["in_features"] == 4 * 6 * 6
    assert update.code.splitlines()[-1] == "net.append(nn.Linear(144, 10))"  # after its seed
    x = torch.randn(2, 3, 8, 8)
    assert lab.model(x).shape == (2, 10)


def test_linear_inserted_first_takes_the_models_input_and_a_given_value_wins() -> None:
    lab = Lab(ModelSpec("m", Node("", "Sequential"), (2, 7)))
    lab.summary()
    lab.edit("add", "Linear", "", None)
    assert lab.spec.root.children[0].args["in_features"] == 7
    lab.summary()
    lab.edit("add", "Linear", "", None, args={"in_features": 5})  # the user's own value
    assert lab.spec.root.children[1].args["in_features"] == 5


def test_linear_first_in_a_nested_chain_takes_what_precedes_the_chain() -> None:
    editor = SpecEditor(ModelSpec("m", Node("", "Sequential"), (2, 4)))
    editor.add("Linear", args={"in_features": 4, "out_features": 12})
    editor.add("Sequential", name="head")
    lab = Lab(editor.spec)
    lab.summary()
    lab.edit("add", "Linear", "head", None)
    assert lab.spec.root.children[1].children[0].args["in_features"] == 12


def test_without_a_summary_of_this_spec_the_palette_default_stays() -> None:
    editor = SpecEditor(ModelSpec("m", Node("", "Sequential"), (2, 9)))
    editor.add("Linear", args={"in_features": 9, "out_features": 33})
    lab = Lab(editor.spec)
    lab.summary()
    lab.edit("add", "ReLU", "", None)  # the summary is now of an older spec
    lab.edit("add", "Linear", "", None)
    assert lab.spec.root.children[-1].args["in_features"] == get_block("Linear").defaults()[
        "in_features"]
    lab.edit("remove", "2")
    lab.summary()
    lab.edit("add", "Linear", "", None)
    assert lab.spec.root.children[-1].args["in_features"] == 33  # the ReLU before it


def test_a_workspace_from_before_batch_first_and_which_keeps_its_meaning(tmp_path) -> None:
    """Files written when recurrent blocks were fixed to batch_first=True and SelectOutput
    took an index still load, and mean what they meant: (batch, time, features), output."""
    from tuilab.core.lab import Lab
    from tuilab.core.workspace import load_workspace

    path = tmp_path / "old.toml"
    path.write_text(
        '[tuilab]\nformat = 1\n[model]\nname = "old"\ninput_shape = [4, 7, 3]\n'
        '[model.root]\nname = ""\nblock = "Sequential"\nchildren = [\n'
        '  { name = "rnn", block = "LSTM", args = { input_size = 3, hidden_size = 5 } },\n'
        '  { name = "pick", block = "SelectOutput", args = { index = 0 } },\n]\n',
        encoding="utf-8")
    lab = Lab.from_workspace(load_workspace(path))
    assert lab.model.rnn.batch_first is True
    assert lab.spec.root.children[1].args["which"] == "output"
    lab.forward()
    assert tuple(lab.layer_outputs[""].shape) == (4, 7, 5)
