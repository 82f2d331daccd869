"""Scale of inspection: the meta-device summary against materialising the model (torchinfo's way).

Each measurement runs in a fresh child process (`python -m tuilab.bench.scale KIND MODEL`),
because peak memory can only be read per process: the child reports its own high-water mark
(VmHWM from /proc/self/status, else ru_maxrss) and the seconds of the operation itself, the
interpreter start and the torch import being the same whichever way a model is inspected.
A `baseline` child (imports only) gives the floor that both ways start from.

* `summary`: `shapes.summarize_spec(spec)`: the tree, every output shape and parameter count,
  found on the meta device without allocating a weight.
* `real`: what torchinfo does: build the module on the CPU (allocating and initialising every
  weight), then one forward pass under `no_grad` with a forward hook on every module
  recording its output shape, hooks removed afterwards.

Models: the `gpt2_xl` preset (1.6 B parameters, ~6.5 GB in float32) and a 7 B-class decoder
stack built here with the SpecEditor: 32 layers, d_model 4096, 32 heads, vocabulary 32,000.
PyTorch's TransformerEncoderLayer has a plain (not gated) feed-forward, so dim_feedforward is
16,384 (not LLaMA's 11,008 x 3 matrices) to reach ~6.7 B parameters. Materialising it would
need ~27 GB in float32, more than this machine has: its `real` row is reported, not run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuilab.bench.harness import Comparison

if TYPE_CHECKING:
    from tuilab.core.spec import ModelSpec

MODELS = ("gpt2_xl", "decoder_7b")
GOAL_SECONDS = 2.0
GOAL_BYTES = 2**30
# The real build needs the weights plus activations and the allocator's slack; only try it
# when the kernel says this much more than the weights is free.
REAL_HEADROOM = 1.6
REAL_ROUNDS = 1


def decoder_7b_spec() -> ModelSpec:
    """The 7 B-parameter decoder stack, built edit by edit as a user would in the app."""
    from tuilab.core.edits import SpecEditor
    from tuilab.core.spec import ModelSpec, make_node

    spec = ModelSpec(name="decoder_7b", root=make_node("Sequential", ""),
                     input_shape=(1, 4096), task="tokens",
                     description="7 B-class decoder: 32 layers, d_model 4096, 32 heads")
    editor = SpecEditor(spec)
    editor.add("Embedding", name="embed", args={"num_embeddings": 32000, "embedding_dim": 4096})
    editor.add("PositionalEmbedding", name="position", args={"max_len": 4096, "d_model": 4096})
    editor.add("TransformerEncoder", name="layers", args={
        "d_model": 4096, "nhead": 32, "dim_feedforward": 16384, "dropout": 0.0,
        "activation": "gelu", "norm_first": True, "num_layers": 32, "causal": True})
    editor.add("LayerNorm", name="norm", args={"normalized_shape": [4096]})
    editor.add("Linear", name="head", args={"in_features": 4096, "out_features": 32000,
                                            "bias": False})
    return editor.spec


def load_model_spec(name: str) -> ModelSpec:
    if name == "decoder_7b":
        return decoder_7b_spec()
    from tuilab.core.workspace import load_preset

    return load_preset(name)


# --- the child process -----------------------------------------------------------------------
def peak_bytes() -> int:
    """This process's peak resident memory."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _summary(spec: ModelSpec) -> dict[str, Any]:
    from tuilab.core.shapes import summarize_spec

    summary = summarize_spec(spec)
    if summary.error is not None:
        raise RuntimeError(f"{spec.name}: {summary.error.message}")
    return {"params": summary.total_params, "rows": len(summary.layers),
            "method": summary.method}


def _real(spec: ModelSpec) -> dict[str, Any]:
    """torchinfo's way: real weights, a real forward, a hook per module."""
    import torch

    from tuilab.core.build import build
    from tuilab.core.shapes import make_input

    model = build(spec, device="cpu")
    model.eval()
    shapes: list[tuple[str, tuple[int, ...]]] = []
    names = {id(m): n for n, m in model.named_modules()}

    def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output
        if isinstance(out, torch.Tensor):
            shapes.append((names.get(id(module), "?"), tuple(out.shape)))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        x = make_input(spec.input_shape, takes_tokens=spec.takes_tokens,
                       vocab_size=spec.vocab_size)
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return {"params": params, "rows": len(shapes), "method": "cpu"}


def child_main(kind: str, model: str) -> dict[str, Any]:
    """One measurement, in this (fresh) process; printed as JSON by `main`."""
    # The imports are the floor every way of inspecting pays: outside the clock.
    import torch  # noqa: F401

    from tuilab.core import build, shapes  # noqa: F401

    result: dict[str, Any] = {"kind": kind, "model": model}
    # The clock includes reading (or, for the 7 B stack, editing together) the spec: both
    # ways start from the model's description, and one-time costs (torch._dynamo is imported
    # the first time an Embedding is initialised on meta) land where they fall.
    start = time.perf_counter()
    spec = load_model_spec(model) if kind != "baseline" else None
    if kind == "summary":
        assert spec is not None
        result.update(_summary(spec))
    elif kind == "real":
        assert spec is not None
        result.update(_real(spec))
    elif kind != "baseline":
        raise SystemExit(f"unknown kind {kind!r}")
    result["seconds"] = time.perf_counter() - start
    if kind == "summary":
        # Again in the same process: what each later summary costs (the app re-summarises
        # after every edit), once PyTorch's one-time imports are paid.
        again = time.perf_counter()
        _summary(load_model_spec(model))
        result["warm_seconds"] = time.perf_counter() - again
    result["peak_bytes"] = peak_bytes()
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tuilab.bench.scale {baseline|summary|real} MODEL",
              file=sys.stderr)
        return 2
    print(json.dumps(child_main(args[0], args[1])))
    return 0


# --- the parent ---------------------------------------------------------------------------
def run_child(kind: str, model: str, *, timeout: float = 600.0) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its JSON line, plus the wall time."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tuilab.bench.scale", kind, model],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{kind} {model} failed ({done.returncode}): {tail[0]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = wall
    return result


def param_bytes(model: str) -> int:
    """float32 bytes of the model's parameters, counted on the meta device."""
    from tuilab.core.build import build

    meta = build(load_model_spec(model), device="meta")
    unique = {id(p): p for p in meta.parameters()}.values()
    return sum(p.numel() * p.element_size() for p in unique)


def can_materialise(model: str, available: int | None) -> tuple[bool, str]:
    """Whether the real build fits in the memory free now, and if not, the sentence why."""
    need = param_bytes(model)
    if available is None:
        return False, "free memory unknown (no /proc/meminfo): not tried"
    if need * REAL_HEADROOM > available:
        return False, (f"needs {need / 2**30:.1f} GiB for float32 weights alone; "
                       f"{available / 2**30:.1f} GiB free: not materialisable here")
    return True, f"{need / 2**30:.1f} GiB of float32 weights"


def measure_model(model: str, *, rounds: int, real: bool,
                  available: int | None) -> dict[str, Any]:
    """Summary (several rounds) and, when asked and possible, the real way alongside."""
    time_cmp = Comparison(name=f"{model}: summary vs real build + forward", a_label="summary",
                          b_label="real build + hooked forward", unit="s",
                          higher_is_better=False)
    mem_cmp = Comparison(name=f"{model}: peak memory", a_label="summary",
                         b_label="real build + hooked forward", unit="bytes",
                         higher_is_better=False)
    possible, why = can_materialise(model, available)
    if possible and not real:
        why = f"{why}; the real build runs only in the full bench (minutes)"
    real_rounds = min(rounds, REAL_ROUNDS) if real and possible else 0
    summaries: list[dict[str, Any]] = []
    reals: list[dict[str, Any]] = []
    for i in range(rounds):
        if i >= real_rounds:
            summaries.append(run_child("summary", model))
            continue
        # A real build takes minutes: only the first rounds pair one with a summary (ABBA).
        if i % 2 == 0:
            summaries.append(run_child("summary", model))
            reals.append(run_child("real", model))
        else:
            reals.append(run_child("real", model))
            summaries.append(run_child("summary", model))
        time_cmp.a.append(summaries[-1]["seconds"])
        time_cmp.b.append(reals[-1]["seconds"])
        mem_cmp.a.append(summaries[-1]["peak_bytes"])
        mem_cmp.b.append(reals[-1]["peak_bytes"])
    seconds = sorted(s["seconds"] for s in summaries)[len(summaries) // 2]
    peak = sorted(s["peak_bytes"] for s in summaries)[len(summaries) // 2]
    return {
        "model": model, "params": summaries[0]["params"], "rows": summaries[0]["rows"],
        "summary_seconds": seconds, "summary_peak_bytes": peak,
        "summary_process_seconds": sorted(s["process_seconds"] for s in summaries)[
            len(summaries) // 2],
        "summary_warm_seconds": sorted(s["warm_seconds"] for s in summaries)[
            len(summaries) // 2],
        "summary_samples": summaries, "real": reals, "real_note": why,
        "time": time_cmp.to_json() if reals else None,
        "memory": mem_cmp.to_json() if reals else None,
        "met": seconds < GOAL_SECONDS and peak < GOAL_BYTES,
    }


def compare_scale(*, rounds: int, real: bool, available: int | None) -> dict[str, Any]:
    """The baseline child, then each model; `real` allows the multi-minute real build."""
    baseline = run_child("baseline", "none")
    return {"baseline_peak_bytes": baseline["peak_bytes"],
            "models": [measure_model(m, rounds=rounds, real=real, available=available)
                       for m in MODELS]}


if __name__ == "__main__":
    sys.exit(main())
