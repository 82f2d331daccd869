"""What an edit costs the engine, counted (never timed): work in proportion to what changed.

A 10,000-row model (the bench's `rows_10k`) made two costs visible: the code log named
every module path one by one (O(n²): 17 s for an undo), and the snapshot read the bytes of
every tensor again although an edit wrote none. These tests count that work.
"""

from __future__ import annotations

import pytest

from tuilab.bench.edits import wide_spec as bench_wide_spec
from tuilab.core import codelog
from tuilab.core.lab import Lab
from tuilab.core.spec import ModelSpec, Node, make_node

WIDE = 300


def wide_spec(rows: int = WIDE) -> ModelSpec:
    """A Sequential of `rows` × (Linear 4→4, ReLU): the bench's rows_10k, smaller."""
    return bench_wide_spec("wide", rows, 4)


def counting(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    """Count the calls of `module.name` (the list's length is the count)."""
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_an_undo_names_the_paths_of_a_wide_model_in_one_walk(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lab = Lab(wide_spec())
    lab.edit("add", "Dropout")
    calls = counting(monkeypatch, codelog, "is_positional")
    update = lab.edit("undo")
    assert "Dropout" not in [row.cls for row in lab.snapshot.modules.values()]
    assert update.code  # the undo is still written as PyTorch
    # one check per container and a few for the edited one, not one per path (~WIDE)
    assert len(calls) < 10


def test_module_path_exprs_agree_with_module_path_expr() -> None:
    lab = Lab(wide_spec(6))
    lab.edit("add", "Sequential")
    root = lab.spec.root
    exprs = codelog.module_path_exprs(root)
    from tuilab.core.spec import walk

    assert exprs == {path: codelog.module_path_expr(root, path) for path, _ in walk(root)}


def test_an_edit_reads_only_the_tensors_it_made() -> None:
    lab = Lab(wide_spec())
    assert lab._checksums.read == WIDE  # the first snapshot reads every weight and bias
    lab.edit("add", "Dropout")
    assert lab._checksums.read == 0  # nothing new to read; WIDE before the cache
    lab.edit("add", "Linear", args={"in_features": 4, "out_features": 4})
    assert lab._checksums.read == 2  # its weight and bias
    tensors = lab.snapshot.parameters
    lab.set_training(False)  # flags only: the tensor rows are not read again at all
    assert lab.snapshot.parameters is tensors
    lab.edit("undo")
    assert lab._checksums.read == 0


def test_writes_after_an_edit_still_show_as_changed() -> None:
    """The reuse must not hide what `_version` misses: `.data` writes, set values, the
    batch-norm kernels' running statistics (pytorch#13402)."""
    spec = ModelSpec("bn", Node(name="", block="Sequential", children=(
        make_node("Linear", "0", {"in_features": 4, "out_features": 4}),
        make_node("BatchNorm1d", "1", {"num_features": 4}))), (8, 4))
    lab = Lab(spec)
    lab.edit("add", "ReLU")  # a trusted snapshot: its CRCs come from the cache
    _, update = lab.forward()  # train mode: running stats move without a version bump
    assert {"1.running_mean", "1.running_var"} <= set(update.diff.buffers.changed)
    lab.edit("add", "Dropout")
    lab.model[0].weight.data[0, 0] += 1.0  # a fresh version counter: only the bytes tell
    assert "0.weight" in lab.refresh().diff.parameters.changed
    lab.edit("undo")
    update, _ = lab.set_value("0.bias = 1")
    assert "0.bias" in update.diff.parameters.changed


def test_a_freed_tensor_is_not_mistaken_for_its_successor() -> None:
    """Same id, same address, same size and version: only the weak reference tells a new
    tensor from a freed one, so a trusted snapshot reads it."""
    import torch
    from torch import nn

    from tuilab.core.introspect import Checksums, snapshot

    net = nn.Sequential(nn.Linear(2, 2))
    cache = Checksums()
    first = snapshot(net, checksums=cache)
    net[0].weight = nn.Parameter(torch.full((2, 2), 7.0))  # the old one is freed
    second = snapshot(net, checksums=cache, trusted=True)
    assert cache.read == 1
    assert first.parameters["0.weight"].checksum != second.parameters["0.weight"].checksum
