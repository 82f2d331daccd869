"""The spec, its edits and the builder, with PyTorch as the oracle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tuilab.core.build import Builder, build
from tuilab.core.catalog import CATALOG, FAMILIES, get_block
from tuilab.core.edits import SpecEditor, check_input_shape
from tuilab.core.errors import ArgumentError, EditError
from tuilab.core.spec import ModelSpec, Node


def empty(shape=(2, 4)) -> SpecEditor:
    return SpecEditor(ModelSpec("test", Node("", "Sequential"), shape))


def seed_003_editor() -> SpecEditor:
    editor = empty()
    editor.add("Linear", args={"in_features": 4, "out_features": 8})
    editor.add("ReLU")
    editor.add("Linear", args={"in_features": 8, "out_features": 8})
    editor.add("ReLU")
    editor.share("2", "")
    editor.add("ReLU")
    editor.add("Linear", args={"in_features": 8, "out_features": 1})
    return editor


# --- catalog ------------------------------------------------------------------------------
def test_catalog_covers_the_seed_families() -> None:
    assert len(CATALOG) >= 45
    required = [
        "Linear", "Bilinear", "Identity", "LazyLinear", "Conv1d", "Conv2d", "Conv3d",
        "ConvTranspose2d", "DepthwiseSeparableConv2d", "MaxPool1d", "MaxPool2d", "AvgPool1d",
        "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "ZeroPad2d", "ReflectionPad2d",
        "ReplicationPad2d", "BatchNorm1d", "BatchNorm2d", "InstanceNorm2d", "LayerNorm",
        "GroupNorm", "Dropout", "Dropout2d", "AlphaDropout", "ReLU", "LeakyReLU", "PReLU",
        "ELU", "SELU", "GELU", "Sigmoid", "Tanh", "Softmax", "RNN", "LSTM", "GRU",
        "SelectOutput", "Embedding", "TransformerEncoderLayer", "TransformerEncoder",
        "TransformerDecoderLayer", "Flatten", "Unflatten", "MLP", "MySequential",
        "FixedHiddenMLP", "MyLayer", "MyListDense", "MyDictDense", "Conv2D", "Pool2D",
        "Residual", "Inception", "TCNBlock", "TransformerEncoderBlock", "Sequential",
        "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
    ]
    missing = [name for name in required if name not in CATALOG]
    assert missing == []
    assert {block.family for block in CATALOG.values()} <= set(FAMILIES)
    assert all(block.description for block in CATALOG.values())


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_block_builds_with_its_defaults_on_meta(name: str) -> None:
    block = get_block(name)
    with torch.device("meta"):
        module = block.make(block.validate({}))
    assert isinstance(module, nn.Module)
    assert type(module).__name__ == block.class_name


def test_argument_checks_name_argument_value_and_rule() -> None:
    linear = get_block("Linear")
    with pytest.raises(ArgumentError) as info:
        linear.validate({"in_features": -3})
    text = str(info.value)
    assert "in_features" in text and "-3" in text and "≥ 1" in text
    with pytest.raises(ArgumentError, match="an integer"):
        linear.validate({"out_features": "ten"})
    with pytest.raises(ArgumentError, match="no argument 'kernel'"):
        linear.validate({"kernel": 3})
    assert linear.validate({"in_features": "7"})["in_features"] == 7
    conv = get_block("Conv2d")
    assert conv.validate({"kernel_size": "5, 3"})["kernel_size"] == (5, 3)
    with pytest.raises(ArgumentError, match="divisible by groups"):
        conv.validate({"in_channels": 3, "out_channels": 4, "groups": 2})
    with pytest.raises(ArgumentError, match=r"unknown block 'Linaer'.*Linear"):
        get_block("Linaer")


def test_call_code_reads_like_pytorch() -> None:
    assert get_block("Linear").call_code({"in_features": 84, "out_features": 10,
                                          "bias": True}) == "nn.Linear(84, 10)"
    code = get_block("Conv2d").call_code(get_block("Conv2d").validate(
        {"in_channels": 1, "out_channels": 6, "kernel_size": 5, "padding": 2}))
    assert code == "nn.Conv2d(1, 6, 5, padding=2)"
    assert eval(code, {"nn": nn}).padding == (2, 2)


# --- edits and building -------------------------------------------------------------------
def test_seed_003_tied_net_counts_121_and_changes_together() -> None:
    net = build(seed_003_editor().spec)
    assert net[2] is net[4]
    assert sum(p.numel() for p in net.parameters()) == 121
    with torch.no_grad():
        net[2].weight[0, 0] = 42.0
    assert net[4].weight[0, 0].item() == 42.0
    assert net(torch.randn(2, 4)).shape == (2, 1)


def test_built_module_keys_are_the_spec_names() -> None:
    editor = empty()
    editor.add("Linear", name="fc1", args={"in_features": 4, "out_features": 8})
    editor.add("ReLU", name="act")
    net = build(editor.spec)
    assert list(net._modules) == ["fc1", "act"]


def test_each_edit_echoes_the_pytorch_line() -> None:
    editor = empty()
    assert editor.add("Linear", args={"in_features": 4, "out_features": 8}).code == (
        "net.append(nn.Linear(4, 8))")
    named = empty()
    result = named.add("Linear", name="fc3", args={"in_features": 84, "out_features": 10})
    assert result.code == "net.add_module('fc3', nn.Linear(84, 10))"
    assert editor.add("ReLU", index=0).code == "net.insert(0, nn.ReLU())"


def test_insert_renumbers_positional_children_like_sequential_insert() -> None:
    editor = seed_003_editor()
    editor.add("Dropout", index=1)
    net = build(editor.spec)
    assert list(net._modules) == [str(i) for i in range(8)]
    assert isinstance(net[1], nn.Dropout)
    assert net[3] is net[5]  # the tie followed the renumbering


def test_builder_reuses_unchanged_modules_and_keeps_their_weights() -> None:
    editor = seed_003_editor()
    builder = Builder()
    first = builder.build(editor.spec)
    weight = first[0].weight
    editor.add("Dropout", index=1)
    second = builder.build(editor.spec)
    assert second is first  # the container kept its identity
    assert second[0].weight is weight
    editor.set_arg("0", "out_features", 8)  # same value: same module
    assert builder.build(editor.spec)[0].weight is weight
    editor.undo()
    editor.undo()
    assert builder.build(editor.spec)[0].weight is weight


def test_a_refused_edit_leaves_the_spec_exactly_as_it_was() -> None:
    editor = seed_003_editor()
    before = editor.spec
    with pytest.raises(EditError) as info:
        editor.set_arg("0", "out_features", 0)
    assert "out_features" in str(info.value) and "0" in str(info.value)
    assert editor.spec is before
    with pytest.raises(EditError, match="shares this block"):
        editor.remove("2")
    with pytest.raises(EditError, match="not a container"):
        editor.add("ReLU", parent="0")
    with pytest.raises(EditError, match="already a block named"):
        editor.rename("1", "3")
    with pytest.raises(EditError, match=r"refuses these arguments|divisible"):
        editor.add("GroupNorm", args={"num_groups": 4, "num_channels": 6})
    assert editor.spec is before


def test_move_indent_outdent_duplicate_rename() -> None:
    editor = empty()
    editor.add("Linear", name="fc1", args={"in_features": 4, "out_features": 8})
    editor.add("Sequential", name="block")
    editor.add("ReLU", name="act")
    editor.indent("act")
    assert [c.name for c in editor.spec.root.children] == ["fc1", "block"]
    assert build(editor.spec).block.act.__class__ is nn.ReLU
    editor.outdent("block.act")
    assert [c.name for c in editor.spec.root.children] == ["fc1", "block", "act"]
    editor.move("act", -1)
    assert [c.name for c in editor.spec.root.children] == ["fc1", "act", "block"]
    editor.duplicate("fc1")
    net = build(editor.spec)
    assert net.fc1 is not net.fc1_2 and net.fc1_2.out_features == 8
    editor.rename("fc1", "hidden")
    assert next(iter(build(editor.spec)._modules)) == "hidden"


def test_undo_redo_restore_exact_specs() -> None:
    editor = empty()
    specs = [editor.spec]
    editor.add("Linear", args={"in_features": 4, "out_features": 8})
    specs.append(editor.spec)
    editor.add("ReLU")
    specs.append(editor.spec)
    editor.undo()
    assert editor.spec == specs[1]
    editor.undo()
    assert editor.spec == specs[0]
    editor.redo()
    assert editor.spec == specs[1]
    with pytest.raises(EditError, match="nothing to undo"):
        editor.undo()
        editor.undo()


def test_freeze_sets_requires_grad() -> None:
    editor = seed_003_editor()
    editor.set_frozen("0", True)
    net = build(editor.spec)
    assert not net[0].weight.requires_grad and net[6].weight.requires_grad
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert trainable == 121 - 40


def test_mysequential_fills_modules_by_position() -> None:
    editor = SpecEditor(ModelSpec("s", Node("", "MySequential"), (2, 4)))
    editor.add("Linear", args={"in_features": 4, "out_features": 8})
    editor.add("ReLU")
    editor.add("Linear", args={"in_features": 8, "out_features": 10})
    net = build(editor.spec)
    assert list(net._modules) == ["0", "1", "2"]
    assert net(torch.randn(2, 4)).shape == (2, 10)
    with pytest.raises(EditError, match="0, 1, 2"):
        editor.rename("1", "act")


def test_input_shape_checks() -> None:
    assert check_input_shape("1, 1, 32, 32") == (1, 1, 32, 32)
    for bad in ("", "a,b", "0,3", (1, -2), [1.5]):
        with pytest.raises(EditError):
            check_input_shape(bad)


def test_indenting_a_positional_node_into_an_empty_container_renumbers_it() -> None:
    editor = empty()
    editor.add("Sequential")
    editor.add("ReLU")
    editor.indent("1")
    assert [c.name for c in editor.spec.root.children[0].children] == ["0"]
    assert isinstance(build(editor.spec)[0][0], nn.ReLU)
