"""What an edit costs the engine, counted (never timed): work in proportion to what changed.

A 10,000-row model (the bench's `rows_10k`) made two costs visible: the code log named
every module path one by one (O(n²): 17 s for an undo), and the snapshot read the bytes of
every tensor again although an edit wrote none. These tests count that work.
"""

from __future__ import annotations

import pytest

from tuilab.core import codelog
from tuilab.core.lab import Lab
from tuilab.core.spec import ModelSpec, Node, make_node

WIDE = 300


def wide_spec(rows: int = WIDE) -> ModelSpec:
    """A Sequential of `rows` × (Linear 4→4, ReLU), like the bench's rows_10k, smaller."""
    linear = make_node("Linear", "0", {"in_features": 4, "out_features": 4})
    relu = make_node("ReLU", "1")
    children = tuple(
        Node(name=str(i), block=(linear if i % 2 == 0 else relu).block,
             args=(linear if i % 2 == 0 else relu).args)
        for i in range(rows))
    return ModelSpec("wide", Node(name="", block="Sequential", children=children), (2, 4))


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
