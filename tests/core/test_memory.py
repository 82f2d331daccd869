"""The memory plan against what PyTorch really allocates.

Exact figures where the arithmetic is plain (parameters, gradients, optimizer state, what a
Linear/ReLU stack saves for backward); the peaks against a real CPU step in a fresh process
(peak resident memory, reset through /proc/self/clear_refs, so other processes on a busy
machine do not matter), and against ``torch.cuda.max_memory_allocated`` where a GPU is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from tuilab.core.memory import free_memory, plan_memory


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))


PARAMS = (32 * 64 + 64 + 64 * 10 + 10) * 4


@pytest.mark.parametrize(("optimizer", "state"), [
    ("adam", 2 * PARAMS + 4 * 4),  # two moments, and a float32 step counter per tensor
    ("adamw", 2 * PARAMS + 4 * 4),
    ("sgd", 0),
    ("sgd-momentum", PARAMS),
])
def test_parameters_gradients_and_optimizer_state(optimizer: str, state: int) -> None:
    plan = plan_memory(_mlp(), (8, 32), optimizer=optimizer)
    assert plan.params_bytes == plan.grads_bytes == PARAMS
    assert plan.optimizer_bytes == state
    # Activations are freed during backward as gradients appear: never all at once.
    assert plan.train_peak_bytes >= PARAMS + PARAMS + state
    assert plan.train_peak_bytes >= PARAMS + state + plan.activations_bytes
    assert plan.foreach_train_peak_bytes >= plan.train_peak_bytes - PARAMS  # same step
    assert plan.forward_peak_bytes < plan.train_peak_bytes


def test_saved_activations_per_layer() -> None:
    plan = plan_memory(_mlp(), (8, 32), optimizer="sgd")
    by_layer = plan.activations_by_layer
    assert by_layer["0"] == 8 * 32 * 4  # the first Linear saves its input
    assert by_layer["1"] == 8 * 64 * 4  # ReLU saves its output, which the next Linear reuses
    assert "2" not in by_layer  # ... so the second Linear saves nothing new
    assert plan.activations_bytes == sum(by_layer.values())


def test_frozen_parameters_have_no_gradient_or_state() -> None:
    model = _mlp()
    model[0].requires_grad_(False)
    plan = plan_memory(model, (8, 32), optimizer="sgd-momentum")
    assert plan.grads_bytes == plan.optimizer_bytes == (64 * 10 + 10) * 4


def test_dtype_halves_the_bytes_and_the_model_is_untouched() -> None:
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = plan_memory(model, (8, 32), dtype=torch.bfloat16)
    assert plan.dtype == "bfloat16" and plan.params_bytes == PARAMS // 2
    assert all(p.grad is None and p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fits_reads_each_device_s_free_memory() -> None:
    plan = plan_memory(_mlp(), (8, 32), free={"cpu": 10**12, "cuda:0": 10})
    assert plan.fits == {"cpu": True, "cuda:0": False}
    assert plan.to_json()["fits"] == {"cpu": True, "cuda:0": False}
    assert free_memory()["cpu"] > 0


def test_tied_weights_counted_once() -> None:
    from tuilab.bench.zoo import TiedLM

    model = TiedLM()
    plan = plan_memory(model, (2, 16), takes_tokens=True)
    assert plan.params_bytes == sum(p.numel() for p in model.parameters()) * 4


# --- against a real step ------------------------------------------------------------------------
REAL_STEP = textwrap.dedent("""
    import gc, json, sys
    import torch
    from torch import nn
    from tuilab.core.memory import _loss, _make_optimizer, plan_memory

    def status(key):
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

    kind, optimizer = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    if kind == "mlp":  # parameters and Adam's state dominate
        model = nn.Sequential(*[nn.Sequential(nn.Linear(2048, 2048), nn.ReLU())
                                for _ in range(12)], nn.Linear(2048, 10))
        shape = (64, 2048)
    else:  # activations dominate
        model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                              nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
        shape = (32, 3, 128, 128)
    plan = plan_memory(model, shape, optimizer=optimizer)
    x = torch.rand(shape)
    opt = _make_optimizer(optimizer, list(model.parameters()), False)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # peak resident memory := current
    before = status("VmRSS:")
    for _ in range(2):
        loss = _loss(model(x))
        loss.backward()
        del loss
        opt.step()
        opt.zero_grad(set_to_none=True)
    grown = status("VmHWM:") - before
    held = plan.params_bytes + plan.buffers_bytes + x.numel() * 4
    print(json.dumps({"plan": plan.train_peak_bytes, "real": held + grown}))
""")


def _can_reset_peak_rss() -> bool:
    return Path("/proc/self/clear_refs").exists()


@pytest.mark.skipif(not _can_reset_peak_rss(), reason="needs Linux /proc/self/clear_refs")
@pytest.mark.parametrize(("kind", "optimizer"), [("mlp", "adam"), ("conv", "sgd-momentum")])
def test_training_peak_within_25_percent_of_a_real_cpu_step(kind: str, optimizer: str) -> None:
    """A real step of a model of several hundred MB, in a fresh process: its peak resident
    memory against the plan's peak (both include the weights)."""
    done = subprocess.run([sys.executable, "-c", REAL_STEP, kind, optimizer],
                          capture_output=True, text=True, timeout=600, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["real"] > 300 * 1024**2  # the model dominates the process
    assert abs(figures["plan"] - figures["real"]) <= 0.25 * figures["real"], figures


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_peak_within_25_percent_of_cuda() -> None:
    from tuilab.bench.zoo import ViTish
    from tuilab.core.memory import _loss

    torch.manual_seed(0)
    model = ViTish(image=64, dim=256, depth=6, heads=8)
    shape = (64, 3, 64, 64)
    plan = plan_memory(model, shape, optimizer="adamw")
    model = model.cuda()
    x = torch.rand(shape, device="cuda")
    opt = torch.optim.AdamW(model.parameters())  # foreach, PyTorch's default on CUDA
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        _loss(model(x)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    real = torch.cuda.max_memory_allocated()
    assert abs(plan.foreach_train_peak_bytes - real) <= 0.25 * real, (plan, real)


def test_lazy_layers_get_their_sizes_before_the_plan_counts_them() -> None:
    model = nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, 2))
    plan = plan_memory(model, (4, 8), optimizer="sgd", forward_peak=123)
    assert plan.params_bytes == (8 * 16 + 16 + 16 * 2 + 2) * 4
    assert plan.forward_peak_bytes == 123  # the caller's figure is kept
    assert isinstance(model[0], nn.LazyLinear)  # the caller's module stays lazy
