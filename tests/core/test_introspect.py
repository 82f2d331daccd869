"""tuilab.core.introspect: every snapshot checked against PyTorch's own view of the module.

The oracle is always torch: ``named_modules``/``named_parameters``/``named_buffers`` with
``remove_duplicate=False`` for the keys, ``parameters()`` (deduplicated) for the totals,
``state_dict()`` for persistence, the tensors themselves for shape/dtype/device/_version, and
torch's reductions in float64 for the value statistics.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import zlib
from collections import OrderedDict
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tuilab.core import introspect
from tuilab.core.blocks.seed import FixedHiddenMLP, MyDictDense, MyListDense
from tuilab.core.introspect import (
    HOOK_DICTS,
    Snapshot,
    TableDiff,
    diff,
    global_hook_rows,
    grad_norms,
    hook_rows,
    module_at,
    snapshot,
    state_dict_rows,
    tensor_stats,
)

# --------------------------------------------------------------------------------------------
# models


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, bias=False),  # bias=False registers `bias` as None: skipped
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 10 * 10, 10),
    )


def lstm() -> nn.Module:
    return nn.LSTM(10, 20, num_layers=2)


def transformer() -> nn.Module:
    layer = nn.TransformerEncoderLayer(16, 4, 32)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


def tied() -> nn.Module:
    """Seed 003's parameter-tying net: one `shared` Linear at positions 2 and 4."""
    torch.manual_seed(0)
    shared = nn.Linear(8, 8)
    return nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(8, 1)
    )


MODELS: dict[str, Callable[[], nn.Module]] = {
    "mlp": mlp,
    "cnn": cnn,
    "lstm": lstm,
    "transformer": transformer,
    "tied": tied,
    "fixed_hidden_mlp": FixedHiddenMLP,
    "list_dense": MyListDense,
    "dict_dense": MyDictDense,
}


# --------------------------------------------------------------------------------------------
# the oracle


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _parent(path: str) -> str | None:
    if path == "":
        return None
    return path.rsplit(".", 1)[0] if "." in path else ""


def assert_matches_torch(model: nn.Module, snap: Snapshot) -> None:
    """Every field of `snap` against what torch says about `model`."""
    named = list(model.named_modules(remove_duplicate=False))
    paths = [n for n, _ in named]
    assert list(snap.modules) == paths
    params = list(model.named_parameters(remove_duplicate=False))
    assert list(snap.parameters) == [k for k, _ in params]
    buffers = list(model.named_buffers(remove_duplicate=False))
    assert list(snap.buffers) == [k for k, _ in buffers]

    module_paths: dict[int, list[str]] = {}
    for path, m in named:
        module_paths.setdefault(id(m), []).append(path)
    for path, m in named:
        row = snap.modules[path]
        assert row.path == path
        assert row.cls == type(m).__name__
        assert row.training is m.training
        assert row.own_params == sum(p.numel() for p in m.parameters(recurse=False))
        assert row.own_buffers == sum(b.numel() for b in m.buffers(recurse=False))
        # named_children() drops a child registered twice, so derive children from the paths.
        assert list(row.children) == [p.rsplit(".", 1)[-1] for p in paths if _parent(p) == path]
        assert row.extra_repr == m.extra_repr()
        assert row.shared_with == tuple(p for p in module_paths[id(m)] if p != path)

    persistent_keys = set(model.state_dict(keep_vars=True))
    for kind, pairs, table in (
        ("parameter", params, snap.parameters),
        ("buffer", buffers, snap.buffers),
    ):
        keys_of: dict[int, list[str]] = {}
        for key, t in pairs:
            keys_of.setdefault(id(t), []).append(key)
        for key, t in pairs:
            row = table[key]
            assert row.key == key
            assert row.kind == kind
            assert (row.module + "." + row.name if row.module else row.name) == key
            assert row.shape == tuple(t.shape)
            assert row.dtype == _dtype(t)
            assert row.device == str(t.device)
            assert row.requires_grad is t.requires_grad
            assert row.numel == t.numel()
            assert row.nbytes == t.numel() * t.element_size()
            assert row.version == t._version
            assert row.has_grad is (t.grad is not None)
            assert row.persistent is (key in persistent_keys)
            assert row.shared_with == tuple(k for k in keys_of[id(t)] if k != key)
            assert not row.lazy

    unique = list(model.parameters())  # deduplicated by torch
    assert snap.total_params == sum(p.numel() for p in unique)
    assert snap.trainable_params == sum(p.numel() for p in unique if p.requires_grad)
    assert snap.param_bytes == sum(p.numel() * p.element_size() for p in unique)
    assert snap.buffer_bytes == sum(b.numel() * b.element_size() for b in model.buffers())


@pytest.mark.parametrize("name", list(MODELS))
def test_snapshot_matches_torch(name: str) -> None:
    model = MODELS[name]()
    assert_matches_torch(model, snapshot(model))


@pytest.mark.parametrize("name", list(MODELS))
def test_snapshot_matches_torch_in_eval_and_float64(name: str) -> None:
    model = MODELS[name]().eval().to(torch.float64)
    snap = snapshot(model)
    assert_matches_torch(model, snap)
    assert not any(row.training for row in snap.modules.values())


def test_tied_net_counts_shared_weights_once() -> None:
    model = tied()
    snap = snapshot(model)
    assert snap.total_params == 121 == sum(p.numel() for p in model.parameters())
    # named_parameters(remove_duplicate=False) lists the shared Linear twice: 40 + 72*2 + 9
    assert sum(r.numel for r in snap.parameters.values()) == 193
    assert snap.parameters["2.weight"].shared_with == ("4.weight",)
    assert snap.parameters["4.weight"].shared_with == ("2.weight",)
    assert snap.parameters["4.bias"].shared_with == ("2.bias",)
    assert snap.parameters["0.weight"].shared_with == ()
    assert snap.modules["2"].shared_with == ("4",)
    assert snap.modules["4"].shared_with == ("2",)
    assert snap.modules["0"].shared_with == ()
    assert snap.param_bytes == 121 * 4


def test_nested_tied_module_appears_under_every_path() -> None:
    block = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
    model = nn.ModuleDict({"a": block, "b": nn.Sequential(block, nn.Linear(3, 1))})
    snap = snapshot(model)
    assert_matches_torch(model, snap)
    assert snap.modules["a.0"].shared_with == ("b.0.0",)
    assert snap.parameters["b.0.0.bias"].shared_with == ("a.0.bias",)
    assert snap.total_params == 12 + 4


def test_non_persistent_buffer_is_flagged() -> None:
    class WithBuffers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("kept", torch.zeros(3))
            self.register_buffer("scratch", torch.ones(2, 2), persistent=False)
            self.register_buffer("empty", None)  # a None buffer is skipped, as torch does

    model = nn.Sequential(WithBuffers())
    snap = snapshot(model)
    assert list(snap.buffers) == ["0.kept", "0.scratch"]
    assert snap.buffers["0.kept"].persistent
    assert not snap.buffers["0.scratch"].persistent
    assert snap.modules["0"].own_buffers == 7
    assert [k for k, _, _ in state_dict_rows(model)] == ["0.kept"]
    fixed = snapshot(FixedHiddenMLP())
    assert not fixed.buffers["rand_weight"].persistent


def test_snapshot_is_frozen() -> None:
    snap = snapshot(mlp())
    with pytest.raises(TypeError):
        snap.modules["x"] = snap.modules[""]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.parameters["0.weight"].version = 9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.total_params = 0  # type: ignore[misc]


def _random_model(draw: st.DrawFn) -> nn.Module:
    pool: list[nn.Module] = []

    def build(depth: int) -> nn.Module:
        if pool and draw(st.booleans()) and draw(st.booleans()):
            return draw(st.sampled_from(pool))  # reuse: a tied module
        choice = draw(st.integers(0, 5 if depth < 3 else 3))
        if choice == 0:
            m: nn.Module = nn.Linear(draw(st.integers(1, 4)), 2, bias=draw(st.booleans()))
        elif choice == 1:
            m = nn.ReLU()
        elif choice == 2:
            m = nn.BatchNorm1d(2, track_running_stats=draw(st.booleans()))
        elif choice == 3:
            m = nn.LayerNorm(2, elementwise_affine=draw(st.booleans()))
        elif choice == 4:
            m = nn.Sequential(*[build(depth + 1) for _ in range(draw(st.integers(0, 3)))])
        else:
            m = nn.ModuleDict({f"k{i}": build(depth + 1) for i in range(draw(st.integers(0, 3)))})
        pool.append(m)
        return m

    return nn.Sequential(*[build(0) for _ in range(draw(st.integers(1, 4)))])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_trees_with_ties_match_torch(data: st.DataObject) -> None:
    model = _random_model(data.draw)
    if data.draw(st.booleans()):
        model.eval()
    assert_matches_torch(model, snapshot(model))
    assert diff(snapshot(model), snapshot(model)).empty


# --------------------------------------------------------------------------------------------
# diff


def test_diff_from_nothing_adds_everything() -> None:
    model = cnn()
    snap = snapshot(model)
    d = diff(None, snap)
    assert d.modules == TableDiff(added=tuple(snap.modules))
    assert d.parameters.added == tuple(snap.parameters)
    assert d.buffers.added == tuple(snap.buffers)
    assert not d.empty


@pytest.mark.parametrize("name", list(MODELS))
def test_no_op_diff_is_empty(name: str) -> None:
    model = MODELS[name]()
    old = snapshot(model)
    model.eval()
    model.train()  # back where it was: nothing to show
    assert diff(old, snapshot(model)).empty


def test_add_module_adds_its_rows() -> None:
    model = mlp()
    old = snapshot(model)
    model.add_module("fc3", nn.Linear(10, 3))
    d = diff(old, snapshot(model))
    assert d.modules == TableDiff(added=("fc3",), changed=("",))  # the root's children grew
    assert d.parameters == TableDiff(added=("fc3.weight", "fc3.bias"))
    assert d.buffers.empty


def test_removing_a_module_removes_its_rows() -> None:
    model = nn.Sequential(
        OrderedDict(fc1=nn.Linear(4, 8), bn=nn.BatchNorm1d(8), act=nn.ReLU(), fc2=nn.Linear(8, 2))
    )
    old = snapshot(model)
    del model.bn
    d = diff(old, snapshot(model))
    assert d.modules == TableDiff(removed=("bn",), changed=("",))
    assert d.parameters == TableDiff(removed=("bn.weight", "bn.bias"))
    assert d.buffers == TableDiff(
        removed=("bn.running_mean", "bn.running_var", "bn.num_batches_tracked")
    )


def test_eval_changes_every_module_and_nothing_else() -> None:
    model = cnn()
    old = snapshot(model)
    model.eval()
    d = diff(old, snapshot(model))
    assert d.modules == TableDiff(changed=tuple(n for n, _ in model.named_modules()))
    assert d.parameters.empty
    assert d.buffers.empty


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_training_flags_alone_equal_a_full_snapshot(data: st.DataObject) -> None:
    """The train/eval fast path: on random trees with ties, flipping the whole model or one
    submodule, the re-read flags give exactly the snapshot a full walk gives."""
    model = _random_model(data.draw)
    old = snapshot(model)
    modules = [m for _, m in model.named_modules()]
    target = data.draw(st.sampled_from(modules))
    target.train(data.draw(st.booleans()))
    fast = introspect.with_training_flags(old, model)
    assert fast == snapshot(model)
    assert diff(old, fast) == diff(old, snapshot(model))
    for path, row in fast.modules.items():  # rows that did not move are not copied
        assert (row is old.modules[path]) == (row.training == old.modules[path].training)
    assert fast.parameters is old.parameters and fast.buffers is old.buffers


def test_training_flags_refuse_a_changed_structure() -> None:
    model = mlp()
    old = snapshot(model)
    model.add_module("extra", nn.ReLU())
    with pytest.raises(ValueError, match="'extra' is not in the snapshot"):
        introspect.with_training_flags(old, model)


def test_to_float64_changes_every_floating_tensor() -> None:
    model = cnn()
    old = snapshot(model)
    model.to(torch.float64)
    new = snapshot(model)
    d = diff(old, new)
    assert d.parameters == TableDiff(changed=tuple(k for k, _ in model.named_parameters()))
    assert all(row.dtype == "float64" for row in new.parameters.values())
    # num_batches_tracked is int64: .to(float64) leaves it alone
    assert d.buffers.changed == tuple(k for k, b in model.named_buffers() if b.is_floating_point())
    assert "1.num_batches_tracked" not in d.buffers.changed
    assert d.modules.empty
    assert new.param_bytes == 2 * old.param_bytes


def test_batchnorm_forward_in_train_mode_changes_buffers_only() -> None:
    model = cnn().train()
    old = snapshot(model)
    model(torch.randn(4, 1, 28, 28))
    new = snapshot(model)
    d = diff(old, new)
    stats = ("running_mean", "running_var", "num_batches_tracked")
    assert d.buffers == TableDiff(changed=tuple(f"{i}.{n}" for i in (1, 5) for n in stats))
    assert d.parameters.empty
    assert d.modules.empty
    assert not d.empty  # buffers alone make a diff
    # torch moves only num_batches_tracked's _version (pytorch/pytorch#13402); the running
    # stats are caught by their checksum, which must match torch's own bytes.
    for key in d.buffers.changed:
        t = model.get_buffer(key)
        assert new.buffers[key].checksum == zlib.crc32(t.numpy().tobytes())
        assert new.buffers[key].checksum != old.buffers[key].checksum


def test_writes_through_data_are_seen() -> None:
    """Seed 003 edits weights through `.data`, which bumps no version counter."""
    model = tied()
    old = snapshot(model)
    model[0].weight.data[:] += 1
    model[0].weight.data[0, 0] = 42
    model[2].bias.data.zero_()
    new = snapshot(model)
    d = diff(old, new)
    assert d.parameters == TableDiff(changed=("0.weight", "2.bias", "4.bias"))
    assert new.parameters["0.weight"].version == old.parameters["0.weight"].version
    assert d.modules.empty and d.buffers.empty


def test_checksum_limit() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(257, 1024))  # weight: 1 MiB + 4 KiB
    snap = snapshot(model)
    assert snap.parameters["0.weight"].checksum == zlib.crc32(model[0].weight.detach().numpy())
    assert snap.parameters["1.weight"].checksum is None  # over 1 MiB: version only
    assert snap.parameters["1.bias"].checksum is not None
    off = snapshot(model, checksum_limit=0)
    assert all(row.checksum is None for row in off.parameters.values())
    # a non-contiguous tensor is hashed as its contiguous bytes
    holder = nn.Module()
    holder.register_buffer("t", torch.arange(12.0).reshape(3, 4).t())
    want = zlib.crc32(holder.t.contiguous().numpy().tobytes())
    assert snapshot(holder).buffers["t"].checksum == want
    with torch.device("meta"):
        meta = nn.Linear(4, 4)
    assert snapshot(meta).parameters["weight"].checksum is None


def test_forward_in_eval_mode_changes_nothing() -> None:
    model = cnn().eval()
    old = snapshot(model)
    with torch.no_grad():
        model(torch.randn(2, 1, 28, 28))
    assert diff(old, snapshot(model)).empty


@pytest.mark.parametrize("foreach", [False, True])
def test_backward_and_optimizer_step_show_as_changes(foreach: bool) -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=foreach)
    keys = tuple(k for k, _ in model.named_parameters())
    before = snapshot(model)
    model(torch.randn(3, 20)).square().mean().backward()
    graded = snapshot(model)
    d = diff(before, graded)
    assert d.parameters == TableDiff(changed=keys)  # has_grad flipped
    assert all(row.has_grad for row in graded.parameters.values())
    assert all(graded.parameters[k].version == before.parameters[k].version for k in keys)
    opt.step()
    stepped = snapshot(model)
    d = diff(graded, stepped)
    assert d.parameters == TableDiff(changed=keys)
    assert all(stepped.parameters[k].version > graded.parameters[k].version for k in keys)
    assert d.modules.empty and d.buffers.empty
    opt.zero_grad(set_to_none=True)
    cleared = snapshot(model)
    assert not any(row.has_grad for row in cleared.parameters.values())
    assert diff(stepped, cleared).parameters.changed == keys


def test_in_place_edit_of_a_tied_weight_changes_both_keys() -> None:
    model = tied()
    old = snapshot(model)
    with torch.no_grad():
        model[2].weight.mul_(2)
    d = diff(old, snapshot(model))
    assert d.parameters == TableDiff(changed=("2.weight", "4.weight"))


def test_lazy_module_before_and_after_its_first_forward() -> None:
    model = nn.Sequential(nn.LazyLinear(3))
    old = snapshot(model)
    weight = old.parameters["0.weight"]
    assert weight.lazy and weight.shape == () and weight.numel == 0
    assert old.total_params == 0
    assert old.modules["0"].cls == "LazyLinear"
    assert tensor_stats(model[0].weight) is None
    model(torch.randn(2, 5))
    new = snapshot(model)
    d = diff(old, new)
    assert d.modules.changed == ("0",)  # became a Linear, lazy hooks removed
    assert d.parameters.changed == ("0.weight", "0.bias")
    assert new.modules["0"].cls == "Linear"
    assert new.modules["0"].hooks == ()
    assert_matches_torch(model, new)


def test_none_children_and_parameters_are_skipped_as_torch_does() -> None:
    model = nn.Sequential(OrderedDict(a=nn.Linear(2, 2), b=nn.Linear(2, 1)))
    model.register_module("gap", None)
    model.b.register_parameter("extra", None)
    snap = snapshot(model)
    assert_matches_torch(model, snap)
    assert snap.modules[""].children == ("a", "b")
    assert list(snap.parameters) == ["a.weight", "a.bias", "b.weight", "b.bias"]


def test_a_module_containing_itself_does_not_loop() -> None:
    model = nn.Sequential(nn.Linear(2, 2))
    model.add_module("me", model)
    snap = snapshot(model)
    assert list(snap.modules) == ["", "0"]
    assert snap.modules[""].children == ("0", "me")


def test_user_extra_repr_failure_is_shown_not_raised() -> None:
    class Broken(nn.Linear):
        def extra_repr(self) -> str:
            raise ValueError("boom")

    snap = snapshot(nn.Sequential(Broken(2, 2)))
    assert snap.modules["0"].extra_repr == "<extra_repr failed: ValueError: boom>"


def test_inference_tensor_buffer_has_no_version() -> None:
    model = nn.Linear(2, 2)
    with torch.inference_mode():
        frozen = torch.zeros(3)
    model.register_buffer("frozen", frozen)
    assert snapshot(model).buffers["frozen"].version == -1


# --------------------------------------------------------------------------------------------
# hooks


def _hook(*args: object, **kwargs: object) -> None:
    return None


REGISTRATIONS = [
    ("register_forward_pre_hook", "_forward_pre_hooks"),
    ("register_forward_hook", "_forward_hooks"),
    ("register_full_backward_pre_hook", "_backward_pre_hooks"),
    ("register_full_backward_hook", "_backward_hooks"),
    ("register_state_dict_pre_hook", "_state_dict_pre_hooks"),
    ("register_state_dict_post_hook", "_state_dict_hooks"),
    ("register_load_state_dict_pre_hook", "_load_state_dict_pre_hooks"),
    ("register_load_state_dict_post_hook", "_load_state_dict_post_hooks"),
]


@pytest.mark.parametrize(("method", "dict_name"), REGISTRATIONS)
def test_hook_registration_shows_and_removal_restores(method: str, dict_name: str) -> None:
    if not hasattr(nn.Module, method) or dict_name not in HOOK_DICTS:
        pytest.skip(f"{method} is not on this torch")
    model = mlp()
    old = snapshot(model)
    handle = getattr(model[0], method)(_hook)
    new = snapshot(model)
    d = diff(old, new)
    assert d.modules == TableDiff(changed=("0",))
    assert d.parameters.empty and d.buffers.empty
    assert new.modules["0"].hooks == ((dict_name, 1),)
    assert new.modules["0"].hook_count == 1
    assert len(getattr(model[0], dict_name)) == 1  # torch agrees
    assert (
        "0",
        dict_name,
        handle.id,
        f"{__name__}._hook",
    ) in hook_rows(model)
    handle.remove()
    assert diff(old, snapshot(model)).empty
    assert hook_rows(model) == []


def test_hook_rows_name_the_callables() -> None:
    class Recorder:
        def __call__(self, *args: object) -> None:
            return None

        def method(self, *args: object) -> None:
            return None

    model = tied()
    rec = Recorder()
    handles = [
        model[0].register_forward_hook(lambda *a: None),
        model[0].register_forward_hook(rec),
        model[0].register_forward_pre_hook(rec.method),
        model[2].register_forward_hook(functools.partial(_hook, tag=1)),
        # torch wraps load-state-dict pre hooks in a _WrappedHook: name what it wraps
        model[6].register_load_state_dict_pre_hook(rec),
    ]
    try:
        rows = hook_rows(model)
        names = {(path, name): fn for path, name, _, fn in rows if name == "_forward_hooks"}
        by_id = {hid: fn for _, _, hid, fn in rows}
        assert by_id[handles[0].id].endswith("test_hook_rows_name_the_callables.<locals>.<lambda>")
        assert by_id[handles[1].id].endswith("<locals>.Recorder")
        assert by_id[handles[2].id].endswith("<locals>.Recorder.method")
        assert by_id[handles[3].id] == f"functools.partial({__name__}._hook)"
        assert by_id[handles[4].id].endswith("<locals>.Recorder")
        # the hook on the shared module is listed where it fires: at path 2 and at path 4
        assert ("2", "_forward_hooks") in names and ("4", "_forward_hooks") in names
        snap = snapshot(model)
        assert snap.modules["0"].hooks == (("_forward_pre_hooks", 1), ("_forward_hooks", 2))
        assert snap.modules["4"].hooks == (("_forward_hooks", 1),)
    finally:
        for h in handles:
            h.remove()
    assert hook_rows(model) == []


def test_global_hooks_are_listed_apart() -> None:
    from torch.nn.modules.module import register_module_forward_hook

    handle = register_module_forward_hook(_hook)
    try:
        assert ("_global_forward_hooks", handle.id, f"{__name__}._hook") in global_hook_rows()
        assert hook_rows(mlp()) == []
    finally:
        handle.remove()
    assert all(row[1] != handle.id for row in global_hook_rows())


# --------------------------------------------------------------------------------------------
# meta device: a 1.5 B-parameter model without the memory


def test_meta_model_of_48_transformer_layers() -> None:
    resource = pytest.importorskip("resource")  # peak RSS: POSIX only
    d = 1600
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.device("meta"):
        model = nn.ModuleList(nn.TransformerEncoderLayer(d, 25, 4 * d) for _ in range(48))
    snap = snapshot(model)
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux

    expected = 48 * (12 * d * d + 13 * d)
    assert snap.total_params == expected == 1_475_558_400
    assert snap.total_params == sum(p.numel() for p in model.parameters())
    assert snap.param_bytes == 4 * expected
    assert len(snap.modules) == 1 + 48 * 10
    assert len(snap.parameters) == 48 * 12
    assert {row.device for row in snap.parameters.values()} == {"meta"}
    assert_matches_torch(model, snap)
    # 5.9 GB if anything were materialised; metadata only is a few MB
    assert rss_growth * scale < 512 * 2**20
    assert tensor_stats(model[0].linear1.weight) is None
    assert diff(snap, snapshot(model)).empty


# --------------------------------------------------------------------------------------------
# values on demand


def _torch_stats(t: torch.Tensor) -> tuple[float, float, float, float, float, float]:
    x = t.detach().double().reshape(-1)
    std = x.std().item() if x.numel() > 1 else 0.0
    return (
        x.mean().item(),
        std,
        x.min().item(),
        x.max().item(),
        torch.linalg.vector_norm(x).item(),
        (x == 0).double().mean().item(),
    )


def _assert_stats(t: torch.Tensor) -> None:
    stats = tensor_stats(t)
    assert stats is not None
    assert stats.numel == t.numel()
    got = (stats.mean, stats.std, stats.min, stats.max, stats.norm, stats.zero_fraction)
    for g, w in zip(got, _torch_stats(t), strict=True):
        assert g == pytest.approx(w, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    "tensor",
    [
        torch.randn(64, 32),
        torch.randn(1000, dtype=torch.float64) * 1e-3 + 1e6,  # large mean, small spread
        torch.randn(50).half(),
        torch.randn(50).to(torch.bfloat16),
        torch.arange(-5, 17, dtype=torch.int64),
        torch.tensor(7, dtype=torch.long),  # num_batches_tracked: one int element
        torch.tensor([0, 0, 3, 0], dtype=torch.int32),
        torch.tensor([True, False, True]),
        torch.randn(6, 5).t(),  # not contiguous
        torch.tensor([2.5]),
    ],
    ids=[
        "f32",
        "f64-offset",
        "f16",
        "bf16",
        "i64",
        "i64-scalar",
        "i32-zeros",
        "bool",
        "transposed",
        "one",
    ],
)
def test_tensor_stats_match_torch(tensor: torch.Tensor) -> None:
    _assert_stats(tensor)


def test_tensor_stats_of_module_tensors() -> None:
    model = cnn()
    model(torch.randn(4, 1, 28, 28))
    for _, t in [*model.named_parameters(), *model.named_buffers()]:
        _assert_stats(t)


def test_tensor_stats_in_chunks_equal_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    t = torch.randn(1001) * 3 + 0.5
    whole = tensor_stats(t)
    monkeypatch.setattr(introspect, "_STATS_CHUNK", 64)
    chunked = tensor_stats(t)
    assert whole is not None and chunked is not None
    for field in ("mean", "std", "min", "max", "norm", "zero_fraction"):
        assert getattr(chunked, field) == pytest.approx(getattr(whole, field), rel=1e-12)
    _assert_stats(t)


def test_tensor_stats_count_nonfinite() -> None:
    stats = tensor_stats(torch.tensor([1.0, float("nan"), float("inf"), 0.0]))
    assert stats is not None
    assert stats.nonfinite == 2
    assert stats.zero_fraction == 0.25
    assert math.isnan(stats.mean)


@pytest.mark.parametrize(
    "tensor",
    [
        None,
        torch.empty(0),
        torch.empty(3, 4, device="meta"),
        torch.randn(3, dtype=torch.complex64),
        torch.randn(3, 3).to_sparse(),
    ],
    ids=["none", "empty", "meta", "complex", "sparse"],
)
def test_tensor_stats_none_where_no_values(tensor: torch.Tensor | None) -> None:
    assert tensor_stats(tensor) is None


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32),
        min_size=1,
        max_size=40,
    )
)
def test_tensor_stats_property(values: list[float]) -> None:
    _assert_stats(torch.tensor(values))


def test_grad_norms_against_torch() -> None:
    model = tied()
    model(torch.randn(5, 4)).sum().backward()
    norms = grad_norms(model)
    named = list(model.named_parameters(remove_duplicate=False))
    assert list(norms) == [k for k, _ in named]
    for key, p in named:
        assert p.grad is not None
        assert norms[key] == pytest.approx(p.grad.double().norm().item(), rel=1e-12)
    assert norms["2.weight"] == norms["4.weight"]  # one shared gradient
    model.zero_grad(set_to_none=True)
    assert grad_norms(model) == {}


def test_grad_norms_skip_params_without_grad() -> None:
    model = mlp()
    model[0].requires_grad_(False)
    model(torch.randn(2, 20)).sum().backward()
    assert set(grad_norms(model)) == {"2.weight", "2.bias"}


def test_grad_norms_of_sparse_embedding() -> None:
    emb = nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 1, 4])).sum().backward()
    assert emb.weight.grad is not None and emb.weight.grad.is_sparse
    want = emb.weight.grad.to_dense().double().norm().item()
    assert grad_norms(emb)["weight"] == pytest.approx(want, rel=1e-12)


# --------------------------------------------------------------------------------------------
# lookups


def test_module_at_resolves_paths() -> None:
    model = transformer()
    assert module_at(model, "") is model
    assert module_at(model, "layers.1.linear1") is model.layers[1].linear1
    for path, m in model.named_modules(remove_duplicate=False):
        assert module_at(model, path) is m
    t = tied()
    assert module_at(t, "2") is module_at(t, "4")


def test_module_at_errors_say_what_is_there() -> None:
    model = transformer()
    with pytest.raises(KeyError, match="'linear9'") as err:
        module_at(model, "layers.1.linear9")
    assert "layers.1 (TransformerEncoderLayer)" in str(err.value)
    assert "'linear1'" in str(err.value)
    with pytest.raises(KeyError, match="<root>"):
        module_at(model, "nope")
    with pytest.raises(KeyError):
        module_at(model, "layers.1.linear1.weight")  # a parameter, not a module


def test_state_dict_rows_match_state_dict() -> None:
    for factory in MODELS.values():
        model = factory()
        want = [(k, tuple(v.shape), _dtype(v)) for k, v in model.state_dict().items()]
        assert state_dict_rows(model) == want


def test_state_dict_rows_of_uninitialized_lazy_module() -> None:
    assert state_dict_rows(nn.LazyLinear(3)) == [
        ("weight", (), "float32 (uninitialized)"),
        ("bias", (), "float32 (uninitialized)"),
    ]


def test_rows_helpers() -> None:
    model = cnn()
    snap = snapshot(model)
    assert snap.rows("buffers") is snap.buffers
    assert [r.key for r in snap.tensors_of("1")] == [
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]
    with pytest.raises(KeyError):
        snap.rows("grads")  # type: ignore[arg-type]
    d = diff(None, snap)
    assert d.table("modules") is d.modules
