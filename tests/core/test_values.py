"""Finding, formatting and summarising tensors, checked against torch itself."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tuilab.core.expressions import ExpressionError
from tuilab.core.values import (
    describe_json,
    format_tensor,
    heatmap_data,
    histogram_data,
    resolve,
    statistics,
    tensor_info,
)


def shared_net() -> nn.Sequential:
    torch.manual_seed(0)
    shared = nn.Linear(8, 8)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(),
                         nn.Linear(8, 1), nn.BatchNorm1d(1))


def test_resolve_parameters_buffers_grads_and_ties() -> None:
    net = shared_net()
    found = resolve(net, "net[2].bias")
    assert found.tensor is net[2].bias and found.kind == "parameter"
    assert found.paths == ("2.bias", "4.bias")
    assert resolve(net, "4.weight").paths == ("2.weight", "4.weight")
    assert torch.equal(resolve(net, "0.weight[0, :2]").tensor, net[0].weight.detach()[0, :2])
    assert resolve(net, "7.running_mean").kind == "buffer"
    grad = resolve(net, "0.weight.grad")
    assert grad.kind == "grad" and grad.tensor is None
    net(torch.ones(2, 4)).sum().backward()
    assert torch.equal(resolve(net, "0.weight.grad").tensor, net[0].weight.grad)


def test_resolve_layer_outputs_and_errors() -> None:
    net = shared_net()
    outputs = {"2": torch.arange(4.)}
    assert torch.equal(resolve(net, "2", outputs=outputs).tensor, torch.arange(4.))
    assert resolve(net, "net[2][1:3]", outputs=outputs).tensor.tolist() == [1., 2.]
    with pytest.raises(ExpressionError, match="no parameter or buffer 'wieght'"):
        resolve(net, "0.wieght")
    with pytest.raises(ExpressionError, match="no module"):
        resolve(net, "9.weight")
    with pytest.raises(ExpressionError, match="after a forward pass"):
        resolve(net, "3")
    with pytest.raises(ExpressionError, match="out of range"):
        resolve(net, "0.bias[99]")


def test_format_is_torch_repr_and_summarised() -> None:
    small = torch.arange(9.).view(3, 3)
    assert format_tensor(small) == repr(small)
    big = torch.arange(100_000.).view(100, 1000)
    text = format_tensor(big)
    assert "..." in text and len(text) < 2000
    assert torch._tensor_str.PRINT_OPTS.threshold == 1000  # global left alone
    with torch.device("meta"):
        meta = torch.empty(3, 3)
    assert "no values" in format_tensor(meta)
    assert "no gradient" in format_tensor(None)


def test_info_statistics_heatmap_histogram() -> None:
    x = torch.tensor([[1., -2.], [0., 5.]], requires_grad=True)
    y = x * 2
    info = tensor_info(y)
    assert info.shape == (2, 2) and info.requires_grad and info.grad_fn == "MulBackward0"
    stats = statistics(x)
    x = x.detach()
    assert stats["mean"] == pytest.approx(float(x.mean()))
    assert stats["std"] == pytest.approx(float(x.std(correction=0)))
    assert stats["zero_fraction"] == 0.25 and stats["norm"] == pytest.approx(float(x.norm()))
    grid = torch.arange(64.).view(8, 8)
    cells = heatmap_data(grid, rows=4, cols=2)
    expected = torch.nn.functional.avg_pool2d(grid[None], (2, 4))[0]
    assert torch.allclose(torch.tensor(cells, dtype=torch.float32), expected)
    assert heatmap_data(torch.ones(3), rows=10, cols=10) == [[1.0, 1.0, 1.0]]
    edges, counts = histogram_data(torch.tensor([0., 1., 1., 2., float("nan")]), bins=2)
    assert edges == [0.0, 1.0, 2.0] and sum(counts) == 4
    assert describe_json(torch.tensor([1.0, float("inf")])) == {
        "shape": [2], "dtype": "float32", "values": [1.0, "inf"]}


def test_meta_tensors_have_no_values() -> None:
    with torch.device("meta"):
        net = nn.Sequential(nn.Linear(4000, 4000))
    found = resolve(net, "0.weight[0, :5]")
    assert found.tensor is not None and found.tensor.is_meta
    assert "no values" in format_tensor(found.tensor)
    assert statistics(net[0].weight) == {"numel": 16_000_000.0}
    assert heatmap_data(net[0].weight, rows=4, cols=4) == []
    assert histogram_data(net[0].weight) == ([], [])
    assert describe_json(net[0].weight)["values"] is None
