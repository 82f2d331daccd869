"""Counting real architectures: parameters, MACs and weight ties against PyTorch itself.

The models come from :mod:`tuilab.bench.zoo`: hand-written ResNet/ViT-style modules (attention
as ``q @ k.T``, SDPA, einsum and bmm), a weight-tied LM, and GPT-2/BERT/Llama built by
transformers from tiny configs (random weights, offline; skipped where transformers is not
installed). The oracle for MACs is ``FlopCounterMode`` ÷ 2 on a real CPU forward of the
explicit-matmul variant (its registry does not price the CPU's fused SDPA kernel).
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from tuilab.bench.zoo import TiedLM, ViTish, ZooModel, build, reference_macs, zoo
from tuilab.core.flops import MacCounter
from tuilab.core.shapes import summarize_module

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = zoo()


def _rows(summary):  # type: ignore[no-untyped-def]
    return {layer.path: layer for layer in summary.layers}


@pytest.mark.parametrize("entry", MODELS, ids=[m.name for m in MODELS])
def test_params_and_macs_match_pytorch(entry: ZooModel) -> None:
    model = build(entry, "native")
    summary = summarize_module(model, entry.input_shape, takes_tokens=entry.takes_tokens)
    assert summary.error is None
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    reference = reference_macs(entry)
    assert reference > 0
    assert abs(summary.total_macs - reference) <= 0.02 * reference


def test_transformers_models_are_in_the_check() -> None:
    pytest.importorskip("transformers")
    names = {m.name for m in MODELS}
    assert {"gpt2 (transformers)", "bert (transformers)", "llama (transformers)"} <= names


@pytest.mark.parametrize("entry", [m for m in MODELS if m.tied],
                         ids=[m.name for m in MODELS if m.tied])
def test_tied_weights_marked_on_both_rows(entry: ZooModel) -> None:
    model = build(entry, "native")
    first, second = entry.tied  # type: ignore[misc]
    assert model.get_parameter(first) is model.get_parameter(second)
    rows = _rows(summarize_module(model, entry.input_shape, takes_tokens=entry.takes_tokens))
    head, embed = first.rpartition(".")[0], second.rpartition(".")[0]
    assert rows[head].shared_with == second and rows[head].tied_params == ("weight",)
    assert rows[embed].shared_with == first and rows[embed].tied_params == ("weight",)
    untied = [r for r in rows.values() if r.path not in (head, embed)]
    assert all(not r.tied_params for r in untied)


def test_tied_weight_in_json_and_counted_once() -> None:
    model = TiedLM()
    summary = summarize_module(model, (2, 16), takes_tokens=True)
    data = {row["path"]: row for row in summary.to_json()["layers"]}
    assert data["head"]["shared_with"] == "embed.weight"
    assert data["head"]["tied_params"] == ["weight"]
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    every = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert summary.total_params < every


def test_functional_attention_is_charged_to_the_module_that_ran_it() -> None:
    """Before the operator-level counter, a ViT's attention products counted 0."""
    rows = _rows(summarize_module(ViTish("sdpa", depth=1), (2, 3, 32, 32)))
    tokens, dim = 65, 64
    projections = 2 * tokens * (dim * 3 * dim + dim * dim)
    products = 2 * tokens * tokens * dim * 2  # QKᵀ and weights × V over all heads
    assert rows["blocks.0.attn"].macs == projections + products
    assert rows["blocks.0.attn.qkv"].macs == 2 * tokens * dim * 3 * dim


def test_foreign_linear_layer_counts() -> None:
    """A layer of no known type doing ``addmm`` (transformers' Conv1D) is counted."""

    class Conv1D(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(8, 5))
            self.bias = nn.Parameter(torch.zeros(5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.addmm(self.bias, x.view(-1, 8), self.weight).view(*x.shape[:-1], 5)

    assert summarize_module(Conv1D(), (2, 3, 8)).total_macs == 2 * 3 * 8 * 5


def test_multihead_attention_keeps_its_exact_figure() -> None:
    n, length, e = 2, 7, 16

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(e, 4, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x)[0]

    summary = summarize_module(SelfAttention(), (n, length, e))
    assert summary.error is None
    assert summary.total_macs == n * (4 * length * e * e + 2 * length * length * e)


def test_counter_outside_any_module_and_opaque_skip() -> None:
    counter = MacCounter(lambda: "x")
    a = torch.empty(3, 4, device="meta")
    with counter:
        torch.einsum("ij,jk->ik", a, torch.empty(4, 5, device="meta"))
    assert counter.macs == {"x": 3 * 4 * 5}
    skipping = MacCounter(lambda: None)
    with skipping:
        a @ torch.empty(4, 5, device="meta")
    assert skipping.macs == {}
