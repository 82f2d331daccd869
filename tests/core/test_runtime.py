"""tuilab.core.runtime: modes, one-off runs, init, hooks and Grad-CAM, PyTorch as the oracle.

Every function here must leave the model as it found it except for the one change it makes,
so most tests compare a full state snapshot (values, dtypes, devices, hook dicts, training
flags) before and after.
"""

from __future__ import annotations

import copy
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tuilab.core import runtime as rt
from tuilab.core.errors import ModeError
from tuilab.core.introspect import HOOK_DICTS

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))


def lenet() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10),
    )


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert after[key].dtype == value.dtype, key
        assert after[key].device == value.device, key
        assert torch.equal(after[key], value), key


def no_hooks(model: nn.Module) -> bool:
    return all(not getattr(m, name) for m in model.modules() for name in HOOK_DICTS)


# --- devices and dtypes ---------------------------------------------------------------------
def test_available_devices_lists_cpu_and_explains_absent_ones():
    devices = rt.available_devices()
    assert devices[0] == rt.DeviceInfo("cpu", True, "", "CPU")
    names = [d.name for d in devices]
    if torch.cuda.is_available():
        assert f"cuda:{torch.cuda.device_count() - 1}" in names
        assert all(d.description for d in devices if d.name.startswith("cuda"))
    else:
        absent = next(d for d in devices if d.name == "cuda")
        assert not absent.available and "CUDA" in absent.reason
    assert any(d.name == "mps" for d in devices)
    assert all(d.reason for d in devices if not d.available)


@pytest.mark.parametrize(("name", "dtype"), [
    ("float32", torch.float32), ("bfloat16", torch.bfloat16), ("torch.float16", torch.float16),
    ("half", torch.float16), ("double", torch.float64), (torch.float64, torch.float64),
])
def test_parse_dtype(name, dtype):
    assert rt.parse_dtype(name) is dtype


@pytest.mark.parametrize("bad", ["float8", "int32", "", torch.int64, 3])
def test_parse_dtype_refuses_naming_the_value_and_the_choices(bad):
    with pytest.raises(ModeError) as info:
        rt.parse_dtype(bad)
    assert info.value.where == "dtype"
    if isinstance(bad, str) and bad:
        assert repr(bad) in str(info.value) and "bfloat16" in str(info.value)


def test_parse_device():
    assert rt.parse_device("cpu") == torch.device("cpu")
    assert rt.parse_device(" cpu ") == torch.device("cpu")
    for bad in ("tpu", "gpu0", "meta"):
        with pytest.raises(ModeError) as info:
            rt.parse_device(bad)
        assert bad in str(info.value) and "cpu" in str(info.value)
    if not torch.cuda.is_available():
        with pytest.raises(ModeError, match="not available"):
            rt.parse_device("cuda:0")


# --- change_mode ----------------------------------------------------------------------------
def test_change_mode_casts_in_place_and_echoes_the_code():
    net = mlp()
    weight = net[0].weight
    code = rt.change_mode(net, dtype="bfloat16", probe_input=torch.randn(2, 20))
    assert code == "net.to(torch.bfloat16)"
    assert net[0].weight is weight  # in place, the same Parameter objects
    assert all(p.dtype is torch.bfloat16 for p in net.parameters())
    assert rt.change_mode(net, dtype=torch.float32) == "net.to(torch.float32)"
    assert rt.change_mode(net, device="cpu") == 'net.to("cpu")'
    assert rt.change_mode(net, device="cpu", dtype="float64") == 'net.to("cpu", torch.float64)'
    assert net[2].bias.dtype is torch.float64
    with pytest.raises(ModeError):
        rt.change_mode(net)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_change_mode_refuses_an_absent_device_and_leaves_the_model_bit_identical():
    net = mlp()
    before = state(net)
    with pytest.raises(ModeError, match="not available"):
        rt.change_mode(net, device="cuda:0")
    assert_same_state(net, before)


class Float32Only(nn.Module):
    """Raises in forward unless its input is float32: stands for an op missing in a dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype is not torch.float32:
            raise RuntimeError(f'"addmm" not implemented for {x.dtype}')
        return self.fc(x)


def test_change_mode_probe_failure_leaves_the_model_bit_identical():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), Float32Only())
    net[0].weight.grad = torch.ones_like(net[0].weight)
    before = state(net)
    with pytest.raises(ModeError) as info:
        rt.change_mode(net, dtype="float64", probe_input=torch.randn(3, 4))
    assert "not implemented" in str(info.value) and "left as it was" in str(info.value)
    assert_same_state(net, before)
    assert net[0].weight.grad.dtype is torch.float32


class FailsOnSecondMove(nn.Linear):
    """The copy moves fine, the real model fails half-way (after its first layer moved)."""

    moves = 0

    def _apply(self, fn, recurse=True):
        FailsOnSecondMove.moves += 1
        if FailsOnSecondMove.moves == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return super()._apply(fn, recurse)


def test_change_mode_restores_every_tensor_when_the_real_move_fails_half_way():
    torch.manual_seed(0)
    FailsOnSecondMove.moves = 0
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), FailsOnSecondMove(3, 3))
    net[0].weight.grad = torch.full_like(net[0].weight, 0.5)
    ids = [id(p) for p in net.parameters()]
    before = state(net)
    with pytest.raises(ModeError, match="simulated"):
        rt.change_mode(net, dtype="float16")
    assert FailsOnSecondMove.moves == 2
    assert_same_state(net, before)
    assert [id(p) for p in net.parameters()] == ids
    assert net[0].weight.grad.dtype is torch.float32 and bool((net[0].weight.grad == 0.5).all())


def test_change_mode_on_meta_only_casts():
    with torch.device("meta"):
        net = nn.Sequential(nn.Linear(4, 4))
    assert rt.change_mode(net, dtype="bfloat16") == "net.to(torch.bfloat16)"
    assert net[0].weight.dtype is torch.bfloat16 and net[0].weight.is_meta
    with pytest.raises(ModeError, match="meta"):
        rt.change_mode(net, device="cpu")


def test_set_training_and_zero_grad_echo_code():
    net = mlp()
    assert rt.set_training(net, False) == "net.eval()" and not net[0].training
    assert rt.set_training(net, True, name="model") == "model.train()" and net[0].training
    net(torch.randn(2, 20)).sum().backward()
    assert rt.zero_grad(net) == "net.zero_grad()"
    assert all(p.grad is None for p in net.parameters())


# --- forward report -------------------------------------------------------------------------
def test_forward_report_rows_match_pytorch():
    net = mlp()
    x = torch.randn(4, 20)
    report = rt.forward_report(net, x)
    assert [(r.path, r.type) for r in report.layers] == [
        ("", "Sequential"), ("0", "Linear"), ("1", "ReLU"), ("2", "Linear")]
    with torch.no_grad():
        hidden = net[0](x)
        out = net(x)
    row = report.layers[1]
    assert row.output_shape == (4, 256)
    assert row.mean == pytest.approx(hidden.mean().item(), abs=1e-6)
    assert row.std == pytest.approx(hidden.std(correction=0).item(), abs=1e-6)
    assert row.min == pytest.approx(hidden.min().item()) and row.finite
    relu = report.layers[2]
    assert relu.zero_fraction == pytest.approx((hidden <= 0).float().mean().item())
    assert report.output_shape == (4, 10)
    assert report.output_preview.startswith("[")
    assert f"{out[0, 0].item():.4g}" in report.output_preview
    assert report.training is True and report.seconds >= 0
    assert all(r.time_ms >= 0 for r in report.layers)
    assert no_hooks(net)


def test_forward_report_restores_hooks_and_training_when_forward_raises():
    net = mlp()
    net[1].eval()  # a mixed model: model.train() afterwards would flatten it
    flags = [m.training for m in net.modules()]
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        rt.forward_report(net, torch.randn(2, 7))
    assert no_hooks(net)
    assert [m.training for m in net.modules()] == flags


def test_forward_report_batchnorm_eval_keeps_running_stats_train_updates_them():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5))
    x = torch.randn(8, 3) * 3 + 1
    net.eval()
    before = state(net)
    report = rt.forward_report(net, x)
    assert report.training is False
    assert_same_state(net, before)
    net.train()
    rt.forward_report(net, x)
    assert not torch.equal(net[1].running_mean, before["1.running_mean"])
    assert int(net[1].num_batches_tracked) == 1


def test_forward_report_dropout_train_vs_eval():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 1000), nn.Dropout(0.5))
    x = torch.randn(4, 10)
    train_rows = rt.forward_report(net, x).layers
    assert train_rows[2].zero_fraction == pytest.approx(0.5, abs=0.05)
    net.eval()
    eval_rows = rt.forward_report(net, x).layers
    assert eval_rows[2].zero_fraction == 0.0
    assert eval_rows[2].mean == pytest.approx(eval_rows[1].mean)


def test_forward_report_sees_transformer_sublayers_in_eval_and_restores_fastpath():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    net = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    before = torch.backends.mha.get_fastpath_enabled()
    paths = [r.path for r in rt.forward_report(net, torch.randn(2, 5, 16)).layers]
    assert {"layers.0.self_attn", "layers.0.linear1", "layers.1.norm2"} <= set(paths)
    assert torch.backends.mha.get_fastpath_enabled() == before
    assert no_hooks(net)


def test_forward_report_names_each_use_of_a_shared_layer():
    torch.manual_seed(0)
    shared = nn.Linear(8, 8)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(),
                        nn.Linear(8, 1))
    paths = [r.path for r in rt.forward_report(net, torch.rand(2, 4)).layers]
    assert paths == ["", "0", "1", "2", "3", "4", "5", "6"]


def test_forward_report_tuple_output_and_non_finite():
    lstm = nn.LSTM(3, 5, batch_first=True)
    report = rt.forward_report(lstm, torch.randn(2, 4, 3))
    assert report.layers[0].output_shape == (2, 4, 5)
    net = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.fill_(float("inf"))
    assert rt.forward_report(net, torch.ones(1, 2)).layers[1].finite is False


# --- backward report and losses -------------------------------------------------------------
def test_backward_report_matches_autograd_and_accumulates():
    net = mlp()
    oracle = copy.deepcopy(net)
    x, y = torch.randn(5, 20), torch.randint(0, 10, (5,))
    report = rt.backward_report(net, x, y, "cross_entropy")
    loss = F.cross_entropy(oracle(x), y)
    loss.backward()
    assert report.loss == pytest.approx(loss.item())
    for name, p in oracle.named_parameters():
        assert report.grad_norms[name] == pytest.approx(p.grad.norm().item(), rel=1e-5)
    twice = rt.backward_report(net, x, y, "cross_entropy")
    assert twice.grad_norms["0.weight"] == pytest.approx(2 * report.grad_norms["0.weight"],
                                                         rel=1e-5)


def test_make_loss():
    logits, tokens = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    expected = F.cross_entropy(logits.reshape(10, 7), tokens.reshape(10))
    assert torch.allclose(rt.make_loss("cross_entropy")(logits, tokens), expected)
    out = torch.randn(4, 1)
    assert torch.allclose(rt.make_loss("mse")(out, out.reshape(4) + 1), torch.tensor(1.0))
    with pytest.raises(ValueError, match="shape"):
        rt.make_loss("mse")(out, torch.randn(4, 2))
    labels = torch.tensor([0, 1, 1, 0])
    assert torch.allclose(rt.make_loss("bce_with_logits")(out, labels),
                          F.binary_cross_entropy_with_logits(out, labels.float()[:, None]))
    with pytest.raises(ValueError, match="unknown loss"):
        rt.make_loss("hinge")


# --- initialisation against the seeds' own functions ----------------------------------------
def seed_init_normal(m):
    if type(m) in (nn.Linear, nn.Conv2d):
        nn.init.normal_(m.weight, mean=0, std=0.01)
        nn.init.zeros_(m.bias)


def seed_xavier(m):
    if type(m) in (nn.Linear, nn.Conv2d):
        nn.init.xavier_uniform_(m.weight)


def seed_init_42(m):
    """Seed 003's init_42: the weight only (the bias keeps its value)."""
    if type(m) in (nn.Linear, nn.Conv2d):
        nn.init.constant_(m.weight, 42)


def seed_my_init(m):
    if type(m) in (nn.Linear, nn.Conv2d):
        nn.init.uniform_(m.weight, -10, 10)
        m.weight.data *= m.weight.data.abs() >= 5


def weights_only(fn):
    def init(m):
        if type(m) in (nn.Linear, nn.Conv2d):
            fn(m.weight)
    return init


SEED_FUNCTIONS = {
    "normal": seed_init_normal,
    "xavier_uniform": seed_xavier,
    "xavier_normal": weights_only(nn.init.xavier_normal_),
    "kaiming_uniform": weights_only(lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu")),
    "kaiming_normal": weights_only(lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")),
    "orthogonal": weights_only(nn.init.orthogonal_),
    "constant": seed_init_42,
    "zeros": lambda m: (nn.init.zeros_(m.weight), nn.init.zeros_(m.bias))
    if type(m) in (nn.Linear, nn.Conv2d) else None,
    "my_init": seed_my_init,
}


@pytest.mark.parametrize("scheme", rt.INIT_SCHEMES)
def test_apply_init_matches_the_seed_function(scheme):
    assert set(SEED_FUNCTIONS) == set(rt.INIT_SCHEMES)
    net = lenet()
    oracle = copy.deepcopy(net)
    torch.manual_seed(1)
    code = rt.apply_init(net, scheme)
    torch.manual_seed(1)
    with torch.no_grad():
        oracle.apply(SEED_FUNCTIONS[scheme])
    for (name, p), q in zip(net.named_parameters(), oracle.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert ".apply(" in code and code.startswith("def ") and "# 5 layers" in code
    if scheme == "my_init":
        w = net[0].weight
        assert bool(((w == 0) | (w.abs() >= 5)).all())


def test_apply_init_on_one_sub_block_and_shared_layers():
    torch.manual_seed(0)
    shared = nn.Linear(8, 8)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(),
                        nn.Linear(8, 1))
    first = net[0].weight.detach().clone()
    bias = net[2].bias.detach().clone()
    code = rt.apply_init(net[2], "constant", value=3, name="net[2]")
    assert code.splitlines()[0] == "def init_3(m):"
    assert code.endswith("net[2].apply(init_3)  # 1 layer")
    assert bool((net[4].weight == 3).all()) and torch.equal(net[4].bias, bias)
    assert torch.equal(net[0].weight, first) and net[2].weight.requires_grad


# --- HookKit --------------------------------------------------------------------------------
def test_hookkit_add_fire_drain_remove():
    net = mlp()
    kit = rt.HookKit()
    forward = kit.add(net, "0", "forward", "shapes")
    assert len(net[0]._forward_hooks) == 1
    pre = kit.add(net, "", "forward_pre", "stats")
    assert len(net._forward_pre_hooks) == 1
    backward = kit.add(net, "2", "backward", "shapes")
    assert len(net[2]._backward_hooks) == 1
    assert [h.id for h in kit.active()] == [forward, pre, backward]
    net(torch.randn(3, 20)).sum().backward()
    events = kit.drain()
    assert [(e.path, e.kind) for e in events] == [
        ("(root)", "forward_pre"), ("0", "forward"), ("2", "backward")]
    assert events[1].message == "in (3, 20) -> out (3, 256)"
    assert events[0].message.startswith("mean ")
    assert events[2].message == "grad_in (3, 256) grad_out (3, 10)"
    assert kit.drain() == []
    assert kit.remove(forward) == f"h{forward}.remove()"
    assert not net[0]._forward_hooks
    kit.remove_all()
    assert no_hooks(net) and kit.active() == []
    with pytest.raises(KeyError):
        kit.remove(forward)


def test_hookkit_refuses_bad_input_and_is_bounded_and_thread_safe():
    net = mlp()
    kit = rt.HookKit(maxlen=50)
    with pytest.raises(ValueError, match="no module"):
        kit.add(net, "9", "forward", "shapes")
    with pytest.raises(ValueError, match="kind"):
        kit.add(net, "0", "sideways", "shapes")
    with pytest.raises(ValueError, match="action"):
        kit.add(net, "0", "forward", "print")
    kit.add(net, "1", "forward", "stats")

    def run() -> None:
        for _ in range(40):
            net(torch.randn(1, 20))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kit.drain()) == 50 and kit.dropped == 70
    kit.remove_all()


# --- Grad-CAM -------------------------------------------------------------------------------
def manual_grad_cam(model, image, class_index, layer):
    acts = {}
    handle = layer.register_forward_hook(lambda m, a, out: acts.setdefault("a", out))
    model.eval()
    out = model(image)
    handle.remove()
    a = acts["a"]
    (grads,) = torch.autograd.grad(out[0, class_index], a)
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    return (cam / cam.max() if cam.max() > 0 else cam).detach()


def test_grad_cam_matches_a_hand_computation_and_cleans_up():
    net = lenet()
    net[0].weight.grad = torch.ones_like(net[0].weight)  # the user's gradient must survive
    image = torch.rand(1, 1, 28, 28)
    before = state(net)
    nonzero = 0
    for class_index in range(10):
        cam = rt.grad_cam(net, image, class_index=class_index)
        assert cam.shape == (28, 28) and cam.dtype is torch.float32
        assert float(cam.min()) == 0.0 and float(cam.max()) in (0.0, pytest.approx(1.0))
        oracle = copy.deepcopy(net)
        expected = manual_grad_cam(oracle, image, class_index, oracle[3])  # the last Conv2d
        assert torch.allclose(cam, expected, atol=1e-5)
        nonzero += float(cam.max()) > 0
    assert nonzero >= 3  # an all-zero map is legitimate (every weighted sum < 0), not the rule
    assert no_hooks(net)
    assert net.training and all(m.training for m in net.modules())
    assert_same_state(net, before)
    assert bool((net[0].weight.grad == 1).all())
    assert all(p.grad is None for name, p in net.named_parameters() if name != "0.weight")


def test_grad_cam_with_a_chosen_layer_and_bad_input():
    net = lenet().eval()
    cam = rt.grad_cam(net, torch.rand(1, 1, 28, 28), 0, layer_path="0")
    assert cam.shape == (28, 28) and not net.training
    with pytest.raises(ValueError, match="out of range"):
        rt.grad_cam(net, torch.rand(1, 1, 28, 28), 10)
    with pytest.raises(ValueError, match=r"\(1, C, H, W\)"):
        rt.grad_cam(net, torch.rand(2, 1, 28, 28), 0)
    with pytest.raises(ValueError, match="Conv2d"):
        rt.grad_cam(mlp(), torch.rand(1, 1, 4, 5), 0)
    assert no_hooks(net)


# --- CUDA -----------------------------------------------------------------------------------
@pytest.mark.cuda
@cuda
def test_change_mode_to_cuda_and_back():
    net = mlp()
    before = state(net)
    assert rt.change_mode(net, device="cuda", probe_input=torch.randn(2, 20)) == (
        'net.to("cuda:0")')
    assert all(p.is_cuda for p in net.parameters())
    report = rt.forward_report(net, torch.randn(2, 20))
    assert report.output_shape == (2, 10) and no_hooks(net)
    assert rt.change_mode(net, device="cpu") == 'net.to("cpu")'
    assert_same_state(net, before)


@pytest.mark.cuda
@cuda
def test_change_mode_to_cuda_float16_probe():
    net = lenet()
    rt.change_mode(net, device="cuda:0", dtype="float16", probe_input=torch.rand(1, 1, 28, 28))
    assert net[0].weight.dtype is torch.float16 and net[0].weight.is_cuda
    cam = rt.grad_cam(net, torch.rand(1, 1, 28, 28), 1)
    assert cam.shape == (28, 28) and cam.device.type == "cpu"
