"""`tuilab train SPEC`: train a preset or workspace model headless, with a progress bar and a
loss plot, or one JSON object for scripts.

The same engine as the app (``core.training.train``) runs the steps, so a number printed here
is a number the lab would show. Settings come, first found wins, from the command line, the
workspace's ``[training]`` table (TrainConfig field names), and ``TASK_DEFAULTS`` for the task.
Bad input — unknown preset, task, optimizer, device or dtype, a weights file that does not fit
— exits 2 with one ``error: …`` line; a run that fails part-way (a NaN loss, out of memory)
prints what it learned so far and exits 1.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from tuilab.cli_commands import fail, plain
from tuilab.core.units import rate_text

# Bytes of training state per parameter: weights, gradients and Adam's two moments (float32).
_BYTES_PER_PARAM = 16


def _memory_budget(device: str) -> int:
    """How many bytes training may use: the GPU's memory, or half the machine's RAM."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    from tuilab.core.files import memory_budget

    return memory_budget()


def _training_bytes(model: Any) -> tuple[int, int]:
    """(parameters, bytes a run needs): each parameter with its gradient and Adam's moments,
    each buffer once (BatchNorm's statistics hold memory without being parameters); a lazy
    module's parameters have no size until its first forward and count as nothing here."""
    from torch.nn.parameter import UninitializedTensorMixin

    params = {id(p): p for p in model.parameters()
              if not isinstance(p, UninitializedTensorMixin)}
    buffers = {id(b): b for b in model.buffers() if not isinstance(b, UninitializedTensorMixin)}
    count = sum(p.numel() for p in params.values())
    return count, count * _BYTES_PER_PARAM + sum(b.numel() * b.element_size()
                                                 for b in buffers.values())


def _materialise_lazy(model: Any, spec: Any) -> None:
    """Give a Lazy module's parameters their shapes with one forward pass in eval mode (no
    statistics change): the teacher task copies the model and the optimizer takes its
    parameters, and neither works on an uninitialised parameter."""
    import torch
    from torch.nn.parameter import is_lazy

    from tuilab.core.shapes import make_input

    if not any(is_lazy(t) for t in (*model.parameters(), *model.buffers())):
        return
    x = make_input(spec.input_shape, takes_tokens=spec.takes_tokens,
                   vocab_size=spec.vocab_size, device="cpu", dtype=torch.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)


def _check_save_path(path: str) -> str | None:
    """Why ``path`` cannot take the weights, found before the run rather than after it."""
    target = Path(path)
    if target.suffix.lower() != ".safetensors":
        return (f"{path}: tuilab saves weights as safetensors; the file name must end in "
                f".safetensors")
    if not target.parent.is_dir():
        return f"{path}: the folder {target.parent} does not exist"
    if target.is_dir():
        return f"{path}: is a folder, not a file name"
    return None


def _settings(task: str, training: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    from tuilab.core.training import TASK_DEFAULTS, TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    settings: dict[str, Any] = dict(TASK_DEFAULTS.get(task, {}))
    settings.update({k: v for k, v in training.items() if k in names and k != "task"})
    settings.update({k: v for k, v in given.items() if v is not None})
    settings["task"] = task
    return settings


def _plot(console: Console, steps: list[int], losses: list[float], val_steps: list[int],
          val_losses: list[float]) -> None:
    import plotext as plt

    # A diverging run's last losses are inf or NaN: plotext cannot scale an axis to them
    # ("cannot convert float NaN to integer"), and the error line below says what happened.
    steps, losses = _finite(steps, losses)
    val_steps, val_losses = _finite(val_steps, val_losses)
    if not losses:
        return
    plt.clear_figure()
    plt.theme("clear")
    plt.plotsize(max(40, min(console.width, 100)), 16)
    positive = all(v > 0 for v in losses + val_losses)
    span = max(losses + val_losses) / min(losses + val_losses) if positive else 1.0
    if positive and span > 20:
        plt.yscale("log")
    plt.plot(steps, losses, label="train")
    if val_losses:
        plt.plot(val_steps, val_losses, label="val", marker="dot")
    plt.title("loss" + (" (log scale)" if positive and span > 20 else ""))
    plt.xlabel("step")
    console.print(Text.from_ansi(plt.build()))
    plt.clear_figure()


def _task_phrase(task: str) -> str:
    """The task in words a newcomer knows: "teacher" alone says nothing."""
    from tuilab.core.tasks import TASKS

    if task == "teacher":
        return ("task teacher: learning to copy the outputs of the same model with other "
                "random weights")
    info = TASKS.get(task)
    if info is None:
        return f"your data file {task}"
    return f"task {task} ({info.kind}): {info.description.split('; ')[0].rstrip('.')}"


def _finite(steps: list[int], values: list[float]) -> tuple[list[int], list[float]]:
    """The points whose value is a finite number."""
    kept = [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
    return [s for s, _ in kept], [v for _, v in kept]


def cmd_train(console: Console, spec_arg: str, *, steps: int | None, task: str | None,
              optimizer: str | None, lr: float | None, batch_size: int | None, device: str,
              dtype: str, seed: int, load_weights: str | None, save_weights: str | None,
              as_json: bool, err_console: Console | None = None,
              threads: int | None = None, nproc: int | None = None) -> int:
    """Train ``spec_arg`` on its task and report; returns the exit code (0, 1 or 2).

    Errors go to ``err_console`` when given (the CLI passes stderr), as the other commands'.
    With ``nproc`` the steps run in the exported script under torchrun (core.distributed).
    """
    import torch

    from tuilab.core.build import build
    from tuilab.core.errors import TuilabError
    from tuilab.core.runtime import change_mode
    from tuilab.core.tasks import TASKS, is_data_file, make_task
    from tuilab.core.threads import resolve_threads
    from tuilab.core.training import MetricsBatch, TrainConfig, check_config, train
    from tuilab.core.weights import WeightsError
    from tuilab.core.weights import load_weights as load_weights_file
    from tuilab.core.weights import save_weights as save_weights_file
    from tuilab.core.workspace import load_workspace_arg

    try:
        workspace = load_workspace_arg(spec_arg)
    except (TuilabError, OSError) as err:
        return fail(console, err_console, str(err))
    spec = workspace.spec
    task_name = task or str(workspace.training.get("task") or spec.task)
    if task_name not in TASKS and not is_data_file(task_name):
        return fail(console, err_console,
                    f"unknown task {task_name!r}; choose one of: {', '.join(TASKS)} (or a "
                    f".csv/.npz/.pt data file)")
    settings = _settings(task_name, workspace.training, {
        "steps": steps, "optimizer": optimizer, "lr": lr, "batch_size": batch_size,
        "device": device, "dtype": dtype, "seed": seed, "threads": threads,
    })
    settings.setdefault("val_every", max(1, int(settings.get("steps", 200)) // 10))
    try:
        config = check_config(TrainConfig(**settings))
    except TypeError as err:
        return fail(console, err_console, f"bad training settings: {err}")
    except (TuilabError, ValueError) as err:
        return fail(console, err_console, str(err))
    if save_weights and (problem := _check_save_path(save_weights)):
        return fail(console, err_console, problem)

    # A model whose training state cannot fit is refused before a single byte is allocated.
    try:
        meta = build(spec, device="meta")
        count, needed = _training_bytes(meta)
        del meta
    except Exception as err:
        return fail(console, err_console, f"{spec.name}: the model cannot be built: {err}")
    budget = _memory_budget(config.device)
    if needed > budget:
        return fail(
            console, err_console,
            f"{spec.name} has {count / 1e6:,.0f} M parameters: training needs about "
            f"{needed / 2**30:.1f} GiB, more than the "
            f"{budget / 2**30:.1f} GiB tuilab allows on {config.device}",
        )

    torch.manual_seed(seed)
    try:
        model = build(spec)
    except Exception as err:
        return fail(console, err_console, f"{spec.name}: the model cannot be built: {err}")
    try:
        _materialise_lazy(model, spec)
    except Exception as err:
        return fail(console, err_console,
                    f"{spec.name}: the first forward pass, which gives its lazy modules their "
                    f"shapes, failed: {err}")
    if load_weights:
        try:
            load_weights_file(model, load_weights)
        except WeightsError as err:
            return fail(console, err_console, str(err))
    try:
        # A workspace's data file is found beside the workspace; one given with --task, from
        # where the command runs.
        base = Path(spec_arg).parent if task is None and spec_arg.endswith(".toml") else None
        data = make_task(task_name, input_shape=tuple(spec.input_shape[1:]),
                         vocab_size=spec.vocab_size, model=model, seed=seed, base=base)
    except ValueError as err:
        return fail(console, err_console, str(err))
    if (task_name == "teacher" and data.y_train.dim() == 1 and batch_size is None
            and "batch_size" not in workspace.training and config.batch_size != 1):
        # The teacher's targets are one scalar per sample when the model reduces its whole
        # batch to one value (the seed's FixedHiddenMLP): only batches of one match them.
        config = replace(config, batch_size=1)
    try:
        cast = "float64" if config.dtype == "float64" else None
        if config.device != "cpu" or cast:
            change_mode(model, device=config.device, dtype=cast)
        chosen = resolve_threads(config.threads, model, data.x_train, config.batch_size)
        config = replace(config, threads=chosen.threads)
        if nproc is not None:
            from tuilab.core.distributed import check_processes, train_torchrun

            batches = train_torchrun(model, spec, config, nproc=check_processes(nproc),
                                     stop=threading.Event())
        else:
            batches = train(model, data, config, stop=threading.Event())
    except (TuilabError, ValueError) as err:
        return fail(console, err_console, str(err))

    all_steps: list[int] = []
    losses: list[float] = []
    val_steps: list[int] = []
    val_losses: list[float] = []
    val_accuracy: list[float] = []
    last: MetricsBatch | None = None
    interrupted = False
    started = time.perf_counter()

    def collect(batch: MetricsBatch) -> None:
        all_steps.extend(batch.steps)
        losses.extend(batch.losses)
        val_steps.extend(batch.val_steps)
        val_losses.extend(batch.val_losses)
        val_accuracy.extend(batch.val_accuracy)

    try:
        if as_json:
            for last in batches:
                collect(last)
        else:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
            )

            console.print(plain(f"{spec.name}: {_task_phrase(task_name)}, on {config.device} "
                                f"{config.dtype}, {config.optimizer} lr={config.lr:g}, "
                                f"batch {config.batch_size}, {chosen.label()}"
                                + (f", {nproc} processes (torchrun)" if nproc else "")),
                          soft_wrap=True)
            with Progress(
                BarColumn(bar_width=24), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TextColumn("ETA {task.fields[eta]}"),
                TextColumn("loss {task.fields[loss]}"),
                console=console, transient=False,
            ) as progress:
                bar = progress.add_task("train", total=config.steps, rate=rate_text(0), eta="-",
                                        loss="-")
                for last in batches:
                    collect(last)
                    eta = "-" if not math.isfinite(last.eta_s) else f"{last.eta_s:.1f}s"
                    progress.update(
                        bar, completed=last.step, rate=rate_text(last.steps_per_s), eta=eta,
                        loss=f"{losses[-1]:.4g}" if losses else "-",
                    )
    except KeyboardInterrupt:
        interrupted = True
        batches.close()
    seconds = time.perf_counter() - started

    saved = None
    if save_weights and last is not None and last.error is None:
        try:
            save_weights_file(model, save_weights)
            saved = save_weights
        except WeightsError as err:
            return fail(console, err_console, str(err))

    error = last.error if last is not None else None
    steps_done = last.step if last is not None else len(losses)
    result = {
        "model": spec.name,
        "task": task_name,
        "config": asdict(config),
        "steps": steps_done,
        "total_steps": config.steps,
        "losses": losses,
        "val_steps": val_steps,
        "val_losses": val_losses,
        "val_accuracy": val_accuracy,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "final_val_loss": val_losses[-1] if val_losses else None,
        "final_val_accuracy": val_accuracy[-1] if val_accuracy else None,
        "steps_per_s": last.steps_per_s if last is not None else 0.0,
        "seconds": seconds,
        "device": config.device,
        "dtype": config.dtype,
        "threads": chosen.threads,
        "threads_chosen_by": chosen.chosen_by,
        "stopped": interrupted or bool(last is not None and last.stopped),
        "error": error,
        "error_path": last.error_path if last is not None else None,
        "saved_weights": saved,
        "processes": nproc or 1,
    }
    if as_json:
        # One compact line: print_json would indent every loss onto its own line.
        console.out(json.dumps(_nan_to_none(result), default=str), highlight=False)
        return 1 if error else 0

    _plot(console, all_steps, losses, val_steps, val_losses)
    if losses:
        line = (f"{steps_done} steps in {seconds:.1f}s ({rate_text(result['steps_per_s'])}): "
                f"loss {losses[0]:.4g} → {losses[-1]:.4g}")
        if val_losses:
            line += f", val {val_losses[-1]:.4g}"
        if val_accuracy:
            line += f", val accuracy {val_accuracy[-1]:.1%}"
        console.print(Text(line))
    if interrupted:
        console.print(Text("stopped by Ctrl-C; the history above is kept"))
    if saved:
        console.print(Text(f"weights saved to {saved}"))
    if error:
        where = last.error_path if last else None
        if where and where not in error:
            error += f" [{where}]"
        return fail(console, err_console, error, code=1)
    return 0


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value
