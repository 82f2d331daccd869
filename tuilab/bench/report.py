"""The bench's output: one rich table per section, then the goals, or one JSON object.

Only presentation lives here: the sections hand over plain data (the same dicts that go
into `--json`), so the tables and the JSON can never disagree.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tuilab.bench.harness import Goal, mark, verdict


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "–" if value is None else format(value, fmt)


def _bytes(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def header(console: Console, results: dict[str, Any]) -> None:
    machine = results["machine"]
    load = results.get("load_average")
    console.print(f"[bold]tuilab bench[/] ({results['profile']}) · {machine['cpu']} · "
                  f"{machine['cores']} cores · {machine['memory_gib']} GiB · "
                  f"Python {machine['python']} · torch {machine['torch']} "
                  f"({machine['torch_threads']} threads) · textual {machine['textual']} · "
                  f"devices: {', '.join(machine['devices'])}", highlight=False)
    if load:
        console.print(f"load average at start: {load[0]:.2f} (1 min); figures are medians "
                      "of paired, alternating rounds; torch threads for the training rows: "
                      f"{results.get('training_threads', 'torch default')} (both sides; "
                      "TUILAB_BENCH_THREADS)", style="dim", highlight=False)
    if machine.get("bytecode_cache") is False:
        console.print("PYTHONDONTWRITEBYTECODE is set: every start compiles tuilab's own "
                      "modules, which the start-up rows include", style="dim", highlight=False)


def training_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Training: steps/s, tuilab vs a bare PyTorch loop (median ratio)")
    for column in ("preset", "mode", "device", "tuilab/s", "bare/s", "ratio", "IQR", "range",
                   "goal", "met"):
        table.add_column(column, justify="left" if column in ("preset", "mode") else "right")
    for row in rows:
        if row["goal"] is None:
            continue
        met, _ = verdict(row, row["goal"])
        iqr = row.get("ratio_iqr")
        table.add_row(row["preset"], row["mode"], row["device"], _num(row["a_median"], ",.0f"),
                      _num(row["b_median"], ",.0f"), _num(row["ratio"]), _num(iqr),
                      f"{_num(row['ratio_min'], '.2f')}–{_num(row['ratio_max'], '.2f')}",
                      f"≥ {row['goal']}", mark(met))
    return table


def run_cost_table(rows: list[dict[str, Any]]) -> Table | None:
    """The fixed cost of one run with the app open (a 2-step run), when it was measured."""
    fixed = [row for row in rows if row["goal"] is None]
    if not fixed:
        return None
    table = Table(title="Start and end of a run with the app open: a 2-step run, wall time")
    for column in ("preset", "device", "app run ms", "bare loop + task ms", "ratio"):
        table.add_column(column, justify="left" if column == "preset" else "right")
    for row in fixed:
        table.add_row(row["preset"], row["device"], _num(row["a_median"], ".1f"),
                      _num(row["b_median"], ".1f"), _num(row["ratio"], ".1f"))
    return table


def edit_goal_text(row: dict[str, Any]) -> str:
    """`≤ 2× floor` and, on the big models, `≤ 0.3× rebuild`."""
    text = f"≤ {row['floor_goal']:g}× floor"
    if row.get("rebuild_goal") is not None:
        text += f", ≤ {row['rebuild_goal']:g}× rebuild"
    return text


def edits_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Edit latency: key press → frame showing it in the inspector (median); "
                  "floor: a cursor move's key → frame in the same run")
    for column in ("preset", "edit", "tuilab ms", "all panels ms", "floor ms", "÷ floor",
                   "full rebuild ms", "÷ rebuild", "engine ms", "goal", "met"):
        table.add_column(column, justify="left" if column in ("preset", "edit") else "right")
    for row in rows:
        table.add_row(row["preset"], row["edit"], _num(row["a_median"], ".1f"),
                      _num(row.get("all_panels_ms"), ".1f"),
                      _num(row["floor_ms"], ".1f"), _num(row["of_floor"], ".2f"),
                      _num(row["b_median"], ".1f"), _num(row["ratio"], ".2f"),
                      _num(row["engine_ms"], ".2f"), edit_goal_text(row), mark(row["met"]))
    return table


def startup_table(startup: dict[str, Any]) -> Table:
    table = Table(title='Start-up: `tuilab` in a pseudo-terminal vs `python -c "import torch"`')
    for column in ("moment", "tuilab s", "import torch s", "ratio", "min–max"):
        table.add_column(column, justify="left" if column == "moment" else "right")
    for key in ("first_frame", "ready"):
        row = startup[key]
        table.add_row(row["name"], _num(row["a_median"], ".2f"), _num(row["b_median"], ".2f"),
                      _num(row["ratio"], ".2f"),
                      f"{_num(row['ratio_min'], '.2f')}–{_num(row['ratio_max'], '.2f')}")
    return table


def scale_table(scale: dict[str, Any]) -> Table:
    table = Table(title="Scale: summary on the meta device vs building it for real "
                        f"(child processes; imports alone peak at "
                        f"{_bytes(scale['baseline_peak_bytes'])})")
    for column in ("model", "parameters", "summary s", "warm s", "summary peak", "real s",
                   "real peak", "real ÷ summary"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model in scale["models"]:
        reals = model["real"]
        real_s = _num(sorted(r["seconds"] for r in reals)[len(reals) // 2], ".1f") if reals \
            else "–"
        real_peak = _bytes(max(r["peak_bytes"] for r in reals)) if reals else "–"
        ratio = f"{1 / model['time']['ratio']:.0f}×" if model["time"] else "–"
        table.add_row(model["model"], f"{model['params'] / 1e9:.2f} B",
                      _num(model["summary_seconds"], ".2f"),
                      _num(model.get("summary_warm_seconds"), ".2f"),
                      _bytes(model["summary_peak_bytes"]), real_s, real_peak, ratio)
    return table


def scale_notes(scale: dict[str, Any]) -> list[str]:
    """Why a real build was not run (or what it needed), one line per model."""
    return [f"{model['model']} real build: {model['real_note']}" for model in scale["models"]]


def goals_table(goals: list[Goal]) -> Table:
    table = Table(title="Goals")
    table.add_column("figure")
    table.add_column("measured", justify="right")
    table.add_column("goal", justify="right")
    table.add_column("met?", justify="center")
    for goal in goals:
        style = {True: "green", False: "red", None: "dim"}[goal.met]
        table.add_row(goal.figure, goal.measured, goal.goal, mark(goal.met), style=style)
    return table


def render(console: Console, results: dict[str, Any], goals: list[Goal]) -> None:
    """Every section that ran, then the goals, then what could not be measured."""
    header(console, results)
    if results.get("training"):
        console.print(training_table(results["training"]))
        costs = run_cost_table(results["training"])
        if costs is not None:
            console.print(costs)
    if results.get("edits"):
        console.print(edits_table(results["edits"]))
    if results.get("startup"):
        console.print(startup_table(results["startup"]))
    if results.get("scale"):
        console.print(scale_table(results["scale"]))
        for note in scale_notes(results["scale"]):
            console.print(f"  {note}", style="dim", highlight=False, markup=False)
    console.print(goals_table(goals))
    for note in results.get("notes", []):
        console.print(f"note: {note}", style="dim", highlight=False, markup=False)
    for section, error in results.get("errors", {}).items():
        console.print(f"{section} failed: {error}", style="red", highlight=False, markup=False)
    sections = ", ".join(f"{name} {seconds:.0f} s"
                         for name, seconds in results.get("section_seconds", {}).items())
    console.print(f"measured in {results['seconds']:.0f} s ({sections}) with "
                  f"`{results['command']}`; milliseconds and steps/s are this machine's",
                  style="dim", highlight=False)


def render_saved(console: Console, results: dict[str, Any]) -> None:
    """Tables from a saved `tuilab bench --json` output (measure once, print again later)."""
    from tuilab.bench.run import derive_goals

    render(console, results, derive_goals(results))


def main(argv: list[str] | None = None) -> int:
    """`python -m tuilab.bench.report results.json`: the tables of a saved run."""
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tuilab.bench.report results.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as handle:
        render_saved(Console(), json.load(handle))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
