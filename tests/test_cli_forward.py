"""`tuilab forward`: the seeds' printed tensors reproduced figure for figure, headless.

Seed 001 (MyLayer, pool2d, corr2d with its kernel, gradients) and seed 003 (a tied weight set
to 100 shows at both places; `net[2].weight.grad == None` before any backward).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tuilab.cli import main


def workspace(tmp_path: Path, block: str, args: str = "", shape: str = "[3, 3]") -> str:
    path = tmp_path / f"{block.lower()}.toml"
    path.write_text(f'[tuilab]\nformat = 1\n[model]\nname = "{block}"\ninput_shape = {shape}\n'
                    f'[model.root]\nname = ""\nblock = "{block}"\n'
                    + (f"args = {{ {args} }}\n" if args else ""))
    return str(path)


def forward_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main(["forward", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_my_layer_subtracts_the_mean(tmp_path: Path, capsys) -> None:
    spec = workspace(tmp_path, "MyLayer", shape="[5]")
    code, data = forward_json(capsys, spec, "--input",
                              "torch.tensor([1, 2, 3, 4, 5], dtype=torch.float)")
    assert code == 0
    assert data["output"]["values"] == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert data["input"]["values"] == [1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize(("mode", "expected"), [("max", [[4.0, 5.0], [7.0, 8.0]]),
                                                ("avg", [[2.0, 3.0], [5.0, 6.0]])])
def test_pool2d_on_arange(tmp_path: Path, capsys, mode: str, expected: list) -> None:
    # Seed 001: X = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]]); pool2d(X, (2, 2)[, 'avg'])
    spec = workspace(tmp_path, "Pool2D", f'pool_h = 2, pool_w = 2, mode = "{mode}"')
    code, data = forward_json(capsys, spec, "--input", "torch.arange(9.).view(3, 3)")
    assert code == 0 and data["output"]["values"] == expected
    assert data["layers"][0]["shape"] == [2, 2]


def test_corr2d_with_the_seeds_kernel_and_its_gradient(tmp_path: Path, capsys) -> None:
    spec = workspace(tmp_path, "Conv2D", "kernel_h = 2, kernel_w = 2")
    code, data = forward_json(
        capsys, spec, "--input", "torch.arange(9.).view(3, 3)",
        "--set", "weight=torch.tensor([[0., 1.], [2., 3.]])", "--set", "bias = 0",
        "--backward", "--show", "weight.grad", "--show", "bias.grad", "--show", "weight")
    assert code == 0
    assert data["output"]["values"] == [[19.0, 25.0], [37.0, 43.0]]
    # d(sum out)/dK[a, b] = sum of the input windows' (a, b) elements
    assert data["tensors"]["weight.grad"]["values"] == [[8.0, 12.0], [20.0, 24.0]]
    assert data["tensors"]["bias.grad"]["values"] == [4.0]
    assert data["tensors"]["weight"]["values"] == [[0.0, 1.0], [2.0, 3.0]]


def test_tied_weight_set_to_100_shows_at_both_paths(capsys) -> None:
    code, data = forward_json(capsys, "shared_mlp", "--set", "net[2].weight.data[0, 0] = 100",
                              "--show", "net[2].weight.data[0]", "--show", "4.weight[0]")
    assert code == 0
    first, second = data["tensors"]["2.weight[0]"], data["tensors"]["4.weight[0]"]
    assert first["values"][0] == 100.0 and first == second


def test_grad_is_none_before_backward_and_set_after(capsys) -> None:
    code, data = forward_json(capsys, "shared_mlp", "--show", "net[2].weight.grad")
    assert code == 0 and data["tensors"]["2.weight.grad"] is None
    code, data = forward_json(capsys, "lenet", "--input", "torch.rand(1, 1, 32, 32)",
                              "--backward", "torch.randn(1, 10)", "--show", "conv1.weight.grad")
    assert code == 0 and data["tensors"]["conv1.weight.grad"]["shape"] == [6, 1, 5, 5]


def test_text_output_is_torch_repr(tmp_path: Path, capsys) -> None:
    spec = workspace(tmp_path, "Pool2D")
    assert main(["forward", spec, "--input", "torch.arange(9.).view(3, 3)"]) == 0
    out = capsys.readouterr().out
    assert repr(torch.tensor([[4., 5.], [7., 8.]])) in out
    assert "x = torch.arange(9.).view(3, 3)" in out


@pytest.mark.parametrize("args", [
    ["--input", "__import__('os').system('touch /tmp/tuilab_pwned')"],
    ["--set", "0.weight = torch.load('x')"],
    ["--backward", "exec('1')"],
    ["--show", "0.__class__"],
    ["--input", "torch.zeros(10**12)"],
    ["--set", "0.weight = torch.ones(3, 3)"],
    ["--show", "0.nope"],
])
def test_bad_input_exits_2_with_one_line(capsys, args: list[str]) -> None:
    assert main(["forward", "shared_mlp", *args]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert captured.err.startswith("error:")
    assert not Path("/tmp/tuilab_pwned").exists()


def test_model_failure_exits_1_naming_the_node(capsys) -> None:
    code, data = forward_json(capsys, "lenet", "--input", "torch.ones(1, 3, 32, 32)")
    assert code == 1 and data["error"]["where"] == "conv1"
    assert data["output"] is None


def test_subprocess_json_and_help() -> None:
    done = subprocess.run([sys.executable, "-m", "tuilab", "forward", "shared_mlp", "--eval",
                           "--input", "torch.ones(1, 4)", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [row["path"] for row in data["layers"]][:2] == ["", "0"]
    assert data["error"] is None and data["output"]["shape"] == [1, 1]
    helped = subprocess.run([sys.executable, "-m", "tuilab", "forward", "--help"],
                            capture_output=True, text=True, timeout=120)
    for option in ("--input", "--input-shape", "--set", "--eval", "--dtype", "--backward",
                   "--show", "--json"):
        assert option in helped.stdout


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_backward_in_another_dtype(capsys, dtype: str) -> None:
    code, data = forward_json(capsys, "shared_mlp", "--dtype", dtype, "--eval", "--input",
                              "torch.ones(1, 4)", "--backward", "--show", "0.bias.grad")
    assert code == 0
    assert data["output"]["dtype"] == dtype
    assert data["tensors"]["0.bias.grad"]["dtype"] == dtype
