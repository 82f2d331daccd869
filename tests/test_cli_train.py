"""`tuilab train`: the headless trainer's output, its JSON, weights files and its refusals."""

from __future__ import annotations

import io
import json

import pytest
import torch
from rich.console import Console

from tuilab.cli import main
from tuilab.cli_train import cmd_train


def call(spec: str = "mlp", **options) -> tuple[int, str]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=110, color_system=None)
    settings = dict(steps=20, task=None, optimizer=None, lr=None, batch_size=None,
                    device="cpu", dtype="float32", seed=0, load_weights=None,
                    save_weights=None, as_json=False)
    settings.update(options)
    code = cmd_train(console, spec, **settings)
    return code, buffer.getvalue()


def call_json(spec: str = "mlp", **options) -> tuple[int, dict]:
    code, out = call(spec, as_json=True, **options)
    return code, json.loads(out)


def test_json_is_one_object_with_the_history():
    code, out = call(as_json=True, steps=60)
    assert code == 0 and out.count("\n") == 1  # one line, one object
    result = json.loads(out)
    assert result["steps"] == 60 and len(result["losses"]) == 60
    assert result["final_loss"] == result["losses"][-1]
    assert result["final_loss"] < 0.5 * result["first_loss"]
    assert result["val_losses"] and len(result["val_losses"]) == len(result["val_steps"])
    assert result["steps_per_s"] > 0
    assert (result["device"], result["dtype"], result["task"]) == ("cpu", "float32", "teacher")
    assert result["error"] is None and result["config"]["optimizer"] == "adam"


def test_text_output_has_progress_plot_and_summary():
    code, out = call(steps=40)
    assert code == 0
    assert "40/40" in out  # the progress bar's last state
    assert "loss" in out and "step" in out  # the plot's title and axis label
    assert "40 steps in" in out and "→" in out


def test_options_override_task_defaults_and_classification_reports_accuracy():
    code, result = call_json("mlp_784", steps=30, lr=1e-2, optimizer="sgd", batch_size=32)
    assert code == 0
    assert result["task"] == "digits"
    assert (result["config"]["lr"], result["config"]["optimizer"]) == (1e-2, "sgd")
    assert result["config"]["batch_size"] == 32
    assert result["final_val_accuracy"] is not None and 0 <= result["final_val_accuracy"] <= 1


def test_task_option_and_bfloat16():
    code, result = call_json("mlp", task="teacher", dtype="bf16", steps=10)
    assert code == 0 and result["dtype"] == "bfloat16" and len(result["losses"]) == 10


def test_a_model_that_reduces_its_batch_trains_one_sample_at_a_time():
    code, result = call_json("fixed_hidden_mlp", steps=10)
    assert code == 0 and result["config"]["batch_size"] == 1 and result["error"] is None


def test_weights_round_trip(tmp_path):
    path = tmp_path / "mlp.safetensors"
    code, trained = call_json(steps=80, save_weights=str(path))
    assert code == 0 and path.is_file() and trained["saved_weights"] == str(path)
    code, loaded = call_json(steps=1, load_weights=str(path))
    _, fresh = call_json(steps=1)
    assert code == 0 and loaded["first_loss"] < 0.5 * fresh["first_loss"]


@pytest.mark.parametrize(("options", "needle"), [
    ({"device": "tpu"}, "unknown device"),
    ({"dtype": "int8"}, "unknown dtype"),
    ({"dtype": "float16"}, "float16"),
    ({"task": "imagenet"}, "unknown task"),
    ({"optimizer": "lbfgs"}, "unknown optimizer"),
    ({"lr": -1.0}, "lr"),
    ({"steps": 0}, "steps"),
    ({"save_weights": "model.pt"}, "safetensors"),
    ({"load_weights": "/nonexistent/w.safetensors"}, "w.safetensors"),
])
def test_bad_input_exits_2_with_one_error_line(options, needle):
    code, out = call(**options)
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]


def test_unknown_preset_and_bad_weights_files(tmp_path):
    code, out = call("no_such_preset")
    assert code == 2 and out.startswith("error: ") and "unknown preset" in out
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    code, out = call(load_weights=str(garbage))
    assert code == 2 and out.startswith("error: ")
    other = tmp_path / "other.safetensors"
    assert call("mysequential", steps=1, save_weights=str(other))[0] == 0
    code, out = call(load_weights=str(other))
    assert code == 2 and out.startswith("error: ") and "do not fit" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_absent_cuda_is_refused():
    code, out = call(device="cuda")
    assert code == 2 and "not available" in out


def test_a_diverging_run_exits_1_and_keeps_its_history():
    code, result = call_json(steps=200, lr=1e7, optimizer="sgd")
    assert code == 1 and "step" in result["error"] and result["error_path"]
    assert result["steps"] == len(result["losses"]) < 200


def test_through_the_command_line(capsys):
    code = main(["train", "mlp", "--steps", "5", "--json", "--seed", "1"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["steps"] == 5 and result["config"]["seed"] == 1


def test_errors_go_to_stderr_and_keep_stdout_clean(capsys):
    """As with `summary` and `export`: a script reading stdout never parses an error line."""
    code = main(["train", "mlp", "--steps", "3", "--lr", "-1", "--json"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("error: ") and "lr" in captured.err


def test_threads_are_chosen_from_the_model_and_shown():
    code, out = call(steps=5)
    assert code == 0 and "1 thread (auto, " in out.splitlines()[0]  # mlp: too small to split
    code, result = call_json(steps=5)
    assert (result["threads"], result["threads_chosen_by"]) == (1, "auto")


def test_threads_option_overrides_the_rule_and_a_bad_one_is_refused(capsys):
    code, result = call_json(steps=5, threads=2)
    assert code == 0 and (result["threads"], result["threads_chosen_by"]) == (2, "user")
    assert result["config"]["threads"] == 2
    assert main(["train", "mlp", "--steps", "3", "--threads", "0"]) == 2
    assert "threads must be an int from 1" in capsys.readouterr().err


def test_a_workspace_sets_the_threads(tmp_path):
    from tuilab.core.workspace import Workspace, load_preset, save_workspace

    path = tmp_path / "w.toml"
    save_workspace(Workspace(spec=load_preset("mlp"), training={"threads": 2}), path)
    code, result = call_json(str(path), steps=3)
    assert code == 0 and (result["threads"], result["threads_chosen_by"]) == (2, "user")
