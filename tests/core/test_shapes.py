"""tuilab.core.shapes, with PyTorch as the oracle.

Output shapes are checked against a real CPU forward with plain hooks, parameter counts
against ``parameters()``, MACs against hand formulas, and every hint against the mistake it
is for. The caller's module must come back bit-identical, with no hook left behind.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
import torch
from torch import nn

from tuilab.core.build import build
from tuilab.core.edits import SpecEditor
from tuilab.core.shapes import (
    LayerShape,
    Summary,
    make_input,
    summarize_module,
    summarize_spec,
)
from tuilab.core.spec import ModelSpec, Node
from tuilab.core.workspace import load_preset, preset_names


def editor(shape: tuple[int, ...], name: str = "net") -> SpecEditor:
    return SpecEditor(ModelSpec(name, Node("", "Sequential"), shape))


def rows(summary: Summary) -> dict[str, LayerShape]:
    return {layer.path: layer for layer in summary.layers}


def real_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """The oracle: first output shape of every module in a real CPU forward."""
    seen: dict[int, tuple[int, ...]] = {}
    handles = []

    def hook(module: nn.Module, _args: Any, output: Any) -> None:
        while isinstance(output, (tuple, list)):
            output = output[0]
        seen.setdefault(id(module), tuple(output.shape))

    for module in model.modules():
        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return {path: seen[id(m)] for path, m in model.named_modules() if id(m) in seen}


def lenet_editor(*, flatten: bool = True) -> SpecEditor:
    ed = editor((1, 1, 32, 32), "lenet")
    ed.add("Conv2d", "", name="conv1", args={"in_channels": 1, "out_channels": 6,
                                             "kernel_size": 5})
    ed.add("ReLU", "", name="relu1")
    ed.add("MaxPool2d", "", name="pool1", args={"kernel_size": 2})
    ed.add("Conv2d", "", name="conv2", args={"in_channels": 6, "out_channels": 16,
                                             "kernel_size": 5})
    ed.add("ReLU", "", name="relu2")
    ed.add("MaxPool2d", "", name="pool2", args={"kernel_size": 2})
    if flatten:
        ed.add("Flatten", "", name="flatten")
    ed.add("Linear", "", name="fc1", args={"in_features": 400, "out_features": 120})
    ed.add("ReLU", "", name="relu3")
    ed.add("Linear", "", name="fc2", args={"in_features": 120, "out_features": 84})
    ed.add("ReLU", "", name="relu4")
    ed.add("Linear", "", name="fc3", args={"in_features": 84, "out_features": 10})
    return ed


# --- the seed examples ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"kernel_size": 3, "padding": 1}, (1, 1, 8, 8)),
        ({"kernel_size": (5, 3), "padding": (2, 1)}, (1, 1, 8, 8)),
        ({"kernel_size": (3, 5), "padding": (0, 1), "stride": (3, 4)}, (1, 1, 2, 2)),
    ],
)
def test_seed_conv_output_sizes(args: dict[str, Any], expected: tuple[int, ...]) -> None:
    ed = editor((1, 1, 8, 8))
    ed.add("Conv2d", "", args={"in_channels": 1, "out_channels": 1, **args})
    summary = summarize_spec(ed.spec)
    assert summary.error is None
    assert summary.output_shape == expected
    real = build(ed.spec)
    assert tuple(real(torch.rand(1, 1, 8, 8)).shape) == expected


def test_lenet_params_and_output() -> None:
    spec = lenet_editor().spec
    state = torch.get_rng_state()
    summary = summarize_spec(spec)
    assert torch.equal(state, torch.get_rng_state())  # meta draws no random numbers
    real = build(spec)
    assert summary.error is None and summary.method == "meta"
    assert summary.total_params == 61_706 == sum(p.numel() for p in real.parameters())
    assert summary.trainable_params == 61_706
    assert summary.param_bytes == 61_706 * 4
    assert summary.output_shape == (1, 10)
    assert [layer.path for layer in summary.layers] == [p for p, _ in real.named_modules()]
    assert rows(summary)["conv1"].params == 6 * 1 * 5 * 5 + 6
    assert rows(summary)["flatten"].output_shape == (1, 400)
    assert rows(summary)["fc1"].depth == 1 and rows(summary)[""].depth == 0


def test_every_preset_matches_a_real_forward() -> None:
    for name in preset_names():
        spec = load_preset(name)
        summary = summarize_spec(spec)
        assert summary.error is None, (name, summary.error)
        if name == "gpt2_xl":
            meta = build(spec, device="meta")
            assert summary.total_params == sum(p.numel() for p in meta.parameters())
            assert summary.output_shape == (1, 1024, 50257)
            continue
        torch.manual_seed(0)
        model = build(spec)
        x = make_input(spec.input_shape, takes_tokens=spec.takes_tokens,
                       vocab_size=spec.vocab_size)
        oracle = real_shapes(model, x)
        assert summary.total_params == sum(p.numel() for p in model.parameters()), name
        assert summary.trainable_params == sum(
            p.numel() for p in model.parameters() if p.requires_grad)
        assert summary.output_shape == oracle[""], name
        got = {path: layer.output_shape for path, layer in rows(summary).items()
               if layer.output_shape is not None}
        for path, shape in oracle.items():
            assert got.get(path) == shape, (name, path, got.get(path), shape)


# --- tied layers ----------------------------------------------------------------------------
def test_tied_net_counts_once_and_marks_both_rows() -> None:
    summary = summarize_spec(load_preset("shared_mlp"))
    table = rows(summary)
    assert summary.total_params == 121
    assert table["2"].shared_with == "4" and table["4"].shared_with == "2"
    assert table["2"].calls == 2 and table["4"].calls == 0
    assert table["2"].params == table["4"].params == 72
    assert sum(layer.params for layer in summary.layers[1:]) == 121 + 72  # rows repeat it
    assert table["2"].macs == table["4"].macs == 2 * 8 * 8  # one call each
    assert summary.total_macs == 2 * (4 * 8 + 8 * 8 + 8 * 8 + 8 * 1)


def test_tied_layer_in_two_containers_gets_each_call_in_its_own_place() -> None:
    ed = editor((3, 4))
    ed.add("Sequential", "", name="a")
    ed.add("Linear", "a", name="shared", args={"in_features": 4, "out_features": 4})
    ed.add("Sequential", "", name="b")
    ed.add("ReLU", "b", name="act")
    ed.share("a.shared", "b", name="again")
    ed.add("Linear", "", name="head", args={"in_features": 4, "out_features": 2})
    table = rows(summarize_spec(ed.spec))
    assert table["a.shared"].output_shape == table["b.again"].output_shape == (3, 4)
    assert table["a.shared"].calls == 2 and table["b.again"].calls == 0
    assert table["a"].macs == table["b"].macs == 3 * 4 * 4


# --- failures: partial table, message, hint -----------------------------------------------
def test_shape_error_keeps_the_partial_table() -> None:
    summary = summarize_spec(lenet_editor(flatten=False).spec)
    table = rows(summary)
    assert summary.error is not None
    assert summary.error.path == "fc1"
    assert summary.error.message  # torch's own text
    assert "Flatten" in summary.error.hint and "400" in summary.error.hint
    assert table["pool2"].output_shape == (1, 16, 5, 5)
    assert table["conv1"].output_shape == (1, 6, 28, 28)
    assert table["fc1"].output_shape is None and table["fc3"].output_shape is None
    assert summary.output_shape is None
    assert summary.total_params == 61_706  # the parameters are all there
    data = json.loads(json.dumps(summary.to_json()))
    assert data["error"]["path"] == "fc1"


def _error_of(*blocks: tuple[str, dict[str, Any]], shape: tuple[int, ...]) -> tuple[str, str]:
    ed = editor(shape)
    for block, args in blocks:
        ed.add(block, "", args=args)
    summary = summarize_spec(ed.spec)
    assert summary.error is not None, blocks
    return summary.error.path, summary.error.hint or ""


def test_hint_linear_in_features() -> None:
    path, hint = _error_of(("Linear", {"in_features": 30, "out_features": 5}), shape=(2, 20))
    assert path == "0" and "in_features should be 20" in hint
    assert "Flatten" not in hint


def test_hint_linear_after_conv_suggests_flatten() -> None:
    path, hint = _error_of(
        ("Conv2d", {"in_channels": 1, "out_channels": 4, "kernel_size": 3}),
        ("Linear", {"in_features": 144, "out_features": 5}), shape=(1, 1, 8, 8))
    assert path == "1"
    assert "insert Flatten before it" in hint and "144" in hint and "matches" in hint


def test_hint_batchnorm1d_after_conv() -> None:
    path, hint = _error_of(
        ("Conv2d", {"in_channels": 1, "out_channels": 4, "kernel_size": 3}),
        ("BatchNorm1d", {"num_features": 4}), shape=(2, 1, 8, 8))
    assert path == "1" and "insert Flatten before it" in hint


def test_hint_conv_in_channels() -> None:
    path, hint = _error_of(("Conv2d", {"in_channels": 1, "out_channels": 4}),
                           shape=(1, 3, 8, 8))
    assert path == "0" and "in_channels should be 3" in hint


def test_hint_batchnorm_num_features() -> None:
    path, hint = _error_of(("BatchNorm2d", {"num_features": 6}), shape=(2, 5, 4, 4))
    assert path == "0" and "num_features should be 5" in hint


def test_hint_kernel_larger_than_input() -> None:
    _, hint = _error_of(("Conv2d", {"in_channels": 1, "out_channels": 2, "kernel_size": 5}),
                        shape=(1, 1, 3, 4))
    assert "3×4" in hint and "5×5" in hint
    _, hint = _error_of(("MaxPool2d", {"kernel_size": 4}), shape=(1, 1, 2, 2))
    assert "2×2" in hint and "4×4" in hint


def test_hint_layernorm() -> None:
    _, hint = _error_of(("LayerNorm", {"normalized_shape": (8,)}), shape=(2, 5, 4))
    assert "normalized_shape should be (4,)" in hint


def test_hint_groupnorm_rnn_attention_embedding_and_tuples() -> None:
    _, hint = _error_of(("GroupNorm", {"num_groups": 2, "num_channels": 6}),
                        shape=(2, 4, 3, 3))
    assert "num_channels should be 4" in hint
    _, hint = _error_of(("LSTM", {"input_size": 3, "hidden_size": 5}), shape=(2, 4, 7))
    assert "input_size should be 7" in hint
    _, hint = _error_of(("MultiheadAttention", {"embed_dim": 8, "num_heads": 2}),
                        shape=(2, 4, 6))
    assert "should be 6" in hint
    path, hint = _error_of(("LSTM", {"input_size": 3, "hidden_size": 5}),
                           ("Linear", {"in_features": 5, "out_features": 1}), shape=(2, 4, 3))
    assert path == "1" and "SelectOutput" in hint
    _, hint = _error_of(("Linear", {"in_features": 4, "out_features": 4}),
                        ("Embedding", {"num_embeddings": 10, "embedding_dim": 4}),
                        shape=(2, 4))
    assert "token ids" in hint


def test_failure_inside_a_composite_block_names_the_inner_layer() -> None:
    ed = editor((1, 3, 8, 8))
    ed.add("Residual", "", args={"in_channels": 3, "out_channels": 3})
    ed.add("Conv2d", "", args={"in_channels": 3, "out_channels": 2, "kernel_size": 1})
    ed.add("Residual", "", args={"in_channels": 3, "out_channels": 3})
    summary = summarize_spec(ed.spec)
    assert summary.error is not None
    assert summary.error.path == "2.conv1" and "in_channels should be 2" in summary.error.hint
    assert rows(summary)["1"].output_shape == (1, 2, 8, 8)


def test_a_block_that_does_not_build_is_an_error_not_a_crash() -> None:
    bad = Node("0", "Residual", args={"in_channels": 3, "out_channels": 4,
                                      "use_1x1conv": False, "stride": 1})
    spec = ModelSpec("bad", Node("", "Sequential", children=(bad,)), (1, 3, 8, 8))
    summary = summarize_spec(spec)
    assert summary.error is not None and "does not build" in summary.error.message
    assert summary.layers == ()


# --- meta limits: the CPU fallback ----------------------------------------------------------
def test_data_dependent_forward_falls_back_to_cpu_without_moving_the_rng() -> None:
    state = torch.get_rng_state()
    summary = summarize_spec(load_preset("fixed_hidden_mlp"))
    assert torch.equal(state, torch.get_rng_state())
    assert summary.error is None
    assert summary.method == "cpu"
    assert summary.output_shape == ()
    linear = rows(summary)["linear"]
    assert linear.calls == 2
    assert linear.macs == 2 * 2 * 20 * 20  # two calls on a (2, 20) batch
    assert summary.total_params == 420


def test_too_big_for_a_cpu_fallback_keeps_the_meta_error(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    import tuilab.core.shapes as shapes

    monkeypatch.setattr(shapes, "CPU_FALLBACK_BYTES", 100)
    summary = summarize_spec(load_preset("fixed_hidden_mlp"))
    assert summary.error is not None and summary.method == "meta"
    assert "meta" in summary.error.message and "real values" in summary.error.hint


# --- summarize_module: the caller's module is untouched ------------------------------------
def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def _assert_untouched(model: nn.Module, before: dict[str, torch.Tensor],
                      modes: list[bool]) -> None:
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert after[key].device == value.device
        assert torch.equal(after[key], value), key
    assert [m.training for m in model.modules()] == modes
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_summarize_module_leaves_the_module_bit_identical() -> None:
    model = _bn_net()
    model.train()
    model[3].eval()  # mixed modes must come back as they were
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    summary = summarize_module(model, (5, 4), name="bn")
    assert summary.error is None and summary.method == "meta"
    assert summary.output_shape == (5, 2)
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    _assert_untouched(model, before, modes)


def test_summarize_module_cpu_fallback_leaves_the_module_bit_identical() -> None:
    from tuilab.core.blocks.seed import FixedHiddenMLP

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(20)
            self.mlp = FixedHiddenMLP()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mlp(self.bn(x))

    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    summary = summarize_module(model, (3, 20))
    assert summary.method == "cpu" and summary.error is None
    assert summary.name == "Net"
    _assert_untouched(model, before, modes)


def test_summarize_module_that_cannot_be_copied_runs_in_eval_and_restores() -> None:
    class Locked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()  # deepcopy refuses locks
            self.net = _bn_net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    model = Locked()
    with pytest.raises(TypeError):
        copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    summary = summarize_module(model, (5, 4))
    assert summary.error is None and summary.output_shape == (5, 2)
    _assert_untouched(model, before, modes)


def test_lazy_layers_report_inferred_sizes_and_stay_lazy_in_the_caller() -> None:
    model = nn.Sequential(nn.LazyLinear(10), nn.ReLU(), nn.Linear(10, 3))
    summary = summarize_module(model, (2, 7))
    assert summary.error is None
    assert rows(summary)["0"].params == 7 * 10 + 10
    assert summary.total_params == 7 * 10 + 10 + 33
    assert rows(summary)["0"].output_shape == (2, 10)
    assert rows(summary)["0"].macs == 2 * 7 * 10
    assert model[0].has_uninitialized_params()


def test_lazy_block_in_a_spec_reports_inferred_sizes() -> None:
    ed = editor((2, 7))
    ed.add("LazyLinear", "", args={"out_features": 10})
    spec_summary = summarize_spec(ed.spec)
    assert spec_summary.total_params == 80 and spec_summary.output_shape == (2, 10)


def test_meta_module_is_summarized_and_stays_on_meta() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(4))
    summary = summarize_module(model, (2, 3, 10, 10))
    assert summary.output_shape == (2, 4)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert model[2].has_uninitialized_params()


def test_tied_weights_between_modules_count_once() -> None:
    emb = nn.Embedding(50, 16)
    head = nn.Linear(16, 50, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head)
    summary = summarize_module(model, (2, 5), takes_tokens=True)
    assert summary.total_params == 50 * 16
    assert rows(summary)["0"].params == rows(summary)["1"].params == 50 * 16
    assert summary.output_shape == (2, 5, 50)


# --- transformers in eval: no fast path, every row ------------------------------------------
def test_transformer_encoder_rows_in_eval_and_fastpath_restored() -> None:
    seen: list[bool] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.backends.mha.get_fastpath_enabled())
            return x

    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    model = nn.Sequential(Probe(), nn.TransformerEncoder(layer, 2, enable_nested_tensor=False))
    model.eval()
    assert torch.backends.mha.get_fastpath_enabled()
    summary = summarize_module(model, (2, 5, 16))
    assert seen == [False]
    assert torch.backends.mha.get_fastpath_enabled()
    table = rows(summary)
    for path in ("1.layers.0.self_attn", "1.layers.0.linear1", "1.layers.1.linear2",
                 "1.layers.1.norm2"):
        assert table[path].output_shape is not None, path
    assert table["1.layers.0.linear1"].output_shape == (2, 5, 32)
    assert not model.training


# --- MACs against hand formulas ---------------------------------------------------------------
def _macs(model: nn.Module, shape: tuple[int, ...], path: str = "") -> int:
    return rows(summarize_module(model, shape))[path].macs


def test_macs_linear_conv_and_transposed() -> None:
    assert _macs(nn.Linear(20, 256), (2, 20)) == 2 * 20 * 256
    assert _macs(nn.Linear(8, 3), (2, 5, 8)) == 10 * 8 * 3
    assert _macs(nn.Conv2d(3, 8, 3, padding=1), (2, 3, 10, 10)) == 2 * 8 * 10 * 10 * 3 * 9
    assert _macs(nn.Conv2d(8, 8, 3, groups=4), (1, 8, 6, 6)) == 8 * 4 * 4 * 2 * 9
    assert _macs(nn.Conv1d(2, 4, 5), (1, 2, 9)) == 4 * 5 * 2 * 5
    assert _macs(nn.ConvTranspose2d(4, 2, 3, stride=2), (1, 4, 5, 5)) == 4 * 5 * 5 * 2 * 9


def test_macs_bilinear_via_spec_and_embedding_zero() -> None:
    ed = editor((2, 5))
    ed.add("Bilinear", "", args={"in1_features": 5, "in2_features": 5, "out_features": 3})
    assert summarize_spec(ed.spec).total_macs == 2 * 5 * 5 * 3
    summary = summarize_module(nn.Embedding(10, 4), (2, 3), takes_tokens=True)
    assert summary.total_macs == 0 and summary.output_shape == (2, 3, 4)


def test_macs_recurrent() -> None:
    n, length, i, h = 3, 7, 5, 6
    assert _macs(nn.RNN(i, h, batch_first=True), (n, length, i)) == n * length * (i + h) * h
    assert _macs(nn.LSTM(i, h, batch_first=True), (n, length, i)) == n * length * 4 * (i + h) * h
    assert _macs(nn.GRU(i, h, batch_first=True), (n, length, i)) == n * length * 3 * (i + h) * h
    two = nn.LSTM(i, h, num_layers=2, bidirectional=True, batch_first=True)
    per_step = 2 * (4 * (i + h) * h + 4 * (2 * h + h) * h)
    assert _macs(two, (n, length, i)) == n * length * per_step


def test_macs_attention_and_containers_sum_children() -> None:
    n, length, e = 2, 5, 16
    mha = nn.MultiheadAttention(e, 4, batch_first=True)

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = mha

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mha(x, x, x, need_weights=False)[0]

    expected = n * (4 * length * e * e + 2 * length * length * e)
    summary = summarize_module(SelfAttention(), (n, length, e))
    assert rows(summary)["mha"].macs == expected
    assert summary.total_macs == expected  # container = sum of its children
    lenet = summarize_spec(lenet_editor().spec)
    conv = 6 * 28 * 28 * 25 + 16 * 10 * 10 * 6 * 25
    assert lenet.total_macs == conv + 400 * 120 + 120 * 84 + 84 * 10
    assert lenet.total_macs == sum(layer.macs for layer in lenet.layers[1:])


# --- inputs and JSON --------------------------------------------------------------------------
def test_make_input() -> None:
    ids = make_input((4, 9), takes_tokens=True, vocab_size=7)
    assert ids.dtype == torch.int64 and ids.shape == (4, 9)
    assert int(ids.min()) >= 0 and int(ids.max()) < 7
    floats = make_input((3, 2), takes_tokens=False, vocab_size=None, dtype=torch.float64)
    assert floats.dtype == torch.float64 and float(floats.min()) >= 0 and float(floats.max()) < 1
    assert make_input((2,), takes_tokens=False, vocab_size=None, device="meta").is_meta
    with pytest.raises(ValueError):
        make_input((2,), takes_tokens=True, vocab_size=None)


def test_to_json_is_plain_json() -> None:
    data = summarize_spec(lenet_editor().spec).to_json()
    text = json.dumps(data)
    back = json.loads(text)
    assert back["input_shape"] == [1, 1, 32, 32] and back["output_shape"] == [1, 10]
    assert back["error"] is None and back["method"] == "meta"
    assert {"name", "total_params", "trainable_params", "param_bytes", "layers"} <= back.keys()
    assert set(back["layers"][1]) >= {"path", "type", "output_shape", "params", "macs"}


def test_frozen_nodes_are_not_trainable() -> None:
    ed = lenet_editor()
    ed.set_frozen("conv1", True)
    summary = summarize_spec(ed.spec)
    assert summary.total_params == 61_706
    assert summary.trainable_params == 61_706 - 156


# --- speed and memory at GPT-2 XL scale --------------------------------------------------------
def test_gpt2_xl_sized_summary_is_fast_and_small() -> None:
    script = textwrap.dedent("""
        import json, resource
        from tuilab.core.spec import ModelSpec, Node
        from tuilab.core.edits import SpecEditor
        from tuilab.core.shapes import summarize_spec
        ed = SpecEditor(ModelSpec("gpt", Node("", "Sequential"), (1, 1024)))
        ed.add("Embedding", "", args={"num_embeddings": 50257, "embedding_dim": 1600})
        ed.add("TransformerEncoder", "", args={"d_model": 1600, "nhead": 25,
               "dim_feedforward": 6400, "num_layers": 48})
        summary = summarize_spec(ed.spec)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"peak": peak, "params": summary.total_params,
                          "out": summary.output_shape, "error": summary.error is None}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["error"] and data["out"] == [1, 1024, 1600]
    per_layer = 4 * 1600 * 1600 + 4 * 1600 + 2 * 1600 * 6400 + 6400 + 1600 + 4 * 1600
    assert data["params"] == 50257 * 1600 + 48 * per_layer
    assert data["peak"] < 1024**3


def test_training_flag_and_model_dtype() -> None:
    ed = editor((1, 8))
    ed.add("BatchNorm1d", "", args={"num_features": 8})
    assert summarize_spec(ed.spec).error is not None  # a batch of one while training
    evaluated = summarize_spec(ed.spec, training=False)
    assert evaluated.error is None and evaluated.output_shape == (1, 8)
    from tuilab.core.blocks.seed import FixedHiddenMLP

    double = FixedHiddenMLP().double()  # runs on CPU: float32 input would fail there
    summary = summarize_module(double, (2, 20))
    assert summary.error is None and summary.method == "cpu"
    assert summary.param_bytes == 420 * 8
