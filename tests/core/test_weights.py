"""tuilab.core.weights: round trips checked against state_dict, refusals against real attacks."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from tuilab.core import weights
from tuilab.core.weights import (
    LoadReport,
    WeightsError,
    check_weights,
    load_weights,
    read_weights,
    save_weights,
)


def _net(seed: int, hidden: int = 8) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 3)
    )


def _tied(seed: int) -> nn.Sequential:
    """The seed text's parameter-tying net: one `shared` layer used at positions 2 and 4."""
    torch.manual_seed(seed)
    shared = nn.Linear(8, 8)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(),
                         nn.Linear(8, 1))


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _bit_identical(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    current = model.state_dict()
    raw = lambda t: t.reshape(-1).view(torch.uint8)  # noqa: E731  (bits, so NaN == NaN)
    return current.keys() == state.keys() and all(
        current[k].dtype == state[k].dtype and torch.equal(raw(current[k]), raw(state[k]))
        for k in state
    )


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_safetensors_round_trip_equals_state_dict(tmp_path: Path) -> None:
    source = _net(0)
    source.train()(torch.randn(16, 4))  # BatchNorm running stats and num_batches_tracked move
    path = tmp_path / "net.safetensors"
    save_weights(source, path)
    assert _no_temp_files(tmp_path)

    state = read_weights(path)
    assert state.keys() == source.state_dict().keys()
    for key, value in source.state_dict().items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value)

    target = _net(1)
    assert not torch.equal(target[0].weight, source[0].weight)
    report = load_weights(target, path)
    assert report.ok and set(report.loaded) == set(source.state_dict())
    assert len(source.state_dict()) == 9  # 2 Linear x (weight, bias) + BatchNorm's 5
    assert report.describe() == "The weights fit the model: all 9 tensors match."
    assert _bit_identical(target, _clone_state(source))


def test_tied_weights_round_trip_and_stay_tied(tmp_path: Path) -> None:
    source = _tied(0)
    path = tmp_path / "tied.safetensors"
    save_weights(source, path)
    with safe_open(path, framework="pt") as handle:
        keys, metadata = set(handle.keys()), handle.metadata()
    assert "2.weight" in keys and "4.weight" not in keys  # stored once
    assert metadata["4.weight"] == "2.weight" and metadata["4.bias"] == "2.bias"

    state = read_weights(path)
    assert state.keys() == source.state_dict().keys()
    assert state["4.weight"] is state["2.weight"]

    target = _tied(1)
    assert load_weights(target, path).ok
    assert target[2].weight is target[4].weight
    assert _bit_identical(target, _clone_state(source))
    with torch.no_grad():
        target[2].weight[0, 0] = 42.0  # changing one changes both, as in the seed text
    assert target[4].weight[0, 0] == 42.0

    # The same file loads into an untied copy of the architecture: both layers get the values.
    untied = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                           nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    assert load_weights(untied, path).ok
    assert torch.equal(untied[4].weight, source[2].weight)


def test_tied_files_interoperate_with_safetensors_save_and_load_model(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    save_weights(_tied(0), ours)
    model = _tied(1)
    missing, unexpected = load_model(model, ours)
    assert not missing and not unexpected
    assert _bit_identical(model, _clone_state(_tied(0)))

    save_model(_tied(2), theirs)
    target = _tied(3)
    assert load_weights(target, theirs).ok
    assert _bit_identical(target, _clone_state(_tied(2)))


def test_file_lacking_a_tied_name_still_loads(tmp_path: Path) -> None:
    state = {k: v for k, v in _tied(0).state_dict().items() if not k.startswith("4.")}
    torch.save(state, tmp_path / "partial_names.pt")
    target = _tied(1)
    report = load_weights(target, tmp_path / "partial_names.pt")
    assert report.ok and "4.weight" in report.loaded
    assert torch.equal(target[4].weight, state["2.weight"])


def test_wrong_model_raises_and_leaves_every_tensor_bit_identical(tmp_path: Path) -> None:
    path = tmp_path / "net.safetensors"
    save_weights(_net(0, hidden=8), path)
    target = _net(1, hidden=6)  # first Linear in_features match, the rest do not
    before = _clone_state(target)

    # The hazard this guards against: torch copies matching tensors before it raises.
    victim = _net(1, hidden=6)
    victim_before = _clone_state(victim)
    state = read_weights(path)
    state["0.weight"] = torch.zeros(6, 4)
    with pytest.raises(RuntimeError):
        victim.load_state_dict(state)
    assert not _bit_identical(victim, victim_before)

    with pytest.raises(WeightsError) as caught:
        load_weights(target, path)
    assert _bit_identical(target, before)
    message = str(caught.value)
    assert "net.safetensors" in message and "do not fit this model" in message
    assert "0.weight is (6, 4) in the model, (8, 4) in the file" in message


def test_report_lists_missing_unexpected_and_mismatched() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    state = {
        "0.weight": torch.zeros(3, 2),
        "1.weight": torch.zeros(1, 4),
        "extra": torch.zeros(1),
    }
    before = _clone_state(model)
    report = check_weights(model, state)
    assert report == LoadReport(
        missing=("0.bias", "1.bias"),
        unexpected=("extra",),
        mismatched=(("1.weight", (1, 3), (1, 4)),),
        loaded=("0.weight",),
    )
    assert not report.ok
    text = report.describe()
    assert text.splitlines()[0] == (
        "The weights do not fit this model: 2 missing, 1 unexpected, 1 with the wrong shape; "
        "1 of the model's 4 tensors match."
    )
    assert "missing from the file: 0.bias, 1.bias" in text
    assert "in the file but not in the model: extra" in text
    assert _bit_identical(model, before)
    with pytest.raises(WeightsError, match="dict of names to tensors"):
        check_weights(model, {"0.weight": [1.0]})


def test_partial_load_takes_only_matching_keys(tmp_path: Path) -> None:
    source = _net(0, hidden=8)
    path = tmp_path / "net.safetensors"
    save_weights(source, path)
    target = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5))
    before = _clone_state(target)
    report = load_weights(target, path, partial=True)
    assert not report.ok
    assert {m[0] for m in report.mismatched} == {"3.weight", "3.bias"}
    assert set(report.loaded) == set(source.state_dict()) - {"3.weight", "3.bias"}
    for key in report.loaded:
        assert torch.equal(target.state_dict()[key], source.state_dict()[key])
    assert torch.equal(target[3].weight, before["3.weight"])
    assert torch.equal(target[3].bias, before["3.bias"])


def test_dtype_is_cast_to_the_model(tmp_path: Path) -> None:
    source = _net(0).double()
    path = tmp_path / "d.safetensors"
    save_weights(source, path)
    assert read_weights(path)["0.weight"].dtype == torch.float64
    target = _net(1)
    load_weights(target, path)
    assert target[0].weight.dtype == torch.float32
    assert torch.equal(target[0].weight, source[0].weight.float())
    assert target[1].num_batches_tracked.dtype == torch.int64


def test_lazy_module_takes_the_file_shape(tmp_path: Path) -> None:
    path = tmp_path / "lazy.safetensors"
    save_weights(nn.Linear(5, 2), path)
    lazy = nn.LazyLinear(2)
    with pytest.raises(WeightsError, match="not materialised yet"):
        save_weights(lazy, tmp_path / "nope.safetensors")
    assert load_weights(lazy, path).ok
    assert lazy.weight.shape == (5, 2)[::-1]
    assert not (tmp_path / "nope.safetensors").exists() and _no_temp_files(tmp_path)


def test_overlapping_views_are_saved_apart(tmp_path: Path) -> None:
    model = nn.Module()
    base = torch.arange(6.0)
    model.register_buffer("a", base[:4])
    model.register_buffer("b", base[2:])
    save_weights(model, tmp_path / "v.safetensors")
    state = read_weights(tmp_path / "v.safetensors")
    assert torch.equal(state["a"], torch.arange(4.0)) and torch.equal(state["b"], base[2:])


def test_pt_state_dicts_are_read_with_weights_only(tmp_path: Path) -> None:
    source = _net(0)
    torch.save(source.state_dict(), tmp_path / "sd.pt")
    torch.save({"epoch": 3, "state_dict": source.state_dict()}, tmp_path / "ckpt.pth")
    for name in ("sd.pt", "ckpt.pth"):
        target = _net(1)
        assert load_weights(target, tmp_path / name).ok
        assert _bit_identical(target, _clone_state(source))

    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match=r"list\.pt: holds list, not a state_dict"):
        read_weights(tmp_path / "list.pt")
    torch.save({"w": torch.zeros(1), "epoch": 3}, tmp_path / "mixed.pt")
    with pytest.raises(WeightsError, match=r"entry 'epoch' is int, not a tensor"):
        read_weights(tmp_path / "mixed.pt")


class _Evil:
    """Unpickling this calls open(marker, 'w'): code from the file would create the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("force_unsafe_env", [False, True])
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_malicious_pickle_is_refused_and_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, force_unsafe_env: bool, fmt: str
) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    payload = {"0.weight": _Evil(marker)}
    if fmt == "zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    if force_unsafe_env:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    model = nn.Sequential(nn.Linear(4, 8))
    before = _clone_state(model)
    with pytest.raises(WeightsError, match="refuses to run code from it"):
        load_weights(model, path)
    assert not marker.exists()
    assert _bit_identical(model, before)


def test_malicious_pickle_would_run_without_the_guard(tmp_path: Path) -> None:
    """The oracle for the test above: the same payload does create the marker when unpickled."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(_Evil(marker))).close()
    assert marker.exists()


def test_truncated_and_corrupt_files_raise_weights_error(tmp_path: Path) -> None:
    good = tmp_path / "good.safetensors"
    save_weights(_net(0), good)
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) - 20])
    with pytest.raises(WeightsError, match=r"cut\.safetensors: not a valid safetensors file"):
        read_weights(cut)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(WeightsError, match=r"junk\.safetensors: not a valid safetensors"):
        load_weights(_net(0), tmp_path / "junk.safetensors")

    torch.save(_net(0).state_dict(), tmp_path / "sd.pt")
    pt = (tmp_path / "sd.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(pt[: len(pt) // 2])
    with pytest.raises(WeightsError, match=r"cut\.pt: cannot be read as a PyTorch file"):
        read_weights(tmp_path / "cut.pt")

    with pytest.raises(WeightsError, match=r"absent\.safetensors: no such file"):
        read_weights(tmp_path / "absent.safetensors")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"reads \.safetensors files.*not \.onnx"):
        read_weights(onnx)


def test_save_refuses_pt_and_other_suffixes(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"tuilab saves weights as safetensors, not \.pt.*"
                                           r"save to m\.safetensors instead"):
        save_weights(_net(0), tmp_path / "m.pt")
    with pytest.raises(WeightsError, match=r"must end in \.safetensors"):
        save_weights(_net(0), tmp_path / "m.weights")
    with pytest.raises(WeightsError, match="does not exist"):
        save_weights(_net(0), tmp_path / "no" / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "net.safetensors"
    save_weights(_net(0), path)
    old = path.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(weights, "save_file", broken_save)
    with pytest.raises(WeightsError, match=r"net\.safetensors: could not be written: disk full"):
        save_weights(_net(1), path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.safetensors"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_model_saves_and_loads_onto_its_device(tmp_path: Path) -> None:
    source = _tied(0).cuda()
    save_weights(source, tmp_path / "gpu.safetensors")
    target = _tied(1).cuda()
    assert load_weights(target, tmp_path / "gpu.safetensors").ok
    assert target[2].weight.device.type == "cuda" and target[2].weight is target[4].weight
    assert _bit_identical(target.cpu(), _clone_state(source.cpu()))
