"""Training on several processes: the exported script run by torchrun, its metrics read back.

Why not a distributed trainer of our own: PyTorch already has one. ``export_train`` writes
the training script, and this module runs it as ``python -m torch.distributed.run
--standalone --nproc_per_node N`` (torchrun), which starts the processes, gives each its
rank and stops them all when one fails. Rank 0 writes one JSON line per step to a metrics
file; ``train_torchrun`` tails that file and yields the same ``MetricsBatch`` objects as
``training.train``, so the CLI's progress bar and the app's run panel show a torchrun run
exactly like a local one. Like ``train`` it trains ``model`` in place: the script starts
from the model's weights and, when it ends well, its weights are loaded back.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from tuilab.core.export_train import DIGITS_FILE, export_train_source, needs_digits
from tuilab.core.paths import assets_dir
from tuilab.core.spec import ModelSpec
from tuilab.core.training import MetricsBatch, TrainConfig

__all__ = ["MAX_PROCESSES", "torchrun_command", "train_torchrun", "write_train_script"]

#: More processes than this on one machine is a typo, not a plan.
MAX_PROCESSES = 64
#: Seconds torchrun gets to stop its processes after SIGTERM before they are killed.
STOP_GRACE_S = 10.0
#: The collectives' timeout of a run started here, so a long pause does not end it.
PAUSE_LIMIT_S = 7 * 24 * 3600


def write_train_script(spec: ModelSpec, settings: Mapping[str, Any], path: Path) -> list[Path]:
    """Write the training script to ``path`` (atomically), with the digits beside it when the
    task needs them; returns the files written."""
    from tuilab.core.workspace import write_atomic

    write_atomic(path, export_train_source(spec, settings))
    written = [path]
    if needs_digits(str(settings["task"])):
        target = path.with_name(DIGITS_FILE)
        if not target.exists():
            shutil.copyfile(assets_dir() / DIGITS_FILE, target)
            written.append(target)
    return written


def torchrun_command(script: Path, nproc: int, script_args: list[str]) -> list[str]:
    """The torchrun command line for one machine with ``nproc`` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", str(script), *script_args]


def check_processes(nproc: object) -> int:
    if not isinstance(nproc, int) or isinstance(nproc, bool) or not 1 <= nproc <= MAX_PROCESSES:
        raise ValueError(f"processes must be an int from 1 to {MAX_PROCESSES}, got {nproc!r}")
    return nproc


#: What a rank says when it failed only because a peer vanished (gloo's or NCCL's words).
PEER_LOST = re.compile(r"closed by peer|reset by peer|remote worker|remote process|broken pipe|"
                       r"gloo read error|gloo write error", re.IGNORECASE)


def _failed_ranks(log: str) -> list[tuple[int, int, str]]:
    """(rank, exit code, traceback line) of each rank torchrun reported as failed, its "Root
    Cause" first, then the others it listed under "Failures"."""
    root_at = log.rfind("Root Cause")
    if root_at < 0:
        return []
    failures_at = log.rfind("Failures:", 0, root_at)
    parts = [log[root_at:], log[failures_at:root_at] if failures_at >= 0 else ""]
    found: list[tuple[int, int, str]] = []
    for entry in (entry for part in parts for entry in re.split(r"\n\s*\[\d+\]:", part)[1:]):
        rank = re.search(r"rank\s*:\s*(\d+)", entry)
        code = re.search(r"exitcode\s*:\s*(-?\d+)", entry)
        why = re.search(r"traceback\s*:\s*(.+)", entry)
        if rank and code:
            found.append((int(rank.group(1)), int(code.group(1)),
                          why.group(1).strip() if why else ""))
    return found


def failure_message(log: str, returncode: int) -> str:
    """One line saying which rank failed and why, from torchrun's and the script's output.

    torchrun names a "Root Cause", but when ranks end in the same second it names the lowest
    one, often a rank that only lost its peer. So the cause is the first failed rank whose
    own words (the script's ``error: rank N: …`` line) do not say a peer vanished; its words
    are the message when it said any. The other ranks' errors are consequences and are left
    out.
    """
    said: dict[int | None, str] = {}
    for line in log.splitlines():
        if line.startswith("error: "):
            text = line.removeprefix("error: ")
            match = re.match(r"rank (\d+): ", text)
            said.setdefault(int(match.group(1)) if match else None, text)
    failed = _failed_ranks(log)
    if failed:
        causes = [entry for entry in failed if not PEER_LOST.search(said.get(entry[0], ""))]
        rank, code, why = (causes or failed)[0]
        if rank in said:
            return said[rank]
        text = f"rank {rank} failed with exit code {code}"
        if why and "<N/A>" not in why and "To enable traceback" not in why:
            text += f" ({why})"
        if code > 0 and said:  # an error, not a signal: the others' words
            text += f"; {next(iter(said.values()))}"
        return text + "; torchrun stopped the other processes"
    if said:
        return next(iter(said.values()))
    tail = [line for line in log.splitlines() if line.strip()][-1:] or ["no output"]
    return f"torchrun exited with code {returncode}: {tail[0].strip()}"


def train_torchrun(model: nn.Module, spec: ModelSpec, config: TrainConfig, *, nproc: int,
                   stop: threading.Event, pause: threading.Event | None = None,
                   flush_every_s: float = 0.2, workdir: Path | None = None
                   ) -> Iterator[MetricsBatch]:
    """Train ``model`` with ``nproc`` torchrun processes; yield batches of rank 0's metrics.

    ``config`` is a checked TrainConfig. Setting ``stop`` ends the processes (SIGTERM, then
    SIGKILL); ``pause`` stops them in place (SIGSTOP) until it is cleared. The last batch
    has ``done=True``; after a run that ended well ``model`` holds the trained weights.
    ``workdir`` keeps the script, its log and metrics (a temporary folder otherwise).
    """
    from tuilab.core.weights import save_weights

    check_processes(nproc)
    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="tuilab-"))
    script = folder / "train.py"
    start, final = folder / "start.safetensors", folder / "final.safetensors"
    metrics, log_path = folder / "metrics.jsonl", folder / "torchrun.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_train_script(spec, asdict(config), script)
        save_weights(model, start)
        final.unlink(missing_ok=True)
        metrics.write_text("", encoding="utf-8")
    except BaseException:
        if workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    args = ["--steps", str(config.steps), "--metrics", str(metrics), "--save", str(final),
            "--weights", str(start), "--val-every", str(config.val_every),
            # torchrun ends the run when a process dies; the collectives' own timeout would
            # only cut a pause (SIGSTOP) that lasts longer than it.
            "--timeout", str(PAUSE_LIMIT_S)]
    return _follow(model, torchrun_command(script, nproc, args), config, metrics, log_path,
                   final, stop, pause, flush_every_s, keep=workdir is not None)


def _follow(model: nn.Module, command: list[str], config: TrainConfig, metrics: Path,
            log_path: Path, final: Path, stop: threading.Event,
            pause: threading.Event | None, flush_every_s: float, *, keep: bool
            ) -> Iterator[MetricsBatch]:
    reader = _MetricsReader(metrics, config.steps)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    paused = False
    try:
        while process.poll() is None:
            if stop.is_set():
                _end(process, paused)
                yield reader.batch(done=True, stopped=True)
                return
            if pause is not None and pause.is_set() != paused:
                paused = pause.is_set()
                _signal_all(process.pid, signal.SIGSTOP if paused else signal.SIGCONT)
            stop.wait(flush_every_s)
            if reader.read():
                yield reader.batch()
        reader.read()
        if process.returncode != 0:
            text = log_path.read_text(encoding="utf-8", errors="replace")
            error = f"after step {reader.step}: {failure_message(text, process.returncode)}"
            yield reader.batch(done=True, error=error)
            return
        from tuilab.core.weights import WeightsError, load_weights

        try:
            load_weights(model, final)
        except WeightsError as err:
            yield reader.batch(done=True, error=f"the run ended but its weights: {err}")
            return
        yield reader.batch(done=True)
    finally:
        if process.poll() is None:
            _end(process, paused)
        if not keep:
            shutil.rmtree(metrics.parent, ignore_errors=True)


def _end(process: subprocess.Popen[bytes], paused: bool) -> None:
    """Stop torchrun and its processes: SIGTERM (torchrun passes it on), then SIGKILL."""
    try:
        if paused:
            _signal_all(process.pid, signal.SIGCONT)
        process.send_signal(signal.SIGTERM)
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    _signal_all(process.pid, signal.SIGKILL)
    process.wait()


def _signal_all(pid: int, signum: int) -> None:
    """Signal torchrun's process group and each worker's: torchrun starts every worker in a
    session of its own, so a signal to torchrun's group alone does not reach them."""
    for group in (pid, *_children(pid)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)


def _children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (Linux /proc; none elsewhere)."""
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (name) "
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


class _MetricsReader:
    """Rank 0's metrics file, read as it grows: whole lines only."""

    def __init__(self, path: Path, total: int) -> None:
        self.path, self.total = path, total
        self.offset = 0
        self.step, self.seconds = 0, 0.0
        self.pending: dict[str, list[Any]] = {k: [] for k in (
            "steps", "losses", "val_steps", "val_losses", "val_accuracy")}

    def read(self) -> bool:
        """Take the complete lines written since the last call; whether there were any."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return False
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        lines = chunk[:end].decode("utf-8", errors="replace").splitlines()
        for line in lines:
            try:
                row = json.loads(line)
                step, loss = int(row["step"]), float(row["loss"])
            except (ValueError, KeyError, TypeError):
                continue  # not a metrics line
            self.step, self.seconds = step, float(row.get("seconds", self.seconds))
            self.pending["steps"].append(step)
            self.pending["losses"].append(loss)
            if "val_loss" in row:
                self.pending["val_steps"].append(step)
                self.pending["val_losses"].append(float(row["val_loss"]))
                if "val_accuracy" in row:
                    self.pending["val_accuracy"].append(float(row["val_accuracy"]))
        return bool(lines)

    def batch(self, *, done: bool = False, stopped: bool = False,
              error: str | None = None) -> MetricsBatch:
        rate = self.step / self.seconds if self.seconds > 0 else 0.0
        eta = 0.0 if done else (self.total - self.step) / rate if rate > 0 else math.inf
        out = MetricsBatch(
            steps=tuple(self.pending["steps"]), losses=tuple(self.pending["losses"]),
            val_steps=tuple(self.pending["val_steps"]),
            val_losses=tuple(self.pending["val_losses"]),
            val_accuracy=tuple(self.pending["val_accuracy"]), step=self.step,
            total_steps=self.total, steps_per_s=rate, eta_s=eta, done=done, stopped=stopped,
            error=error, error_path=None)
        for values in self.pending.values():
            values.clear()
        return out
