"""`tuilab export --train` and `tuilab train --nproc N`: the CLI ends of the torchrun path.

`train --nproc 2` must report what a local run reports (the same losses, to 1e-4), and a run
that fails on its ranks must exit 1 with the failing rank's own words, leaving no process.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from tuilab.cli import main
from tuilab.core.build import build
from tuilab.core.distributed import train_torchrun
from tuilab.core.training import TrainConfig, check_config
from tuilab.core.workspace import load_preset

STEPS = 12


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if "--json" in args else {}, captured.err


def test_train_nproc_reports_the_local_run(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    saved = tmp_path / "w.safetensors"
    code, many, _ = run_cli(capsys, "train", "mlp", "--steps", str(STEPS), "--nproc", "2",
                            "--save-weights", str(saved), "--json")
    assert code == 0, many["error"]
    code, one, _ = run_cli(capsys, "train", "mlp", "--steps", str(STEPS), "--json")
    assert code == 0
    assert many["processes"] == 2 and one["processes"] == 1
    assert many["steps"] == STEPS and many["val_steps"] == one["val_steps"]
    for got, want in zip(many["losses"], one["losses"], strict=True):
        assert got == pytest.approx(want, rel=1e-4)
    assert many["saved_weights"] == str(saved) and saved.is_file()


def test_train_nproc_failure_exits_1_with_the_ranks_words(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, result, _ = run_cli(capsys, "train", "mlp", "--steps", "50", "--nproc", "2",
                              "--optimizer", "sgd", "--lr", "1e30", "--json")
    assert code == 1
    assert "the loss is nan" in result["error"] or "the loss is inf" in result["error"]
    assert result["error"].startswith("after step ")
    assert "rank " in result["error"]


def test_bad_nproc_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", "mlp", "--nproc", "0")
    assert code == 2 and "processes must be an int from 1 to 64" in err


def test_export_train_writes_the_script_and_the_digits(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    out = tmp_path / "train.py"
    assert main(["export", "lenet", "--train", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "torchrun --standalone --nproc_per_node=2" in said
    assert out.is_file() and (tmp_path / "digits.npz").is_file()
    assert "import tuilab" not in out.read_text()
    assert main(["export", "mlp", "--train"]) == 0
    assert "def load_data(" in capsys.readouterr().out
    assert main(["export", "mlp", "--train", "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_stop_ends_the_processes_and_keeps_what_was_logged(tmp_path: Path) -> None:
    spec = load_preset("mlp")
    model = build(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stop = threading.Event()
    config = check_config(TrainConfig(task="teacher", steps=10_000_000, val_every=0))
    batches = train_torchrun(model, spec, config, nproc=2, stop=stop, workdir=tmp_path)
    seen = 0
    for batch in batches:
        seen += len(batch.steps)
        if seen:
            stop.set()
        if batch.done:
            break
    assert batch.done and batch.stopped and batch.error is None and seen > 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    log = (tmp_path / "torchrun.log").read_text()
    assert not _alive(tmp_path / "train.py"), log[-2000:]


def _alive(script: Path) -> bool:
    """Whether any process still runs ``script``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(script).encode() in (entry / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False
