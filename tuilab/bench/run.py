"""`tuilab bench [--quick] [--json]`: every figure of the Performance section, side by side.

Sections run one after another in this process (the start-up and scale sections start
children of their own): training overhead headless and with the app open (and on CUDA where
there is a GPU), edit latency through the app, start-up, and the scale of inspection. A
section that cannot run (no app in this build, a child that failed) is reported as such and
the others still run: a benchmark that dies on its first problem measures nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from rich.console import Console

from tuilab.bench.harness import Goal, verdict
from tuilab.bench.profiles import FULL, QUICK, Profile, training_threads

SCHEMA_VERSION = 1


def _format_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def run_training(profile: Profile, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every training row, with torch's intra-op threads as the profile says (restored)."""
    import torch

    from tuilab.bench.training import cuda_available

    devices = ["cpu"] + (["cuda"] if cuda_available() else [])
    saved_threads = torch.get_num_threads()
    if profile.torch_threads is not None:
        torch.set_num_threads(profile.torch_threads)
    try:
        rows = _training_rows(profile, progress, devices)
    finally:
        torch.set_num_threads(saved_threads)
    rows += _hog_rows(profile, progress, saved_threads)
    return rows


def _hog_rows(profile: Profile, progress: Callable[[str], None],
              default_threads: int) -> list[dict[str, Any]]:
    """Training beside a CPU hog: tuilab's chosen threads vs torch's default (loaded.py)."""
    from tuilab.bench.loaded import HOG_GOAL, compare_beside_hog

    rows = []
    for preset in profile.hog_presets:
        progress(f"training {preset} beside a CPU hog")
        comparison = compare_beside_hog(preset, rounds=profile.hog_rounds,
                                        seconds=profile.hog_seconds, warmup=profile.warmup,
                                        default_threads=default_threads)
        rows.append({**comparison.to_json(), "preset": preset, "mode": "beside a CPU hog",
                     "device": "cpu", "goal": HOG_GOAL})
    return rows


def _training_rows(profile: Profile, progress: Callable[[str], None],
                   devices: list[str]) -> list[dict[str, Any]]:
    from tuilab.bench.training import as_row, compare_headless
    from tuilab.bench.training_app import compare_in_app

    rows = []
    for device in devices:
        for preset in profile.train_presets:
            progress(f"training {preset} on {device}, headless")
            comparison = compare_headless(preset, device=device, rounds=profile.train_rounds,
                                          seconds=profile.train_seconds, warmup=profile.warmup)
            rows.append(as_row(comparison, preset, "headless", device))
        for preset in profile.train_app_presets:
            progress(f"training {preset} on {device}, app open")
            steady, fixed = asyncio.run(compare_in_app(
                preset, device=device, rounds=profile.train_app_rounds,
                seconds=profile.train_app_seconds, warmup=profile.warmup))
            rows.append(as_row(steady, preset, "app open", device))
            rows.append({**fixed.to_json(), "preset": preset, "mode": "app: run start+end",
                         "device": device, "goal": None})
    return rows


def run_edits(profile: Profile, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    from tuilab.bench.edits import compare_edits

    rows: list[dict[str, Any]] = []
    for preset in profile.edit_presets:
        progress(f"edit latency on {preset}")
        rows.extend(asyncio.run(compare_edits(preset, rounds=profile.edit_rounds,
                                              warmup=profile.warmup, edits=profile.edits)))
    return rows


def run_startup(profile: Profile, progress: Callable[[str], None]) -> dict[str, Any]:
    from tuilab.bench.startup import compare_startup

    progress("start-up in a pseudo-terminal")
    first, ready = compare_startup(rounds=profile.startup_rounds, warmup=profile.warmup)
    return {"first_frame": first.to_json(), "ready": ready.to_json()}


def run_scale(profile: Profile, progress: Callable[[str], None]) -> dict[str, Any]:
    from tuilab.bench.machine import available_bytes
    from tuilab.bench.scale import compare_scale

    progress("scale of inspection (child processes)")
    return compare_scale(rounds=profile.scale_rounds, real=profile.scale_real,
                         available=available_bytes())


# --- goals ------------------------------------------------------------------------------------
def training_goals(rows: list[dict[str, Any]], cuda: bool) -> list[Goal]:
    goals = []
    for row in rows:
        if row["goal"] is None:
            continue  # the fixed cost of a run: reported, no goal of its own
        met, measured = verdict(row, row["goal"])
        goals.append(Goal(
            f"train {row['preset']} ({row['device']}, {row['mode']}): steps/s ÷ bare loop",
            measured, f"≥ {row['goal']}", met))
    if not cuda:
        goals.append(Goal("train on CUDA: steps/s ÷ bare loop", "skipped: no CUDA GPU here",
                          "≥ 0.97 mlp, ≥ 0.99 others", None))
    return goals


def edit_goals(rows: list[dict[str, Any]]) -> list[Goal]:
    from tuilab.bench.report import edit_goal_text

    return [Goal(f"edit '{row['edit']}' on {row['preset']}: key → inspector frame",
                 f"{row['a_median']:.1f} ms = {row['of_floor']:.2f}× floor "
                 f"({row['floor_ms']:.1f} ms), {row['ratio']:.2f}× rebuild "
                 f"({row['b_median']:.1f} ms)", edit_goal_text(row),
                 row["met"])
            for row in rows]


def startup_goals(startup: dict[str, Any]) -> list[Goal]:
    from tuilab.bench.startup import GOAL_FIRST_FRAME_S, GOAL_READY_RATIO

    first, ready = startup["first_frame"], startup["ready"]
    return [
        Goal("start-up: first frame", f"{first['a_median']:.2f} s "
             f"({first['ratio']:.2f}× import torch)", f"< {GOAL_FIRST_FRAME_S} s",
             first["a_median"] < GOAL_FIRST_FRAME_S),
        Goal("start-up: ready ÷ python -c 'import torch'",
             f"{ready['ratio']:.2f}× ({ready['a_median']:.2f} s vs {ready['b_median']:.2f} s)",
             f"≤ {GOAL_READY_RATIO}×", ready["ratio"] <= GOAL_READY_RATIO),
    ]


def scale_goals(scale: dict[str, Any]) -> list[Goal]:
    from tuilab.bench.scale import GOAL_BYTES, GOAL_SECONDS

    goals = []
    for model in scale["models"]:
        peak = model["summary_peak_bytes"]
        goals.append(Goal(
            f"summary of {model['model']} ({model['params'] / 1e9:.1f} B params)",
            f"{model['summary_seconds']:.2f} s, {peak / 2**20:.0f} MiB peak",
            f"< {GOAL_SECONDS:.0f} s, < {GOAL_BYTES / 2**30:.0f} GiB", model["met"]))
        if model["time"]:
            goals.append(Goal(
                f"{model['model']}: real build + forward ÷ summary (time)",
                f"{1 / model['time']['ratio']:.0f}× slower, "
                f"{max(r['peak_bytes'] for r in model['real']) / 2**30:.1f} GiB peak",
                "(reference)", None))
        else:
            goals.append(Goal(f"{model['model']}: real build + forward", model["real_note"],
                              "(reference)", None))
    return goals


def derive_goals(results: dict[str, Any]) -> list[Goal]:
    """The goals table from the sections' data (also for a saved `--json` output)."""
    cuda = bool(results.get("cuda"))
    goals: list[Goal] = []
    if results.get("training"):
        goals += training_goals(results["training"], cuda)
    if results.get("edits"):
        goals += edit_goals(results["edits"])
    if results.get("startup"):
        goals += startup_goals(results["startup"])
    if results.get("scale"):
        goals += scale_goals(results["scale"])
    return goals


# --- the command --------------------------------------------------------------------------------
SECTIONS: tuple[tuple[str, Callable[[Profile, Callable[[str], None]], Any]], ...] = (
    ("training", run_training),
    ("edits", run_edits),
    ("startup", run_startup),
    ("scale", run_scale),
)


@contextlib.contextmanager
def private_data_dir() -> Iterator[str]:
    """Point the app's autosave at a temporary folder while the bench drives it.

    The app autosaves a second after each edit and the bench's apps never quit through the
    user's path: without this, the user's next `tuilab` would offer to restore a bench model.
    """
    saved = os.environ.get("TUILAB_DATA_DIR")
    folder = tempfile.mkdtemp(prefix="tuilab-bench-")
    os.environ["TUILAB_DATA_DIR"] = folder
    try:
        yield folder
    finally:
        if saved is None:
            os.environ.pop("TUILAB_DATA_DIR", None)
        else:
            os.environ["TUILAB_DATA_DIR"] = saved
        shutil.rmtree(folder, ignore_errors=True)


def collect(profile: Profile, progress: Callable[[str], None],
            sections: tuple[str, ...] | None = None,
            command: str | None = None) -> tuple[dict[str, Any], list[Goal]]:
    """Run the sections (all, or those named) and derive the goals from their data;
    `command` is what the report says made it (by default `tuilab bench [--quick]`)."""
    from tuilab.bench.machine import cuda_name, machine_info

    started = time.perf_counter()
    results: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "profile": profile.name,
        "command": command or "tuilab bench" + (" --quick" if profile.name == "quick" else ""),
        "machine": machine_info(), "load_average": list(os.getloadavg()),
        "training_threads": profile.torch_threads or "torch default",
        "errors": {}, "notes": [], "section_seconds": {},
    }
    for name, run in SECTIONS:
        if sections is not None and name not in sections:
            continue
        section_start = time.perf_counter()
        try:
            with private_data_dir():
                results[name] = run(profile, progress)
        except Exception as error:  # report it and measure the rest
            results[name] = None
            results["errors"][name] = _format_error(error)
            progress(f"{name} failed: {traceback.format_exc(limit=-3)}")
        results["section_seconds"][name] = round(time.perf_counter() - section_start, 1)
    cuda = cuda_name() is not None
    results["cuda"] = cuda
    goals = derive_goals(results)
    if not cuda:
        results["notes"].append("no CUDA GPU: the CUDA training rows were skipped")
    results["goals"] = [goal.to_json() for goal in goals]
    results["seconds"] = time.perf_counter() - started
    return results, goals


def chosen_profile(*, quick: bool, rounds: int | None = None,
                   presets: tuple[str, ...] | None = None) -> Profile:
    """The full or quick profile, with every section's rounds and the training presets
    overridden when asked (a longer run settles a ratio the default rounds leave undecided)."""
    profile = replace(QUICK if quick else FULL, torch_threads=training_threads())
    if rounds is not None:
        profile = replace(profile, name=f"{profile.name}, {rounds} rounds", train_rounds=rounds,
                          train_app_rounds=rounds, edit_rounds=rounds, startup_rounds=rounds,
                          scale_rounds=rounds, hog_rounds=rounds)
    if presets is not None:
        profile = replace(profile, train_presets=presets, train_app_presets=presets)
    return profile


def cmd_bench(console: Console, *, quick: bool, as_json: bool,
              sections: tuple[str, ...] | None = None, profile: Profile | None = None,
              command: str | None = None) -> int:
    """Measure and print; 1 when a section could not run, else 0 (missed goals included)."""
    import json

    profile = profile or chosen_profile(quick=quick)
    status = Console(stderr=True)

    def progress(text: str) -> None:
        status.print(f"… {text}", style="dim", highlight=False, markup=False)

    results, goals = collect(profile, progress, sections, command)
    if as_json:
        console.file.write(json.dumps(results, indent=2) + "\n")
    else:
        from tuilab.bench.report import render

        render(console, results, goals)
    return 1 if results["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m tuilab.bench.run [--quick] [--json] [--sections training,edits] [--rounds N]
    [--presets lenet,lstm]`: some sections alone, e.g. the training rows on a GPU machine, or
    one undecided row measured over more rounds."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tuilab.bench.run")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sections", help=", ".join(name for name, _ in SECTIONS))
    parser.add_argument("--rounds", type=int, help="rounds of every section (at least 2)")
    parser.add_argument("--presets", help="training presets, e.g. lenet,transformer")
    parser.add_argument("--edit-presets",
                        help="edit-latency models, e.g. gpt2_xl,rows_10k (rows_10k: a "
                             "synthetic model of 10,000 inspector rows)")
    options = parser.parse_args(argv)
    chosen = tuple(options.sections.split(",")) if options.sections else None
    known = {name for name, _ in SECTIONS}
    if chosen and not set(chosen) <= known:
        parser.error(f"unknown section; choose from {', '.join(sorted(known))}")
    if options.rounds is not None and options.rounds < 2:
        parser.error("--rounds must be at least 2 (a median of pairs needs more than one)")
    presets = tuple(options.presets.split(",")) if options.presets else None
    if presets is not None:
        from tuilab.core.workspace import preset_names

        unknown = sorted(set(presets) - set(preset_names()))
        if unknown:
            parser.error(f"unknown preset {', '.join(unknown)}; see `tuilab presets`")
    profile = chosen_profile(quick=options.quick, rounds=options.rounds, presets=presets)
    if options.edit_presets:
        from tuilab.bench.edits import ROWS_10K
        from tuilab.core.workspace import preset_names

        edit_presets = tuple(options.edit_presets.split(","))
        unknown = sorted(set(edit_presets) - set(preset_names()) - {ROWS_10K})
        if unknown:
            parser.error(f"unknown edit preset {', '.join(unknown)}")
        profile = replace(profile, edit_presets=edit_presets)
    words = list(sys.argv[1:] if argv is None else argv)
    return cmd_bench(Console(), quick=options.quick, as_json=options.json, sections=chosen,
                     profile=profile, command=" ".join(["python -m tuilab.bench.run", *words]))


if __name__ == "__main__":
    raise SystemExit(main())
