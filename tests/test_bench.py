"""The benchmark's logic and its JSON, never its speed.

Timings depend on the machine and on whatever else runs on it, so nothing here asserts a
figure: the harness is checked with fake measurements (order, pairing, medians), the fairness
of the training comparison by its losses (both sides must compute the same thing), and the
whole command on a tiny profile for the shape of its JSON and its tables.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import replace
from typing import Any

import pytest
from rich.console import Console

from tuilab.bench.harness import Comparison, Goal, alternate, alternate_async, mark, median
from tuilab.bench.profiles import QUICK


# --- harness ------------------------------------------------------------------------------------
def _recorder(order: list[str], name: str, values: list[float]) -> Any:
    samples = iter(values)

    def run() -> float:
        order.append(name)
        return next(samples)

    return run


def test_alternate_runs_abba_after_warmup_and_pairs_rounds() -> None:
    order: list[str] = []
    comparison = Comparison("x", "A", "B", "s", higher_is_better=False)
    alternate(_recorder(order, "a", [9.0, 1.0, 2.0, 3.0, 4.0]),
              _recorder(order, "b", [9.0, 2.0, 4.0, 6.0, 8.0]),
              rounds=4, warmup=1, comparison=comparison)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert comparison.a == [1.0, 2.0, 3.0, 4.0]  # the warm-up pair is not recorded
    assert comparison.b == [2.0, 4.0, 6.0, 8.0]
    assert comparison.ratios == [0.5, 0.5, 0.5, 0.5]
    assert comparison.ratio == 0.5


async def test_alternate_async_matches_the_sync_order() -> None:
    order: list[str] = []

    def wrap(fn: Any) -> Any:
        async def run() -> float:
            return fn()
        return run

    comparison = Comparison("x", "A", "B", "ms", higher_is_better=False)
    await alternate_async(wrap(_recorder(order, "a", [1.0, 1.0, 1.0])),
                          wrap(_recorder(order, "b", [2.0, 2.0, 2.0])),
                          rounds=2, warmup=1, comparison=comparison)
    assert order == ["a", "b", "a", "b", "b", "a"]
    assert comparison.ratio == 0.5


def test_the_medians_interval_narrows_with_rounds_and_decides_a_close_goal() -> None:
    from tuilab.bench.harness import median_interval, verdict

    assert median_interval([]) != median_interval([])  # NaN: no rounds, no interval
    assert median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0)  # 5 rounds: all of them
    assert median_interval(list(range(1, 10))) == (2, 8)  # 96.1 % coverage
    assert median_interval(list(range(1, 26))) == (8, 18)  # 95.7 %; x(9)..x(17) is 89 %
    # a ratio ~1.5 % above its goal with rounds swinging ±3.5 %: 7 rounds cannot tell,
    # 41 rounds can (their quartiles straddle the goal: a quartile rule never decides it)
    rng = random.Random(3)
    swings = [rng.gauss(1.015, 0.035) for _ in range(41)]
    few = Comparison("x", "a", "b", "steps/s", True, swings[:7], [1.0] * 7).to_json()
    many = Comparison("x", "a", "b", "steps/s", True, swings, [1.0] * 41).to_json()
    assert verdict(few, 0.99)[0] is None and "undecided" in verdict(few, 0.99)[1]
    assert many["ratio_q1"] < 0.99 < many["ratio_q3"]
    assert verdict(many, 0.99)[0] is True and verdict(many, 1.02)[0] is None


def test_ratio_is_the_median_of_paired_ratios_not_a_ratio_of_medians() -> None:
    comparison = Comparison("x", "A", "B", "steps/s", higher_is_better=True,
                            a=[10.0, 100.0, 30.0], b=[10.0, 50.0, 60.0])
    assert comparison.ratios == [1.0, 2.0, 0.5]
    assert comparison.ratio == 1.0
    assert comparison.spread == (0.5, 2.0)


def test_empty_comparison_is_json_null_not_nan() -> None:
    data = Comparison("x", "A", "B", "s", higher_is_better=False).to_json()
    assert data["ratio"] is None and data["a_median"] is None and data["rounds"] == 0
    json.dumps(data, allow_nan=False)
    assert math.isnan(median([]))


def test_goal_marks() -> None:
    assert [mark(True), mark(False), mark(None)] == ["✓", "✗", "–"]
    assert Goal("f", "1", "< 2", True).to_json() == {"figure": "f", "measured": "1",
                                                       "goal": "< 2", "met": True}


def test_training_goals_judge_only_clear_well_sampled_ratios() -> None:
    from tuilab.bench.run import training_goals

    def row(ratio: float, low: float, high: float, rounds: int = 7,
            iqr: float | None = None) -> dict[str, Any]:
        return {"preset": "mlp", "device": "cpu", "mode": "headless", "goal": 0.97,
                "ratio": ratio, "ratio_ci_low": low, "ratio_ci_high": high,
                "ratio_iqr": high - low if iqr is None else iqr, "rounds": rounds}

    cost = {"preset": "mlp", "device": "cpu", "mode": "app: run start+end", "goal": None,
            "ratio": 8.0, "rounds": 5}
    goals = training_goals([
        row(0.99, 0.98, 1.00),   # the goal below every middle round: met
        row(0.90, 0.89, 0.91),   # above them: missed
        row(0.99, 0.80, 1.20),   # rounds scattered: a busy machine, no verdict
        row(0.98, 0.96, 0.99),   # the goal inside the median's interval: luck, no verdict
        row(0.99, 0.99, 0.99, rounds=1),  # a smoke run
        cost,
    ], cuda=False)
    assert [goal.met for goal in goals] == [True, False, None, None, None, None]
    assert "too noisy" in goals[2].measured and "undecided" in goals[3].measured
    assert "smoke" in goals[4].measured
    assert "no CUDA GPU" in goals[5].measured  # the fixed-cost row has no goal of its own


# --- the sections' fairness -------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["mlp", "lstm"])
def test_trainer_and_bare_loop_compute_the_same_losses(preset: str) -> None:
    from tuilab.bench.training import loss_gap, prepare_case, run_bare, run_trainer

    case = prepare_case(preset, steps=12)
    rate_a, losses_a = run_trainer(case)
    rate_b, losses_b = run_bare(case)
    assert len(losses_a) == len(losses_b) == 12
    assert loss_gap(losses_a, losses_b) < 1e-6
    assert rate_a > 0 and rate_b > 0


def test_seven_billion_spec_is_summarised_on_meta() -> None:
    from tuilab.bench.scale import decoder_7b_spec
    from tuilab.core.shapes import summarize_spec

    summary = summarize_spec(decoder_7b_spec())
    assert summary.ok and summary.method == "meta"
    assert 6.5e9 < summary.total_params < 7.5e9


def test_a_model_too_big_for_memory_is_not_materialised() -> None:
    from tuilab.bench.scale import can_materialise

    possible, why = can_materialise("decoder_7b", available=8 * 2**30)
    assert not possible and "not materialisable" in why


# --- the whole command on a tiny profile ----------------------------------------------------------
TINY = replace(
    QUICK, name="quick", train_presets=("mlp",), train_app_presets=("mlp",), train_rounds=1,
    train_app_rounds=1, train_seconds=0.01, train_app_seconds=0.01, edit_presets=("mlp",),
    edits=("train/eval", "add a block"), edit_rounds=1, startup_rounds=1, scale_rounds=1,
    scale_real=False, warmup=0, hog_presets=(),
)


def test_tiny_run_json_and_tables() -> None:
    """One run (under xdist a module fixture would run once per worker) checked three ways."""
    from tuilab.bench.run import collect

    saved = os.environ.get("TUILAB_DATA_DIR")
    results, goals = collect(TINY, lambda text: None)
    assert os.environ.get("TUILAB_DATA_DIR") == saved  # the private folder is put back
    assert results["errors"] == {}
    json.dumps(results, allow_nan=False)  # strict JSON: no NaN anywhere
    _check_schema(results, goals)
    _check_tables(results, goals)


def _check_schema(results: dict[str, Any], goals: list[Goal]) -> None:
    machine = results["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["torch"]
    assert "cpu" in machine["devices"]
    comparison_keys = {"name", "a", "b", "unit", "ratio", "ratio_min", "ratio_max",
                       "a_median", "b_median", "a_samples", "b_samples", "rounds", "note"}
    modes = {(row["preset"], row["mode"], row["device"]) for row in results["training"]}
    assert modes == {("mlp", "headless", "cpu"), ("mlp", "app open", "cpu"),
                     ("mlp", "app: run start+end", "cpu")}
    for row in results["training"]:
        assert comparison_keys <= set(row)
        if row["goal"] is None:  # the fixed cost of a run: milliseconds, no goal
            assert row["unit"] == "ms" and row["rounds"] == 2
            continue
        assert row["unit"] == "steps/s" and row["rounds"] == 1 and row["goal"] == 0.97
        assert "max |loss difference| 0.00e+00" in row["note"]
    edits = {row["edit"] for row in results["edits"]}
    assert edits == {"train/eval", "add a block"}
    for row in results["edits"]:
        assert comparison_keys <= set(row) and row["unit"] == "ms"
        assert row["a_median"] > 0 and row["b_median"] > 0 and row["engine_ms"] >= 0
        assert isinstance(row["met"], bool)
        assert row["floor_ms"] > 0 and row["of_floor"] == row["a_median"] / row["floor_ms"]
        assert row["floor_goal"] == 2.0 and row["rebuild_goal"] is None  # mlp is small
    startup = results["startup"]
    assert 0 < startup["first_frame"]["a_median"] <= startup["ready"]["a_median"]
    assert startup["ready"]["b_median"] > 0
    models = {model["model"]: model for model in results["scale"]["models"]}
    assert set(models) == {"gpt2_xl", "decoder_7b"}
    assert models["decoder_7b"]["real"] == [] and models["decoder_7b"]["time"] is None
    assert models["gpt2_xl"]["params"] > 1.5e9
    assert [g.to_json() for g in goals] == results["goals"]
    assert {goal["met"] for goal in results["goals"]} <= {True, False, None}


def _check_tables(results: dict[str, Any], goals: list[Goal]) -> None:
    from tuilab.bench.report import render

    console = Console(record=True, width=200)
    render(console, results, goals)
    text = console.export_text()
    for title in ("Training", "Start and end of a run", "Edit latency", "Start-up", "Scale",
                  "Goals"):
        assert title in text
    assert "tuilab bench" in text


def test_more_rounds_and_fewer_presets_on_the_command_line(capsys) -> None:
    """`--rounds` and `--presets` settle an undecided row; bad values exit 2 saying why."""
    from tuilab.bench.run import chosen_profile, main

    profile = chosen_profile(quick=False, rounds=25, presets=("lenet",))
    assert profile.name == "full, 25 rounds"
    assert (profile.train_rounds, profile.train_app_rounds, profile.edit_rounds,
            profile.startup_rounds, profile.scale_rounds) == (25, 25, 25, 25, 25)
    assert profile.train_presets == profile.train_app_presets == ("lenet",)
    assert chosen_profile(quick=True).train_rounds == QUICK.train_rounds
    for argv, needle in ((["--rounds", "1"], "at least 2"),
                         (["--presets", "lenet,nope"], "unknown preset nope"),
                         (["--sections", "speed"], "unknown section")):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2 and needle in capsys.readouterr().err


# --- training beside a CPU hog ------------------------------------------------------------------
def test_cpu_hogs_spin_and_are_all_killed() -> None:
    from tuilab.bench.loaded import cpu_hogs

    with cpu_hogs(2) as hogs:
        assert len(hogs) == 2 and all(hog.poll() is None for hog in hogs)
    assert all(hog.returncode is not None for hog in hogs)


def test_the_hog_row_compares_chosen_threads_with_torchs_default() -> None:
    import torch

    from tuilab.bench.loaded import HOG_GOAL, compare_beside_hog
    from tuilab.bench.run import training_goals

    before = torch.get_num_threads()
    comparison = compare_beside_hog("mlp", rounds=1, seconds=0.01, warmup=0,
                                    default_threads=2, hogs=1)
    assert torch.get_num_threads() == before  # put back
    assert comparison.name == "train mlp (cpu, beside 1 CPU hog)"
    assert len(comparison.a) == len(comparison.b) == 1 and min(comparison.a + comparison.b) > 0
    assert "tuilab: 1 thread (auto" in comparison.note
    assert "bare loop: 2 threads" in comparison.note
    row = {**comparison.to_json(), "preset": "mlp", "mode": "beside a CPU hog", "device": "cpu",
           "goal": HOG_GOAL}
    (goal,) = training_goals([row], cuda=True)
    assert goal.figure.startswith("train mlp (cpu, beside a CPU hog)")


# --- edit latency against the floor -------------------------------------------------------------
def _edit_comparison(ours: list[float], rebuild: list[float]) -> Comparison:
    return Comparison("e", "diff", "rebuild", "ms", higher_is_better=False, a=ours, b=rebuild)


def test_an_edit_meets_its_goal_within_twice_the_floor_and_on_big_models_a_third_of_rebuild(
) -> None:
    from tuilab.bench.edits import edit_row

    small = edit_row(_edit_comparison([20.0], [22.0]), "mlp", "dtype", [0.1], 10.0, [10.0],
                     [31.0, 29.0])
    assert small["of_floor"] == 2.0 and small["met"] is True  # ≤ 2× floor; no rebuild goal
    assert small["all_panels_ms"] == 30.0  # reported beside, not part of the verdict
    slow = edit_row(_edit_comparison([21.0], [90.0]), "mlp", "dtype", [0.1], 10.0, [10.0], [])
    assert slow["met"] is False
    big = edit_row(_edit_comparison([20.0], [60.0]), "gpt2_xl", "dtype", [5.0], 10.0, [10.0], [])
    assert big["rebuild_goal"] == 0.3 and big["met"] is False  # 0.33× the rebuild
    fast = edit_row(_edit_comparison([15.0], [60.0]), "rows_10k", "dtype", [5.0], 10.0, [10.0], [])
    assert fast["met"] is True


def test_the_10000_row_model_has_10000_rows_and_builds() -> None:
    from tuilab.bench.edits import ROWS_10K, edit_spec, last_linear
    from tuilab.core.lab import Lab

    lab = Lab(edit_spec(ROWS_10K))
    assert len(lab.snapshot.modules) == 10_001  # the Sequential and its 10,000 children
    assert last_linear(lab) == "9998"


async def test_the_bench_sees_a_block_added_before_a_positional_sibling() -> None:
    """rows_10k's last Linear is followed by a ReLU: the Dropout added after it takes the
    ReLU's path and the ReLU a new one. The bench's check waited for a *new path* holding a
    Dropout, which never came, so rows_10k's first app edit "did not reach its frame"."""
    from tuilab.app.app import make_app
    from tuilab.bench.edits import APP_SIZE, app_edit
    from tuilab.core.lab import Lab
    from tuilab.core.spec import ModelSpec, Node, make_node

    children = tuple(
        make_node("Linear", str(i), {"in_features": 4, "out_features": 4}) if i % 2 == 0
        else make_node("ReLU", str(i)) for i in range(4))
    lab = Lab(ModelSpec("pairs", Node(name="", block="Sequential", children=children), (2, 4)))
    app = make_app(lab=lab)
    async with app.run_test(size=APP_SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        steps = app_edit("add a block", app, pilot)
        await steps.prepare()
        assert not steps.shown()
        await pilot.press(*steps.keys)
        for _ in range(20):
            if steps.shown():
                break
            await pilot.pause()
        assert [row.cls for row in lab.snapshot.modules.values()][-2:] == ["Dropout", "ReLU"]
        assert steps.shown()
        await steps.revert()
        await pilot.pause()
        assert not steps.shown()
