"""tuilab.core.export: the exported text runs with PyTorch alone and is the same model.

The hard check runs every preset's export in a fresh ``python -I`` interpreter in which
importing tuilab is made impossible, and compares ``state_dict()`` keys and shapes with the
lab's build; it also loads the lab's weights into the exported model (strict) and compares
outputs, so a wrong argument (a lost dropout, the wrong dim_feedforward) cannot hide.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tuilab.core.build import build
from tuilab.core.catalog import CATALOG
from tuilab.core.edits import SpecEditor
from tuilab.core.export import export_source
from tuilab.core.shapes import make_input, summarize_spec
from tuilab.core.spec import ModelSpec, Node
from tuilab.core.workspace import load_preset, preset_names

DRIVER = textwrap.dedent('''
    import importlib.abc, json, runpy, sys

    class NoTuilab(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tuilab" or name.startswith("tuilab."):
                raise ImportError("the exported file must not need tuilab")
            return None

    sys.meta_path.insert(0, NoTuilab())
    import torch

    results = {}
    for job in json.loads(sys.argv[1]):
        ns = runpy.run_path(job["file"], run_name="exported")
        assert "tuilab" not in sys.modules
        if job["meta"]:
            with torch.device("meta"):
                model = ns["build_model"]()
        else:
            torch.manual_seed(0)
            model = ns["build_model"]()
        result = {
            "class": type(model).__name__,
            "input_shape": list(ns["INPUT_SHAPE"]),
            "state": {k: list(v.shape) for k, v in model.state_dict().items()},
            "grad": {k: p.requires_grad for k, p in model.named_parameters()},
        }
        if not job["meta"]:
            model.eval()
            with torch.no_grad():
                fresh = model(ns["make_input"]())
            result["make_input_output_shape"] = list(fresh.shape)
        if job["weights"]:
            saved = torch.load(job["weights"], weights_only=True)
            model.load_state_dict(saved["state"], strict=True)
            for name, value in saved["buffers"].items():
                model.get_buffer(name).copy_(value)
            with torch.no_grad():
                out = model(saved["input"])
            result["same_output"] = bool(torch.allclose(out, saved["output"], atol=1e-5))
            if job["main"]:
                runpy.run_path(job["file"], run_name="__main__")  # it runs as a script, too
        results[job["name"]] = result
    print("RESULTS " + json.dumps(results))
''')


def _start_isolated(tmp_path: Path, jobs: list[dict[str, Any]]) -> subprocess.Popen[str]:
    """Run the driver in ``python -I`` (no PYTHONPATH, no user site, tuilab import blocked)."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.Popen(
        [sys.executable, "-I", str(driver), json.dumps(jobs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""},
    )


def _results(proc: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULTS "))
    return json.loads(line[len("RESULTS "):])


def _expected(model: nn.Module) -> dict[str, Any]:
    return {
        "state": {k: list(v.shape) for k, v in model.state_dict().items()},
        "grad": {k: p.requires_grad for k, p in model.named_parameters()},
    }


def _write(tmp_path: Path, spec: ModelSpec) -> dict[str, Any]:
    file = tmp_path / f"{spec.name}.py"
    file.write_text(export_source(spec))
    return {"name": spec.name, "file": str(file), "meta": False, "weights": None,
            "main": False}


def _small_job(tmp_path: Path, spec: ModelSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The export plus the lab's weights, input and output: the exported class must give
    the same output with the same weights."""
    job = _write(tmp_path, spec)
    torch.manual_seed(1)
    model = build(spec)
    model.eval()
    x = make_input(spec.input_shape, takes_tokens=spec.takes_tokens, vocab_size=spec.vocab_size)
    with torch.no_grad():
        out = model(x)
    persistent = set(model.state_dict())
    buffers = {k: v for k, v in model.named_buffers() if k not in persistent}
    weights = tmp_path / f"{spec.name}.pt"
    torch.save({"state": model.state_dict(), "buffers": buffers, "input": x, "output": out},
               weights)
    job.update(weights=str(weights), main=True)
    return job, {**_expected(model), "output_shape": list(out.shape), "same_output": True}


def test_every_preset_round_trips_in_a_fresh_interpreter(tmp_path: Path) -> None:
    names = preset_names()
    assert "lenet" in names and "gpt2_xl" in names
    specs = {name: load_preset(name) for name in names}
    big = {name for name, spec in specs.items() if name == "gpt2_xl" or sum(
        p.numel() for p in build(spec, device="meta").parameters()) > 1_000_000}
    assert "alexnet" in big
    # The big ones: keys, shapes and output shape; the small ones: values too.
    jobs = [_write(tmp_path, specs[name]) | {"meta": name == "gpt2_xl"} for name in sorted(big)]
    expected = {}
    for name in sorted(set(names) - big):
        job, expected[job["name"]] = _small_job(tmp_path, specs[name])
        jobs.append(job)
    proc = _start_isolated(tmp_path, jobs)  # runs while this process works out the rest
    for name in big:
        expected[name] = _expected(build(specs[name], device="meta"))
        if name != "gpt2_xl":
            expected[name]["output_shape"] = list(summarize_spec(specs[name]).output_shape)
    results = _results(proc)
    assert results.keys() == expected.keys()
    for name, want in expected.items():
        got = results[name]
        assert got["state"] == want["state"], name
        assert list(got["state"]) == list(want["state"]), name  # the same order, too
        assert got["grad"] == want["grad"], name
        if "output_shape" in want:
            assert got["make_input_output_shape"] == want["output_shape"], name
        assert got.get("same_output") == want.get("same_output"), name
    assert sum("same_output" in want for want in expected.values()) >= len(expected) - 2
    assert results["lenet"]["class"] == "Lenet"
    assert results["gpt2_xl"]["input_shape"] == [1, 1024]


def _exec(text: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "exported"}
    exec(compile(text, "<export>", "exec"), namespace)
    return namespace


def _shape(tensor: torch.Tensor) -> tuple[int, ...] | str:
    """A lazy module's parameters have no shape until their first forward."""
    if isinstance(tensor, nn.parameter.UninitializedTensorMixin):
        return "uninitialized"
    return tuple(tensor.shape)


def _check_same(spec: ModelSpec) -> nn.Module:
    """Exec the export in a fresh namespace (on meta) and compare with the lab's build."""
    namespace = _exec(export_source(spec))
    with torch.device("meta"):
        exported = namespace["build_model"]()
    lab = build(spec, device="meta")
    got = {k: _shape(v) for k, v in exported.state_dict().items()}
    want = {k: _shape(v) for k, v in lab.state_dict().items()}
    assert got == want, spec.name
    assert list(got) == list(want)
    assert namespace["INPUT_SHAPE"] == spec.input_shape
    return exported


@pytest.mark.parametrize("block", sorted(b for b, d in CATALOG.items() if not d.is_container))
def test_every_palette_block_exports(block: str) -> None:
    ed = SpecEditor(ModelSpec(f"one_{block}", Node("", "Sequential"), (1, 4)))
    ed.add(block, "", name="layer")
    exported = _check_same(ed.spec)
    assert isinstance(exported.layer, nn.Module)


def test_nested_containers_shared_nodes_and_odd_names() -> None:
    ed = SpecEditor(ModelSpec("my model!", Node("", "Sequential"), (2, 4)))
    ed.add("Sequential", "", name="features")
    ed.add("Linear", "features", name="fc", args={"in_features": 4, "out_features": 8})
    ed.add("ReLU", "features", name="train")  # add_module refuses this name
    ed.add("ModuleDict", "", name="heads")
    ed.add("Linear", "heads", name="a", args={"in_features": 8, "out_features": 8})
    ed.add("ModuleList", "", name="stack")
    ed.add("Linear", "stack", args={"in_features": 8, "out_features": 8})
    ed.share("heads.a", "stack")
    ed.add("MySequential", "", name="tail")
    ed.add("Linear", "tail", args={"in_features": 8, "out_features": 3})
    ed.add("Sigmoid", "", name="eval")  # an nn.Module method name at the top level
    text = export_source(ed.spec)
    assert "class MyModel(nn.Module):" in text
    assert "OrderedDict" not in text or "from collections import OrderedDict" in text
    exported = _check_same(ed.spec)
    assert exported.stack[1] is exported.heads["a"]
    torch.manual_seed(0)
    real = _exec(text)["build_model"]()
    lab = build(ed.spec)
    real.load_state_dict(lab.state_dict(), strict=True)
    x = torch.rand(2, 4)
    assert torch.allclose(real(x), lab(x))


def test_tied_layer_is_one_object_as_in_seed_003() -> None:
    text = export_source(load_preset("shared_mlp"))
    assert "shared = nn.Linear(8, 8)" in text
    assert "class SharedMlp(nn.Sequential):" in text
    exported = _exec(text)["build_model"]()
    assert exported[2] is exported[4]
    assert sum(p.numel() for p in exported.parameters()) == 121


def test_lenet_reads_like_the_seed() -> None:
    text = export_source(load_preset("lenet"))
    assert "self.conv1 = nn.Conv2d(1, 6, 5)" in text
    assert "x = self.fc3(x)" in text
    assert "INPUT_SHAPE = (1, 1, 32, 32)" in text
    assert "def build_model() -> nn.Module:" in text
    assert "import torch.nn.functional as F" not in text  # only what is used
    compile(text, "lenet.py", "exec")


def test_block_sources_bring_their_helpers() -> None:
    text = export_source(load_preset("corr2d_conv"))
    assert "class Conv2D(nn.Module):" in text and "def corr2d(" in text
    assert "def _as_float(" in text  # a helper of a helper
    ed = SpecEditor(ModelSpec("pool", Node("", "Sequential"), (1, 4, 4)))
    ed.add("Pool2D", "", args={"mode": "avg"})
    text = export_source(ed.spec)
    assert "_POOL_MODES = " in text and "def pool2d(" in text  # a module-level constant
    namespace = _exec(text)
    out = namespace["build_model"]()(torch.arange(16.0).reshape(1, 4, 4))
    assert out.shape == (1, 3, 3) and float(out[0, 0, 0]) == 2.5


def test_class_defaults_that_differ_from_the_palette_are_written() -> None:
    ed = SpecEditor(ModelSpec("t", Node("", "Sequential"), (2, 5, 64)))
    ed.add("TransformerEncoderLayer", "")
    ed.add("TransformerEncoder", "", args={"num_layers": 1})
    text = export_source(ed.spec)
    assert "dim_feedforward=128" in text  # PyTorch's default is 2048
    assert "dropout=0.1" in text  # CausalTransformerEncoder's default is 0.0
    exported = _check_same(ed.spec)
    assert exported[0].linear1.out_features == 128
    assert exported[1].layers[0].dropout.p == 0.1


def test_frozen_nodes_keep_requires_grad() -> None:
    ed = SpecEditor(ModelSpec("frozen", Node("", "Sequential"), (2, 4)))
    ed.add("Linear", "", name="first", args={"in_features": 4, "out_features": 4})
    ed.add("Sequential", "", name="body")
    ed.add("Linear", "body", name="inner", args={"in_features": 4, "out_features": 4})
    ed.share("first", "body", name="again")
    ed.set_frozen("body", True)
    lab = build(ed.spec)
    exported = _exec(export_source(ed.spec))["build_model"]()
    want = {k: p.requires_grad for k, p in lab.named_parameters()}
    got = {k: p.requires_grad for k, p in exported.named_parameters()}
    assert got == want
    assert want == {"first.weight": True, "first.bias": True, "body.inner.weight": False,
                    "body.inner.bias": False}


def test_leaf_root_and_name_collisions() -> None:
    spec = ModelSpec("FixedHiddenMLP", Node("", "FixedHiddenMLP"), (2, 20))
    text = export_source(spec)
    assert "class FixedHiddenMLPModel(FixedHiddenMLP):" in text
    assert "import torch.nn.functional as F" in text
    model = _exec(text)["build_model"]()
    assert model(torch.rand(2, 20)).shape == ()
    assert export_source(ModelSpec("123", Node("", "Sequential"), (1,))).count(
        "class Model123(nn.Module):") == 1


def test_token_model_exports_a_token_input() -> None:
    text = export_source(load_preset("transformer"))
    assert "VOCAB_SIZE = " in text and "torch.randint(0, VOCAB_SIZE, INPUT_SHAPE)" in text
    namespace = _exec(text)
    x = namespace["make_input"]()
    assert x.dtype == torch.int64
    assert tuple(x.shape) == load_preset("transformer").input_shape


def test_awkward_names_and_descriptions_stay_valid_python() -> None:
    spec = ModelSpec('we"""ird\\', Node("", "Sequential"), (1, 2),
                     description='ends a docstring: """ and a backslash \\')
    text = export_source(spec)
    namespace = _exec(text)
    assert type(namespace["build_model"]()).__name__ == "WeIrd"
    # the docstring leads with what the model is, then says where it came from
    assert namespace["__doc__"].startswith('we"""ird\\: ends a docstring: """ and a backslash')
    assert "Standalone PyTorch source exported by tuilab" in namespace["__doc__"]
