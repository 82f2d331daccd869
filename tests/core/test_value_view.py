"""core.value_view: what the values view draws, checked against PyTorch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tuilab.core.expressions import ExpressionError
from tuilab.core.value_view import (
    SAMPLE_LIMIT,
    assignment_text,
    default_path,
    input_row,
    value_view,
)


def test_assignment_text() -> None:
    assert assignment_text("2.weight", "[0, 0] = 100") == "2.weight[0, 0] = 100"
    assert assignment_text("2.bias", "= 0") == "2.bias = 0"
    assert assignment_text("2.bias", "torch.zeros(8)") == "2.bias = torch.zeros(8)"
    assert assignment_text("2.bias", "4.bias = 1") == "4.bias = 1"
    assert assignment_text("w", "torch.tensor([1], dtype=torch.float)") == \
        "w = torch.tensor([1], dtype=torch.float)"


def test_parameter_view_is_torch_repr_with_its_grad_and_ties() -> None:
    torch.manual_seed(0)
    shared = nn.Linear(3, 3)
    net = nn.Sequential(nn.Linear(2, 3), shared, nn.ReLU(), shared)
    net(torch.ones(1, 2)).sum().backward()
    view = value_view(net, "net[1].weight[0]")
    assert view.values == repr(net[1].weight.detach()[0])
    assert view.grad == repr(net[1].weight.grad[0])
    assert view.title == "parameter 1.weight[0] · the same tensor as 3.weight"
    assert view.target == "1.weight" and not view.is_matrix
    assert sum(view.counts) == 3


def test_input_and_output_names_and_errors() -> None:
    net = nn.Sequential(nn.Identity())
    x = torch.arange(4.0)
    assert value_view(net, "x", input_tensor=x).values == repr(x)
    with pytest.raises(ExpressionError, match="after a forward pass"):
        value_view(net, "out")
    assert value_view(net, "out[1:]", outputs={"": x}).values == repr(x[1:])
    with pytest.raises(ExpressionError, match="out of range"):
        value_view(net, "x[9]", input_tensor=x)


def test_a_large_tensor_is_summarised_and_its_charts_sampled() -> None:
    big = nn.Linear(4096, 1024, bias=False)
    view = value_view(nn.Sequential(big), "0.weight")
    assert view.sampled and "..." in view.values and len(view.values) < 5000
    assert view.stats.startswith("4,194,304 elements (statistics of a strided sample of ")
    assert sum(view.counts) <= SAMPLE_LIMIT and view.heat and len(view.heat) <= 16


def test_meta_tensor_has_no_values() -> None:
    net = nn.Sequential(nn.Linear(4, 4, device="meta"))
    view = value_view(net, "0.weight")
    assert "no values" in view.values and view.heat == [] and view.counts == []


def test_default_path_and_input_row() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Sequential(nn.Linear(2, 1)))
    assert default_path(net, "0") == "0.weight"
    assert default_path(net, "1") == "1"
    assert default_path(net, "1", {"1": torch.ones(1)}) == "1"
    assert default_path(net, "2") == "2.0.weight"
    assert default_path(net, "") == "0.weight"
    row = input_row(torch.arange(9.0).view(3, 3), "torch.arange(9.).view(3, 3)")
    assert row[:4] == ("x (input)", "torch.arange(9.).view(3, 3)", "(3, 3)", "4")
