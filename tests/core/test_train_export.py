"""The exported training script: one file, no tuilab, the same curve on 1 or 2 processes.

The scripts run in a bare virtual environment that sees the test venv's site-packages
(torch, numpy, safetensors) through a .pth line but not its editable tuilab install (the
.pth files of a folder named in a .pth line are not processed), with ``python -I``: a
``import tuilab`` anywhere in them would fail. Each torchrun launch costs ~4 s on the 2-core
machine, so the runs are short and shared between tests through module fixtures.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest
import torch

from tuilab.cli_train import _settings
from tuilab.core.distributed import failure_message, write_train_script
from tuilab.core.export_train import TEMPLATE_PATH, export_train_source
from tuilab.core.workspace import load_workspace_arg

RTOL = 1e-4
STEPS = 20
TIMEOUT = 240


# A .pth line run at every start of the bare python: with AT_EXIT set, a process that goes
# through the interpreter's teardown leaves a file named after its rank ("x": not a rank).
AT_EXIT_HOOK = ("import os, atexit; 'AT_EXIT' in os.environ and atexit.register(lambda: open("
                "os.environ['AT_EXIT'] + '.' + os.environ.get('RANK', 'x'), 'w').close())")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A python that imports torch but not tuilab."""
    root = tmp_path_factory.mktemp("bare")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")],
                   check=True, timeout=120)
    python = root / "venv" / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print("
                              "sysconfig.get_paths()['purelib'])"], check=True,
                             capture_output=True, text=True).stdout.strip()
    Path(purelib, "test-torch.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    Path(purelib, "test-at-exit.pth").write_text(AT_EXIT_HOOK + "\n")
    check = subprocess.run([str(python), "-I", "-c", "import torch, tuilab"],
                           capture_output=True, text=True, cwd=root)
    assert "No module named 'tuilab'" in check.stderr
    return str(python)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TORCHELASTIC"))}
    env.pop("WORLD_SIZE", None)
    return env


def run_script(python: str, script: Path, *args: str, nproc: int | None = None,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -I script`` or ``python -I -m torch.distributed.run ... script``; a launch
    that succeeded is checked for ranks that went through the interpreter's teardown."""
    launcher = ([] if nproc is None else ["-m", "torch.distributed.run", "--standalone",
                                          f"--nproc_per_node={nproc}"])
    marks = Path(tempfile.mkdtemp(dir=script.parent))
    done = subprocess.run([python, "-I", *launcher, str(script), *args], cwd=script.parent,
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env={**_env(), "AT_EXIT": str(marks / "teardown")})
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
        # fully_shard's (and DDP's) process group outlives destroy_process_group; destroyed
        # in the teardown, gloo aborted a finished rank now and then (exit -6). torchrun and
        # a process run alone go through it.
        assert sorted(p.name for p in marks.iterdir()) == ["teardown.x"]
    return done


def losses(path: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in path.read_text().splitlines()]


def assert_same_curve(a: list[float], b: list[float], rtol: float = RTOL) -> None:
    assert len(a) == len(b)
    for step, (x, y) in enumerate(zip(a, b, strict=True), start=1):
        assert abs(x - y) <= rtol * abs(x), f"step {step}: {x} vs {y}"


def export(name: str, folder: Path) -> Path:
    workspace = load_workspace_arg(name)
    task = str(workspace.training.get("task") or workspace.spec.task)
    script = folder / "train.py"
    write_train_script(workspace.spec, _settings(task, workspace.training, {}), script)
    return script


# --- the file itself ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp", "lenet", "lstm", "transformer"])
def test_exported_script_is_standalone_and_ruff_clean(name: str, tmp_path: Path) -> None:
    script = export(name, tmp_path)
    tree = ast.parse(script.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert "tuilab" not in imported
    assert imported <= {"__future__", "argparse", "collections", "contextlib", "copy", "csv",
                        "dataclasses", "datetime", "json", "math", "numpy", "os", "pathlib",
                        "pickle", "safetensors", "sys", "time", "torch", "typing"}
    ruff = Path(sys.executable).with_name("ruff")
    config = Path(__file__).parents[2] / "pyproject.toml"
    done = subprocess.run([str(ruff), "check", "--no-cache", "--config", str(config),
                           str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_template_is_ruff_clean_and_names_its_regions() -> None:
    text = TEMPLATE_PATH.read_text()
    for region in ("imports", "settings", "model", "data", "note"):
        assert f"# <tuilab:{region}>" in text and f"# </tuilab:{region}>" in text


def test_settings_come_from_the_workspace() -> None:
    workspace = load_workspace_arg("mlp")
    source = export_train_source(workspace.spec, {"task": "teacher", "optimizer": "sgd",
                                                  "lr": 0.05, "batch_size": 17, "seed": 3})
    (node,) = [n for n in ast.parse(source).body if isinstance(n, ast.AnnAssign)
               and getattr(n.target, "id", "") == "SETTINGS"]
    settings = ast.literal_eval(node.value)  # type: ignore[arg-type]
    assert (settings["optimizer"], settings["lr"], settings["batch_size"], settings["seed"],
            settings["task"], settings["device"]) == ("sgd", 0.05, 17, 3, "teacher", "cpu")


# --- the template on its own --------------------------------------------------------------------
def test_template_runs_alone_and_splits_an_odd_batch_evenly(bare_python: str,
                                                            tmp_path: Path) -> None:
    """33 samples a batch on 2 ranks is 17 + 16: the weighting keeps the 1-process curve."""
    script = tmp_path / "train.py"
    script.write_text(TEMPLATE_PATH.read_text())
    args = ["--steps", "8", "--batch-size", "33"]
    run_script(bare_python, script, *args, "--metrics", "one.jsonl")
    run_script(bare_python, script, *args, "--metrics", "two.jsonl", nproc=2)
    one = losses(tmp_path / "one.jsonl")
    assert len(one) == 8 and one[-1] < one[0]
    assert_same_curve(one, losses(tmp_path / "two.jsonl"))


# --- done when: the same 20 losses on 1 and 2 processes ----------------------------------------
@pytest.fixture(scope="module", params=["mlp", "lenet"])
def curves(request: pytest.FixtureRequest, bare_python: str,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp(request.param)
    script = export(request.param, folder)
    args = ["--steps", str(STEPS)]
    run_script(bare_python, script, *args, "--metrics", "one.jsonl", "--save", "one.safetensors")
    run_script(bare_python, script, *args, "--metrics", "two.jsonl", nproc=2)
    return {"name": request.param, "folder": folder, "script": script,
            "one": losses(folder / "one.jsonl"), "two": losses(folder / "two.jsonl")}


def test_two_processes_draw_the_one_process_curve(curves: dict[str, object]) -> None:
    one, two = curves["one"], curves["two"]
    assert isinstance(one, list) and isinstance(two, list)
    assert len(one) == STEPS
    assert one[-1] < one[0]
    assert_same_curve(one, two)


def test_one_process_is_the_labs_run(curves: dict[str, object],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The script builds the lab's model, task and batch order: `tuilab train` gives the same
    losses (the same seed, settings and code)."""
    from tuilab.cli import main

    assert main(["train", str(curves["name"]), "--steps", str(STEPS), "--json"]) == 0
    lab = json.loads(capsys.readouterr().out)["losses"]
    assert_same_curve(lab, curves["one"], rtol=1e-6)  # type: ignore[arg-type]


def test_saved_weights_are_the_models(curves: dict[str, object]) -> None:
    from safetensors.torch import load_file

    from tuilab.core.build import build

    folder = curves["folder"]
    assert isinstance(folder, Path)
    model = build(load_workspace_arg(str(curves["name"])).spec)
    model.load_state_dict(load_file(folder / "one.safetensors"))
    assert (folder / "one.state.safetensors").is_file()
    assert not list(folder.glob(".*.tmp"))


# --- resume ---------------------------------------------------------------------------------------
def test_resume_continues_the_curve(bare_python: str, tmp_path: Path) -> None:
    """10 steps, saved, then resumed to 20 on 2 processes: the 1-process 20-step curve."""
    script = export("mlp", tmp_path)
    run_script(bare_python, script, "--steps", "20", "--metrics", "straight.jsonl")
    run_script(bare_python, script, "--steps", "10", "--metrics", "split.jsonl",
               "--save", "half.safetensors")
    run_script(bare_python, script, "--steps", "20", "--metrics", "split.jsonl",
               "--resume", "half.safetensors", nproc=2)
    straight, split = losses(tmp_path / "straight.jsonl"), losses(tmp_path / "split.jsonl")
    assert [json.loads(x)["step"] for x in (tmp_path / "split.jsonl").read_text().splitlines()] \
        == list(range(1, 21))
    assert_same_curve(straight, split)


def test_resume_refuses_another_batch_and_a_missing_state_file(bare_python: str,
                                                              tmp_path: Path) -> None:
    script = export("mlp", tmp_path)
    run_script(bare_python, script, "--steps", "2", "--save", "w.safetensors")
    done = run_script(bare_python, script, "--steps", "4", "--resume", "w.safetensors",
                      "--batch-size", "5", check=False)
    assert done.returncode == 1 and "resume it with --batch-size 64" in done.stderr
    (tmp_path / "w.state.safetensors").unlink()
    done = run_script(bare_python, script, "--steps", "4", "--resume", "w.safetensors",
                      check=False)
    assert done.returncode == 1
    assert "no training state beside it (w.state.safetensors)" in done.stderr


# --- fsdp -----------------------------------------------------------------------------------------
def test_fsdp_draws_the_same_curve_and_resumes(bare_python: str, tmp_path: Path) -> None:
    """fully_shard on 2 processes, saved (a full state dict) at step 4 and resumed to 8."""
    script = export("mlp", tmp_path)
    run_script(bare_python, script, "--steps", "8", "--metrics", "one.jsonl")
    for steps, extra in (("4", "--save"), ("8", "--resume")):
        run_script(bare_python, script, "--steps", steps, "--metrics", "fsdp.jsonl", "--fsdp",
                   extra, "f.safetensors", nproc=2)
    assert_same_curve(losses(tmp_path / "one.jsonl"), losses(tmp_path / "fsdp.jsonl"))
    from safetensors.torch import load_file

    assert set(load_file(tmp_path / "f.safetensors")) == {"0.weight", "0.bias", "2.weight",
                                                           "2.bias"}


# --- a failed rank --------------------------------------------------------------------------------
def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker ``rank`` (a child of ``parent`` with RANK in its env)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(status.split("PPid:")[1].split()[0])
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def test_a_killed_rank_ends_the_run_with_a_clear_message(bare_python: str,
                                                         tmp_path: Path) -> None:
    script = export("mlp", tmp_path)
    metrics = tmp_path / "m.jsonl"
    process = subprocess.Popen(
        [bare_python, "-I", "-m", "torch.distributed.run", "--standalone",
         "--nproc_per_node=2", str(script), "--steps", "10000000", "--metrics", str(metrics)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    try:
        def three_steps() -> bool:
            return metrics.is_file() and metrics.read_text().count("\n") >= 3

        deadline = time.monotonic() + TIMEOUT  # a hang guard, not a speed check
        while not three_steps() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, "torchrun ended before the kill"
        assert three_steps(), "no third step was logged"
        pid = _rank_pid(process.pid, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    message = failure_message(output, process.returncode)
    assert "rank 1 failed with exit code -9" in message, output[-3000:]


def test_failure_message_names_the_root_cause_in_the_scripts_words() -> None:
    root = ("Root Cause (first observed failure):\n[0]:\n  rank      : 1 (local_rank: 1)\n"
            "  exitcode  : 1 (pid: 7)\n  traceback : To enable traceback see: ...\n")
    log = ("error: rank 0: RuntimeError: gloo read error\n"
           "error: rank 1: step 3: the loss is nan; lower the learning rate\n" + root)
    assert failure_message(log, 1) == "rank 1: step 3: the loss is nan; lower the learning rate"
    assert failure_message(root, 1) == ("rank 1 failed with exit code 1; torchrun stopped the "
                                        "other processes")
    assert failure_message("error: step 2: no\n", 1) == "step 2: no"
    assert failure_message("boom\n", 2) == "torchrun exited with code 2: boom"



#: torchrun's report from a CI run where rank 1 was killed: rank 0 lost its peer, said so and
#: aborted in the same second, and torchrun named rank 0 (the lower) as the root cause.
PEER_KILLED = """\
error: rank 0: RuntimeError: [gloo/transport/tcp/pair.cc:553] Connection closed by peer \
[127.0.0.1]:30091. This is typically caused by a remote worker crashing.
terminate called without an active exception
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
train.py FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-04_00:21:45
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 7800)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 7800
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-04_00:21:45
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -6 (pid: 7799)
  error_file: <N/A>
  traceback : Signal 6 (SIGABRT) received by PID 7799
============================================================
"""


def test_failure_message_passes_over_a_rank_that_only_lost_its_peer() -> None:
    assert failure_message(PEER_KILLED, 1) == (
        "rank 1 failed with exit code -9 (Signal 9 (SIGKILL) received by PID 7800); "
        "torchrun stopped the other processes")
    # When every failed rank only lost a peer, torchrun's root cause stands.
    both_lost = PEER_KILLED.replace("error: rank 0", "error: rank 1: broken pipe\nerror: rank 0")
    assert failure_message(both_lost, 1).startswith("rank 0: RuntimeError:")

# --- cuda -----------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_nccl_draws_the_cpu_curve(tmp_path: Path) -> None:
    """Under torchrun on CUDA (nccl, one process per GPU): the curve of one CUDA process."""
    script = export("lenet", tmp_path)
    nproc = min(2, torch.cuda.device_count())
    args = ["--steps", str(STEPS), "--device", "cuda"]
    run_script(sys.executable, script, *args, "--metrics", "one.jsonl")
    run_script(sys.executable, script, *args, "--metrics", "many.jsonl", nproc=nproc)
    assert_same_curve(losses(tmp_path / "one.jsonl"), losses(tmp_path / "many.jsonl"),
                      rtol=1e-3)


TINY = """
[model]
name = "tiny"
input_shape = [2, 2]
task = "moons"
[model.root]
name = ""
block = "Sequential"
children = [
    { name = "0", block = "Linear", args = { in_features = 2, out_features = 8, bias = true } },
    { name = "1", block = "ReLU" },
    { name = "2", block = "Linear", args = { in_features = 8, out_features = 2, bias = true } },
]
"""


def test_a_users_data_file_is_read_by_path(bare_python: str, tmp_path: Path) -> None:
    """A CSV task: the script reads the file the workspace names, or the one --data gives."""
    from tuilab.core.workspace import parse_toml, spec_from_data

    rows = ["a,b,label"] + [f"{i / 50:.3f},{(i * 7 % 50) / 50:.3f},{int(i % 3 == 0)}"
                            for i in range(60)]
    data = tmp_path / "points.csv"
    data.write_text("\n".join(rows) + "\n")
    spec = spec_from_data(parse_toml(TINY, source="tiny"), source="tiny")
    script = tmp_path / "train.py"
    script.write_text(export_train_source(spec, {"task": str(data), "steps": 3,
                                                 "batch_size": 8}))
    assert f"'data': {str(data)!r}" in script.read_text()
    run_script(bare_python, script, "--metrics", "m.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3] and "val_accuracy" in lines[-1]
    done = run_script(bare_python, script, "--data", "missing.csv", check=False)
    assert done.returncode == 1 and "missing.csv: no such file" in done.stderr
