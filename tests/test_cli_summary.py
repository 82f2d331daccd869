"""`tuilab presets`, `tuilab summary` and `tuilab export`: exit codes, tables, JSON, files.

The cmd_ functions are called with a recording rich Console; a few checks run the real
`python -m tuilab` in a subprocess, so the lead's dispatcher is covered too.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from tuilab.cli_commands import cmd_export, cmd_presets, cmd_summary
from tuilab.core.workspace import preset_names

LENET_NO_FLATTEN = """
[tuilab]
format = 1

[model]
name = "broken"
input_shape = [1, 1, 32, 32]

[model.root]
name = ""
block = "Sequential"

[[model.root.children]]
name = "conv"
block = "Conv2d"
args = { in_channels = 1, out_channels = 16, kernel_size = 5 }

[[model.root.children]]
name = "pool"
block = "MaxPool2d"
args = { kernel_size = 4 }

[[model.root.children]]
name = "fc"
block = "Linear"
args = { in_features = 784, out_features = 10 }

[[model.root.children]]
name = "out"
block = "Softmax"
"""


def console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=140, color_system=None, force_terminal=False), buffer


# --- presets ------------------------------------------------------------------------------
def test_presets_table_and_json() -> None:
    out, buffer = console()
    assert cmd_presets(out, as_json=False) == 0
    text = buffer.getvalue()
    for name in ("lenet", "gpt2_xl", "shared_mlp"):
        assert name in text
    out, buffer = console()
    assert cmd_presets(out, as_json=True) == 0
    data = json.loads(buffer.getvalue())
    assert [item["name"] for item in data] == preset_names()
    assert all(set(item) == {"name", "description"} and item["description"] for item in data)


# --- summary ------------------------------------------------------------------------------
def test_summary_table_of_lenet() -> None:
    out, buffer = console()
    assert cmd_summary(out, "lenet", input_shape=None, as_json=False) == 0
    text = buffer.getvalue()
    assert "61,706" in text and "fc3" in text and "(1, 10)" in text
    assert "(1, 6, 28, 28)" in text  # shapes include the batch dimension
    assert "  conv1" in text  # indented by depth
    assert "416.52 K" in text and "241.04 KiB" in text and "meta" in text
    assert "error" not in text


def test_summary_json_is_one_object() -> None:
    out, buffer = console()
    assert cmd_summary(out, "shared_mlp", input_shape="5,4", as_json=True) == 0
    data = json.loads(buffer.getvalue())
    assert data["total_params"] == 121 and data["input_shape"] == [5, 4]
    assert data["output_shape"] == [5, 1] and data["error"] is None
    assert {layer["path"] for layer in data["layers"]} >= {"", "2", "4"}


def test_summary_shape_error_exits_1_with_partial_table(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(LENET_NO_FLATTEN)
    out, buffer = console()
    assert cmd_summary(out, str(path), input_shape=None, as_json=False) == 1
    text = buffer.getvalue()
    assert "(1, 16, 7, 7)" in text  # the rows before the failure are kept
    assert "error at fc:" in text and "hint:" in text and "Flatten" in text
    assert "Traceback" not in text

    out, buffer = console()
    assert cmd_summary(out, str(path), input_shape=None, as_json=True) == 1
    data = json.loads(buffer.getvalue())
    assert data["error"]["path"] == "fc" and "Flatten" in data["error"]["hint"]
    rows = {layer["path"]: layer for layer in data["layers"]}
    assert rows["pool"]["output_shape"] == [1, 16, 7, 7] and rows["out"]["output_shape"] is None


def test_summary_failing_row_is_red() -> None:
    buffer = io.StringIO()
    out = Console(file=buffer, width=140, color_system="standard", force_terminal=True)
    assert cmd_summary(out, "lenet", input_shape="1,1,28,28", as_json=False) == 1
    line = next(ln for ln in buffer.getvalue().splitlines() if " fc1 " in ln)
    assert "\x1b[1;31m" in line  # bold red
    assert "in_features should be 256" in buffer.getvalue()


@pytest.mark.parametrize(
    ("spec", "shape", "expected"),
    [
        ("no_such_preset", None, "unknown preset"),
        ("lenet", "a,b", "not a list of integers"),
        ("lenet", "0,3", "positive integers"),
        ("missing/file.toml", None, "file.toml"),
    ],
)
def test_summary_bad_input_exits_2_with_one_line(spec: str, shape: str | None,
                                                 expected: str) -> None:
    out, buffer = console()
    errors, error_buffer = console()
    assert cmd_summary(out, spec, input_shape=shape, as_json=True, err_console=errors) == 2
    assert buffer.getvalue() == ""  # nothing on stdout that a JSON reader would choke on
    lines = error_buffer.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]


def test_summary_broken_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[model\nname = ")
    out, buffer = console()
    assert cmd_summary(out, str(path), input_shape=None, as_json=False) == 2
    assert buffer.getvalue().startswith("error: ") and "Traceback" not in buffer.getvalue()


# --- export -------------------------------------------------------------------------------
def test_export_to_stdout_and_to_a_file(tmp_path: Path) -> None:
    out, buffer = console()
    assert cmd_export(out, "lenet", output=None) == 0
    source = buffer.getvalue()
    assert "class Lenet(nn.Module):" in source and "INPUT_SHAPE = (1, 1, 32, 32)" in source
    compile(source, "lenet.py", "exec")
    target = tmp_path / "lenet.py"
    out, buffer = console()
    assert cmd_export(out, "lenet", output=str(target)) == 0
    assert target.read_text() == source
    assert [p.name for p in tmp_path.iterdir()] == ["lenet.py"]  # no temp file left


def test_export_bad_input_exits_2(tmp_path: Path) -> None:
    out, buffer = console()
    assert cmd_export(out, "nope", output=None) == 2
    assert buffer.getvalue().startswith("error: ")
    out, buffer = console()
    assert cmd_export(out, "lenet", output=str(tmp_path / "no" / "dir" / "x.py")) == 2
    assert "does not exist" in buffer.getvalue()
    out, buffer = console()
    assert cmd_export(out, "lenet", output=str(tmp_path)) == 2


# --- the real command ---------------------------------------------------------------------
def _tuilab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuilab", *args], capture_output=True,
                          text=True, timeout=120)


def test_python_m_tuilab_dispatches_to_these_commands() -> None:
    result = _tuilab("summary", "lenet", "--input-shape", "1,1,28,28", "--json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)  # one JSON document on stdout, even on exit 1
    assert data["error"]["path"] == "fc1" and data["total_params"] == 61_706

    for args in (("summary", "nope"), ("export", "nope"), ("summary", "lenet",
                                                           "--input-shape", "x")):
        result = _tuilab(*args)
        assert result.returncode == 2, args
        assert "error:" in result.stdout + result.stderr and "Traceback" not in result.stderr

    result = _tuilab("presets", "--json")
    assert result.returncode == 0
    assert {p["name"] for p in json.loads(result.stdout)} == set(preset_names())


# --- the memory plan, and a user's own file ---------------------------------------------------
MEMORY_KEYS = {"params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes",
               "forward_peak_bytes", "train_peak_bytes", "fits"}


def test_summary_json_has_the_memory_plan() -> None:
    out, buffer = console()
    assert cmd_summary(out, "lenet", input_shape=None, as_json=True, optimizer="sgd") == 0
    memory = json.loads(buffer.getvalue())["memory"]
    assert set(memory) >= MEMORY_KEYS
    assert memory["params_bytes"] == memory["grads_bytes"] == 61_706 * 4
    assert memory["optimizer_bytes"] == 0 and memory["optimizer"] == "sgd"
    assert "cpu" in memory["fits"]

    out, buffer = console()
    assert cmd_summary(out, "lenet", input_shape=None, as_json=True, optimizer="adam",
                       dtype="float16") == 0
    memory = json.loads(buffer.getvalue())["memory"]
    assert memory["dtype"] == "float16" and memory["params_bytes"] == 61_706 * 2
    assert memory["optimizer_bytes"] > 2 * memory["params_bytes"]


def test_summary_table_shows_saved_activations_and_the_plan() -> None:
    out, buffer = console()
    assert cmd_summary(out, "lenet", input_shape=None, as_json=False) == 0
    text = buffer.getvalue()
    assert "saved for backward" in text and "memory plan (float32, adam" in text
    assert "training step" in text and "fits: cpu" in text


NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x)
"""


def test_summary_of_a_python_file(tmp_path: Path) -> None:
    """Named on the command line, file.py:NAME is imported (saying which file) and counted."""
    import hashlib

    path = tmp_path / "net.py"
    path.write_text(NET)
    out, buffer = console()
    errors, error_buffer = console()
    assert cmd_summary(out, f"{path}:Net", input_shape="2,8", as_json=True,
                       err_console=errors) == 0
    data = json.loads(buffer.getvalue())
    assert data["name"] == "Net" and data["total_params"] == 36 and data["total_macs"] == 64
    assert data["memory"]["params_bytes"] == 36 * 4
    notes = error_buffer.getvalue().replace("\n", "")
    assert str(path.resolve()) in notes
    assert hashlib.sha256(NET.encode()).hexdigest() in notes


@pytest.mark.parametrize(("name", "source", "expected"), [
    ("missing.py:Net", None, "no such file"),
    ("net.py:Nope", NET, "has no 'Nope' (it defines: Net)"),
    ("bad.py:Net", "x = 1\nraise ValueError('boom')\n", "bad.py:2: importing it raised "
                                                         "ValueError: boom"),
    ("net.py", NET, "name the module to open after a colon"),
])
def test_summary_of_a_python_file_names_the_real_cause(tmp_path: Path, name: str,
                                                        source: str | None,
                                                        expected: str) -> None:
    if source is not None:
        (tmp_path / name.partition(":")[0]).write_text(source)
    out, buffer = console()
    errors, error_buffer = console()
    assert cmd_summary(out, str(tmp_path / name), input_shape=None, as_json=True,
                       err_console=errors) == 2
    assert buffer.getvalue() == ""
    assert expected in error_buffer.getvalue().replace("\n", "")


def test_summary_help_states_the_mac_convention() -> None:
    result = _tuilab("summary", "--help")
    text = " ".join(result.stdout.split())
    assert "multiply-accumulates" in text and "bias additions" in text
    assert "file.py:NAME" in text and "--optimizer" in text
