"""tuilab.core.blocks: each block checked against PyTorch's own layers or a hand computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tuilab.core.blocks.composite import (
    DepthwiseSeparableConv2d,
    Inception,
    Residual,
    TCNBlock,
    TransformerEncoderBlock,
)
from tuilab.core.blocks.containers import (
    ModuleDict,
    ModuleList,
    ParamDictSelect,
    ParamListChain,
)
from tuilab.core.blocks.seed import (
    MLP,
    Conv2D,
    FixedHiddenMLP,
    MyDictDense,
    MyLayer,
    MyListDense,
    MySequential,
    Pool2D,
    corr2d,
    pool2d,
)
from tuilab.core.blocks.utility import (
    CausalTransformerEncoder,
    LastTimeStep,
    PositionalEmbedding,
    SelectOutput,
    Transpose,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- seed modules -----------------------------------------------------------------------------


def test_seed_mlp_matches_hand_computation() -> None:
    net = MLP()
    x = torch.rand(2, 20)
    y = net(x)
    assert y.shape == (2, 10)
    h = torch.clamp(x @ net.hidden.weight.T + net.hidden.bias, min=0)
    torch.testing.assert_close(y, h @ net.out.weight.T + net.out.bias)
    assert [n for n, _ in net.named_children()] == ["hidden", "out"]  # seed 000's names


def test_my_sequential_fills_modules_and_matches_sequential() -> None:
    layers = [nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10), nn.Sigmoid()]
    net = MySequential(*layers)
    assert list(net._modules.keys()) == ["0", "1", "2", "3"]
    x = torch.randn(2, 4)
    y = net(x)
    assert y.shape == (2, 10)
    torch.testing.assert_close(y, nn.Sequential(*layers)(x))
    assert n_params(net) == 4 * 8 + 8 + 8 * 10 + 10


def test_fixed_hidden_mlp() -> None:
    net = FixedHiddenMLP()
    y = net(torch.rand(2, 20))
    assert y.dim() == 0
    assert y.abs() <= 1  # the loop halves until the sum of |X| is at most 1
    assert n_params(net) == 420
    assert "rand_weight" not in net.state_dict()
    assert "rand_weight" in dict(net.named_buffers())
    assert not net.rand_weight.requires_grad
    net.to(torch.float64)
    assert net.rand_weight.dtype == torch.float64
    assert net(torch.rand(2, 20, dtype=torch.float64)).dtype == torch.float64


def test_fixed_hidden_mlp_refuses_non_finite() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        FixedHiddenMLP()(torch.full((2, 20), float("inf")))


def test_fixed_hidden_mlp_cannot_run_on_meta() -> None:
    with torch.device("meta"):
        net = FixedHiddenMLP()
        with pytest.raises(RuntimeError, match="meta"):
            net(torch.rand(2, 20))


def test_my_layer() -> None:
    y = MyLayer()(torch.tensor([1, 2, 3, 4, 5], dtype=torch.float))
    torch.testing.assert_close(y, torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]))
    assert n_params(MyLayer()) == 0


def test_my_list_dense() -> None:
    net = MyListDense()
    assert [tuple(p.shape) for p in net.params] == [(4, 4)] * 3 + [(4, 1)]
    assert n_params(net) == 3 * 16 + 4
    x = torch.randn(2, 4)
    expected = x
    for p in net.params:
        expected = torch.mm(expected, p)
    torch.testing.assert_close(net(x), expected)
    assert net(torch.randn(5, 2, 4)).shape == (5, 2, 1)
    wide = MyListDense(in_features=3, hidden=5, depth=2, out_features=2)
    assert [tuple(p.shape) for p in wide.params] == [(3, 5), (5, 5), (5, 2)]
    with pytest.raises(ValueError):
        MyListDense(depth=0)


@pytest.mark.parametrize(("choice", "out"), [("linear1", 4), ("linear2", 1), ("linear3", 2)])
def test_my_dict_dense(choice: str, out: int) -> None:
    net = MyDictDense(choice)
    assert list(net.params.keys()) == ["linear1", "linear2", "linear3"]
    assert n_params(net) == 16 + 4 + 8
    x = torch.randn(2, 4)
    torch.testing.assert_close(net(x), torch.mm(x, net.params[choice]))
    assert net(x).shape == (2, out)


def test_my_dict_dense_rejects_unknown_choice() -> None:
    with pytest.raises(ValueError, match="linear1, linear2, linear3"):
        MyDictDense("linear9")


def test_corr2d_seed_example() -> None:
    X = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    K = torch.tensor([[0, 1], [2, 3]])
    torch.testing.assert_close(corr2d(X, K), torch.tensor([[19.0, 25.0], [37.0, 43.0]]))


def test_corr2d_matches_conv2d_on_a_batch() -> None:
    X = torch.randn(3, 2, 7, 6)
    K = torch.randn(3, 2)
    expected = F.conv2d(X.reshape(6, 1, 7, 6), K[None, None]).reshape(3, 2, 5, 5)
    torch.testing.assert_close(corr2d(X, K), expected)


def test_conv2d_block_forward_and_grad_match_conv2d() -> None:
    layer = Conv2D(2, 3)
    X = torch.randn(4, 6, 8)
    y = layer(X)
    assert y.shape == (4, 5, 6)
    w = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)
    ref = F.conv2d(X[:, None], w[None, None], b).squeeze(1)
    torch.testing.assert_close(y, ref)
    y.square().sum().backward()
    ref.square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, w.grad)
    torch.testing.assert_close(layer.bias.grad, b.grad)


def test_pool2d_seed_example() -> None:
    X = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]], dtype=torch.float)
    torch.testing.assert_close(pool2d(X, 2, 2), torch.tensor([[4.0, 5.0], [7.0, 8.0]]))
    torch.testing.assert_close(pool2d(X, 2, 2, "avg"), torch.tensor([[2.0, 3.0], [5.0, 6.0]]))


@pytest.mark.parametrize(
    ("mode", "ref"),
    [
        ("max", lambda x, h, w: F.max_pool2d(x, (h, w), stride=1)),
        ("avg", lambda x, h, w: F.avg_pool2d(x, (h, w), stride=1)),
    ],
)
def test_pool2d_matches_torch(mode: str, ref) -> None:
    X = torch.randn(2, 3, 6, 5)
    torch.testing.assert_close(pool2d(X, 3, 2, mode), ref(X, 3, 2))
    torch.testing.assert_close(Pool2D(3, 2, mode)(X), ref(X, 3, 2))


def test_pool_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="max, avg"):
        Pool2D(mode="min")
    with pytest.raises(ValueError):
        pool2d(torch.zeros(3, 3), 2, 2, "min")


# --- composite blocks -------------------------------------------------------------------------


def test_residual_shapes() -> None:
    x = torch.randn(4, 3, 6, 6)
    plain = Residual(3, 3)
    assert plain.conv3 is None
    assert plain(x).shape == (4, 3, 6, 6)
    down = Residual(3, 6, use_1x1conv=True, stride=2)
    assert down(x).shape == (4, 6, 3, 3)
    assert isinstance(down.conv3, nn.Conv2d)
    with pytest.raises(ValueError, match="use_1x1conv"):
        Residual(3, 6)


def test_residual_skip_path_adds_input() -> None:
    block = Residual(2, 2).eval()
    for bn in (block.bn1, block.bn2):  # make the main path output exactly zero
        nn.init.zeros_(bn.weight)
        nn.init.zeros_(bn.bias)
    x = torch.randn(3, 2, 5, 5)
    torch.testing.assert_close(block(x), F.relu(x))


def test_inception_channels() -> None:
    block = Inception(in_channels=8, c1=2, c2_reduce=3, c2=4, c3_reduce=2, c3=5, c4=6)
    assert block(torch.randn(2, 8, 7, 9)).shape == (2, 2 + 4 + 5 + 6, 7, 9)


def test_tcn_keeps_length_and_is_causal() -> None:
    block = TCNBlock(in_channels=2, out_channels=5, kernel_size=3, dilation=2).eval()
    assert isinstance(block.downsample, nn.Conv1d)
    x = torch.randn(3, 2, 20)
    y = block(x)
    assert y.shape == (3, 5, 20)
    t = 11
    x2 = x.clone()
    x2[:, :, t] += 10.0
    y2 = block(x2)
    torch.testing.assert_close(y2[..., :t], y[..., :t])
    assert not torch.allclose(y2[..., t:], y[..., t:])
    assert TCNBlock(4, 4).downsample is None


def test_transformer_encoder_block_shape() -> None:
    block = TransformerEncoderBlock(d_model=16, nhead=2, dim_feedforward=32)
    assert block(torch.randn(3, 7, 16)).shape == (3, 7, 16)
    with pytest.raises(ValueError):
        TransformerEncoderBlock(d_model=10, nhead=3)


def test_depthwise_separable_param_count() -> None:
    c_in, c_out, k = 3, 16, 3
    block = DepthwiseSeparableConv2d(c_in, c_out, k)
    assert n_params(block) == c_in * k * k + c_in + c_in * c_out + c_out
    assert block.depthwise.groups == c_in
    assert block(torch.randn(2, 3, 8, 8)).shape == (2, 16, 8, 8)
    strided = DepthwiseSeparableConv2d(3, 4, kernel_size=3, padding=1, stride=2)
    assert strided(torch.randn(1, 3, 8, 8)).shape == (1, 4, 4, 4)


# --- utility ----------------------------------------------------------------------------------


def test_select_output_on_lstm() -> None:
    lstm = nn.LSTM(4, 6, batch_first=True)
    x = torch.randn(2, 5, 4)
    out, (h, c) = lstm(x)
    torch.testing.assert_close(SelectOutput("output")(lstm(x)), out)
    torch.testing.assert_close(SelectOutput("h_n")(lstm(x)), h)
    torch.testing.assert_close(SelectOutput("c_n")(lstm(x)), c)
    t = torch.randn(3)
    assert SelectOutput()(t) is t
    assert "which='h_n'" in repr(SelectOutput("h_n"))
    net = nn.Sequential(lstm, SelectOutput("output"), LastTimeStep(), nn.Linear(6, 1))
    assert net(x).shape == (2, 1)
    torch.testing.assert_close(LastTimeStep()(out), out[:, -1, :])


@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU])
def test_select_output_h_n_on_rnn_and_gru_and_no_c_n(cls: type[nn.RNNBase]) -> None:
    layer = cls(3, 5, num_layers=2)  # batch_first=False, PyTorch's default: (L, N, H)
    x = torch.randn(7, 2, 3)
    out, h = layer(x)
    torch.testing.assert_close(SelectOutput("output")(layer(x)), out)
    torch.testing.assert_close(SelectOutput("h_n")(layer(x)), h)
    assert SelectOutput("h_n")(layer(x)).shape == (2, 2, 5)
    with pytest.raises(ValueError, match="c_n is LSTM's cell state"):
        SelectOutput("c_n")(layer(x))
    with pytest.raises(ValueError, match="which must be"):
        SelectOutput("hidden")


def test_transpose() -> None:
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(Transpose()(x), x.transpose(1, 2))
    assert Transpose(0, 2)(x).shape == (3, 5, 2)


def test_positional_embedding() -> None:
    pe = PositionalEmbedding(max_len=8, d_model=4)
    x = torch.randn(2, 5, 4)
    torch.testing.assert_close(pe(x), x + pe.position.weight[:5])
    with pytest.raises(ValueError, match="max_len"):
        pe(torch.randn(1, 9, 4))


@pytest.mark.parametrize("train", [True, False])
def test_causal_transformer_encoder_is_causal(train: bool) -> None:
    enc = CausalTransformerEncoder(d_model=8, nhead=2, dim_feedforward=16, causal=True)
    enc.train(train)
    assert isinstance(enc, nn.TransformerEncoder)
    assert len(enc.layers) == 2
    x = torch.randn(2, 6, 8)
    t = 3
    x2 = x.clone()
    x2[:, t + 1 :] += 5.0
    with torch.no_grad():
        y, y2 = enc(x), enc(x2)
    torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1])
    assert not torch.allclose(y2[:, t + 1 :], y[:, t + 1 :])


def test_non_causal_transformer_encoder_sees_the_future() -> None:
    enc = CausalTransformerEncoder(d_model=8, nhead=2, dim_feedforward=16)
    x = torch.randn(2, 6, 8)
    x2 = x.clone()
    x2[:, -1] += 5.0
    assert not torch.allclose(enc(x2)[:, 0], enc(x)[:, 0])


def test_causal_transformer_encoder_on_meta() -> None:
    with torch.device("meta"):
        enc = CausalTransformerEncoder(causal=True)
        x = torch.randn(2, 5, 64)
        assert enc(x).shape == (2, 5, 64)
        enc.eval()
        with torch.no_grad():
            y = enc(x)
    assert y.device.type == "meta"
    assert y.shape == (2, 5, 64)


# --- containers -------------------------------------------------------------------------------


def test_module_list_applies_in_order() -> None:
    layers = [nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)]
    ml = ModuleList(*layers)
    assert type(ml).__name__ == "ModuleList"
    assert isinstance(ml, nn.ModuleList)
    x = torch.randn(3, 4)
    torch.testing.assert_close(ml(x), nn.Sequential(*layers)(x))
    head = ml[:2]
    assert isinstance(head, ModuleList)
    assert len(head) == 2
    assert ml[2] is layers[2]
    assert ModuleList()(x) is x


def test_module_dict_applies_in_insertion_order() -> None:
    md = ModuleDict({"fc": nn.Linear(4, 3), "act": nn.Sigmoid()})
    assert type(md).__name__ == "ModuleDict"
    x = torch.randn(2, 4)
    torch.testing.assert_close(md(x), torch.sigmoid(md["fc"](x)))
    assert ModuleDict()(x) is x


def test_param_list_chain() -> None:
    net = ParamListChain(count=3, in_features=4, out_features=5)
    assert [tuple(p.shape) for p in net.params] == [(4, 5), (5, 5), (5, 5)]
    x = torch.randn(2, 4)
    expected = x @ net.params[0] @ net.params[1] @ net.params[2]
    torch.testing.assert_close(net(x), expected)
    with pytest.raises(ValueError):
        ParamListChain(count=0)


def test_param_dict_select() -> None:
    net = ParamDictSelect(keys="a, b,c", in_features=4, out_features=3, choice="b")
    assert list(net.params.keys()) == ["a", "b", "c"]
    assert n_params(net) == 3 * 12
    x = torch.randn(2, 4)
    torch.testing.assert_close(net(x), x @ net.params["b"])
    net(x).sum().backward()
    assert net.params["a"].grad is None
    assert net.params["b"].grad is not None
    with pytest.raises(ValueError, match="a, b"):
        ParamDictSelect(choice="z")
    with pytest.raises(ValueError):
        ParamDictSelect(keys="a,a")
    with pytest.raises(ValueError):
        ParamDictSelect(keys=" , ")


# --- every block on the meta device -----------------------------------------------------------

META_CASES = [
    (MLP, (2, 20), (2, 10)),
    (MySequential, (2, 3), (2, 3)),
    (MyLayer, (5,), (5,)),
    (MyListDense, (2, 4), (2, 1)),
    (MyDictDense, (2, 4), (2, 4)),
    (Conv2D, (6, 8), (6, 7)),
    (Pool2D, (1, 1, 4, 4), (1, 1, 3, 3)),
    (Residual, (2, 3, 8, 8), (2, 3, 8, 8)),
    (Inception, (1, 192, 8, 8), (1, 256, 8, 8)),
    (TCNBlock, (2, 1, 10), (2, 16, 10)),
    (TransformerEncoderBlock, (2, 5, 64), (2, 5, 64)),
    (DepthwiseSeparableConv2d, (2, 3, 8, 8), (2, 16, 8, 8)),
    (SelectOutput, (2, 3), (2, 3)),
    (LastTimeStep, (2, 5, 7), (2, 7)),
    (Transpose, (2, 5, 7), (2, 7, 5)),
    (PositionalEmbedding, (2, 5, 64), (2, 5, 64)),
    (CausalTransformerEncoder, (2, 5, 64), (2, 5, 64)),
    (ModuleList, (2, 3), (2, 3)),
    (ModuleDict, (2, 3), (2, 3)),
    (ParamListChain, (2, 4), (2, 4)),
    (ParamDictSelect, (2, 4), (2, 4)),
]


@pytest.mark.parametrize(("cls", "in_shape", "out_shape"), META_CASES, ids=lambda c: str(c))
def test_default_block_runs_on_meta(cls: type[nn.Module], in_shape, out_shape) -> None:
    with torch.device("meta"):
        block = cls()
        assert all(p.device.type == "meta" for p in block.parameters())
        y = block(torch.randn(*in_shape))
    assert y.device.type == "meta"
    assert tuple(y.shape) == out_shape


def test_meta_containers_with_children() -> None:
    with torch.device("meta"):
        x = torch.randn(2, 4)
        seq = MySequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10), nn.Sigmoid())
        ml = ModuleList(nn.Linear(4, 6), nn.ReLU())
        md = ModuleDict({"fc": nn.Linear(4, 2)})
        sel = SelectOutput("output")
        lstm_out = sel(nn.LSTM(4, 6, batch_first=True)(torch.randn(2, 5, 4)))
        shapes = [tuple(seq(x).shape), tuple(ml(x).shape), tuple(md(x).shape)]
    assert shapes == [(2, 10), (2, 6), (2, 2)]
    assert tuple(lstm_out.shape) == (2, 5, 6)


def test_meta_cases_cover_every_public_block() -> None:
    from tuilab.core.blocks import composite, containers, seed, utility

    public = {
        getattr(mod, name)
        for mod in (seed, composite, utility, containers)
        for name in mod.__all__
        if isinstance(getattr(mod, name), type)
    }
    assert public - {FixedHiddenMLP} == {case[0] for case in META_CASES}
