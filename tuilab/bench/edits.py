"""Edit latency: from a key press to a frame showing the change in the inspector.

What is timed, and why it is not simply ``press`` + ``pause``: Textual's Pilot waits for the
app to go idle by sleeping in steps of 20 ms (``wait_for_idle``), so a press followed by a
pause can never take less than ~60 ms, whatever the app does. The clock here is the app's
own: the key event goes in at t0 (through ``pilot.press``, so bindings, actions, dialogs
and messages all run as they do for a user), the inspector's ``apply`` is wrapped to note
when it returns, and ``App._display`` is wrapped to note the first frame composed after
that, serialised to terminal bytes as a real terminal would need. The latency is that frame's
time minus t0. The Pilot's pauses then only *wait* (outside the timed span) until the
inspector shows the change, which is checked on the widgets themselves.

Each edit is measured side by side with the naive way: the same key, the same edit, but the
inspector rebuilt from the whole snapshot (``Inspector.load``) instead of applying the diff.
The engine alone (``Lab.edit`` and friends, up to the ``LabUpdate``) is timed for reference.

The frame that shows the edit is not the whole of it: the code log's new line, the header's
repaint and the labels of inspector rows off screen are drawn in the frame after (see
``CodeLog`` and ``OnScreenFirst``). ``all panels`` is timed to that later frame — the first one
composed once nothing of the edit is left undrawn — so the figure for the edit's own frame
never hides what was moved out of it.

The goals are relative, because absolute milliseconds belong to the machine (the same edits
took 35-85 ms on a slower, busy 2-core machine and 16-38 ms on a quieter one): each edit
within ``FLOOR_GOAL`` times the *floor* of the same run — a key that changes nothing in the
model (a cursor move in the builder), timed from the key to its frame in the same way — and,
on the big models (gpt2_xl, and ``ROWS_10K``, a synthetic model of 10,000 inspector rows),
within ``REBUILD_GOAL`` times the full rebuild. The floor is what Textual costs per key here;
an edit near it adds little of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuilab.bench.harness import Comparison, alternate_async, median

if TYPE_CHECKING:
    from tuilab.core.lab import Lab

ROWS_10K = "rows_10k"
"""Not a preset: a Sequential of 5,000 × (Linear, ReLU), 10,001 module rows (see
``edit_spec``), the size the inspector's diff was designed for."""
EDIT_PRESETS = ("mlp", "transformer", "gpt2_xl")
"""The default rows. ROWS_10K is measured on request (`python -m tuilab.bench.run --sections
edits --edit-presets rows_10k`): each of its edits starts a shape summary and memory plan
that runs for minutes on 10,000 layers, and the bench waits for workers between edits (the
section did not finish in 12 minutes on the 2-core machine); its dtype edit takes ~13 s."""
EDITS = ("add a block", "change an argument", "train/eval", "dtype")
FLOOR_GOAL = 2.0
"""An edit's key → frame within this many times the floor (a cursor move's key → frame)."""
REBUILD_GOAL = 0.3
"""On the big models, an edit within this fraction of a full inspector rebuild."""
BIG_MODELS = ("gpt2_xl", ROWS_10K)
HUGE_ROUNDS = 2
"""Rounds on ROWS_10K, whatever the profile says: one of its edits (and its full rebuild)
takes seconds, not milliseconds, on a 2-core machine (at load ~3: add a block 0.6 s in the
app, 0.45 s of it the engine; the full rebuild 2.2 s)."""
HUGE_TIMEOUT_S = 600.0
APP_SIZE = (160, 48)
IDLE_FRAMES_BEFORE_KEY = 2
"""Each timed key comes after the screen was idle this many frames (at Textual's MAX_FPS).
Textual draws at most once per 1/60 s, on a fixed beat: a key pressed right after a frame
waits up to 16.7 ms for the next one, whatever it changed. Left to chance, that wait was most
of the spread between rounds (a cursor move took 3.3 or 10.7 ms in one run); after an idle
moment a key's frame is drawn as soon as the key is handled, which is what a single key press
by a person gets, for the floor and every edit alike."""
ADDED_BLOCK = "Dropout"


def edit_spec(name: str) -> Any:
    """The spec a bench edit row uses: a preset, or the synthetic 10,000-row model."""
    from tuilab.core.workspace import load_preset

    if name != ROWS_10K:
        return load_preset(name)
    return wide_spec(ROWS_10K, 10_000, 8)


def wide_spec(name: str, rows: int, width: int) -> Any:
    """A Sequential of `rows` children alternating Linear `width`→`width` and ReLU."""
    from tuilab.core.spec import ModelSpec, Node, make_node

    linear = make_node("Linear", "0", {"in_features": width, "out_features": width})
    relu = make_node("ReLU", "1")
    children = tuple(
        Node(name=str(i), block=(linear if i % 2 == 0 else relu).block,
             args=(linear if i % 2 == 0 else relu).args)
        for i in range(rows))
    return ModelSpec(name, Node(name="", block="Sequential", children=children), (2, width),
                     description=f"{rows:,} rows: {rows // 2:,} × (Linear {width}→{width}, ReLU)")


def last_linear(lab: Lab) -> str:
    """The path of the last top-level Linear (the head): the argument edit toggles its bias."""
    for child in reversed(lab.spec.root.children):
        if child.block == "Linear" and child.ref is None:
            return child.name
    raise ValueError(f"{lab.name} has no top-level Linear to edit")


# --- the engine alone ------------------------------------------------------------------------
def engine_steps(lab: Lab, edit: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(do, undo) for one edit kind, straight on the lab: what the app's handlers call."""
    if edit == "add a block":
        return (lambda: lab.edit("add", ADDED_BLOCK)), (lambda: lab.edit("undo"))
    if edit == "change an argument":
        path = last_linear(lab)

        def toggle() -> Any:
            bias = bool(_node(lab, path).args.get("bias", True))
            return lab.edit("set_args", path, {"bias": not bias})

        return toggle, (lambda: lab.edit("undo"))
    if edit == "train/eval":
        return (lambda: lab.set_training(False)), (lambda: lab.set_training(True))
    if edit == "dtype":
        return (lambda: lab.set_dtype("bfloat16")), (lambda: lab.set_dtype("float32"))
    raise ValueError(f"unknown edit {edit!r}")


def _node(lab: Lab, path: str) -> Any:
    from tuilab.core.spec import find

    return find(lab.spec.root, path)


def engine_ms(lab: Lab, edit: str, rounds: int) -> list[float]:
    """Milliseconds of each do and each undo (both are edits of this kind), after a warm-up."""
    do, undo = engine_steps(lab, edit)
    do()
    undo()
    samples: list[float] = []
    for _ in range(rounds):
        for step in (do, undo):
            start = time.perf_counter()
            step()
            samples.append((time.perf_counter() - start) * 1000)
    return samples


# --- the app ------------------------------------------------------------------------------------
class FrameClock:
    """Notes when the inspector finished an update and when the next frame was composed.

    Installed on one app: wraps ``inspector.apply`` (optionally replacing it by a full
    ``inspector.load``, the naive way) and ``app._display``.
    """

    def __init__(self, app: Any) -> None:
        from textual._compositor import CompositorUpdate

        self.app = app
        self.inspector = app.inspector
        self.naive = False
        self.applied_at: float | None = None
        self.frame_at: float | None = None
        self.settled_at: float | None = None
        self._armed = False
        self._floor: Callable[[], bool] | None = None
        real_apply = self.inspector.apply
        real_display = app._display

        def apply(update: Any, lab: Any = None) -> None:
            if self.naive:
                self.inspector.load(lab or app.lab)
            else:
                real_apply(update, lab)
            if self._armed and self.applied_at is None:
                self.applied_at = time.perf_counter()

        def display(screen: Any, renderable: Any) -> None:
            real_display(screen, renderable)
            if isinstance(renderable, CompositorUpdate):
                renderable.render_segments(app.console)  # what a terminal would be sent
            if self._floor is not None and self.applied_at is None and self._floor():
                self.applied_at = time.perf_counter()  # the key was handled before this frame
            if self.applied_at is not None:
                now = time.perf_counter()
                if self.frame_at is None:
                    self.frame_at = now
                if self.settled_at is None and not self.undrawn():
                    self.settled_at = now

        self.inspector.apply = apply
        app._display = display

    def undrawn(self) -> bool:
        """Whether part of the edit waits for a later frame (a log line, off-screen labels)."""
        return bool(self.app.code_log.undrawn or self.inspector.modules_tree.relabel.pending)

    def arm(self, *, floor: Callable[[], bool] | None = None) -> float:
        """Start timing. With `floor` (a key that changes nothing in the model, so no
        inspector update comes) the frame that counts is the first one composed once
        `floor()` holds, i.e. once the key was handled."""
        self.applied_at = self.frame_at = self.settled_at = None
        self._armed = True
        self._floor = floor
        return time.perf_counter()

    def disarm(self) -> None:
        self._armed = False
        self._floor = None


@dataclass
class AppEdit:
    """One edit through the app: untimed set-up, the timed keys, the check, the revert."""

    prepare: Callable[[], Awaitable[None]]
    keys: tuple[str, ...]
    shown: Callable[[], bool]
    revert: Callable[[], Awaitable[None]]


FLOOR = "cursor move (floor)"


def app_edit(edit: str, app: Any, pilot: Any) -> AppEdit:
    """How a user makes `edit` with keys, and how the inspector shows that it happened."""
    lab = app.lab
    inspector = app.inspector
    builder = app.builder

    async def select(path: str) -> None:
        builder.focus()
        builder.select_path(path)
        await pilot.pause()

    async def undo() -> None:
        builder.focus()
        await pilot.press("ctrl+z")

    if edit == FLOOR:
        first = lab.spec.root.children[0].name

        async def prepare_cursor() -> None:
            await select(first)

        def moved() -> bool:
            return builder.selected_path not in (None, first)

        async def back_up() -> None:
            builder.focus()
            await pilot.press("up")

        return AppEdit(prepare_cursor, ("down",), moved, back_up)

    if edit == "add a block":
        leaf = last_linear(lab)
        before = [0]

        def shown_blocks() -> int:
            # Counted, not looked up by new path: inserted before a positional sibling
            # (rows_10k's last Linear is followed by a ReLU), the block takes that sibling's
            # path and the sibling a new one, so the new path is the ReLU's.
            tree = inspector.modules_tree
            return sum(1 for path in tree.handles
                       if (row := tree.rows.get(path)) is not None and row.cls == ADDED_BLOCK)

        async def prepare_add() -> None:
            await select(leaf)
            app.palette.select_block(ADDED_BLOCK)
            builder.focus()
            await pilot.pause()
            before[0] = shown_blocks()

        def added() -> bool:
            return shown_blocks() > before[0]

        return AppEdit(prepare_add, ("a",), added, undo)

    if edit == "change an argument":
        leaf = last_linear(lab)
        wanted: dict[str, bool] = {}

        async def prepare_arg() -> None:
            await select(leaf)
            await pilot.press("e")
            await pilot.pause()
            bias = bool(_node(lab, leaf).args.get("bias", True))
            wanted["bias"] = not bias
            prompt = app.header.prompt
            prompt.go_to(next(i for i, f in enumerate(prompt.fields) if f.arg.name == "bias"))
            await pilot.press("ctrl+u", *("true" if wanted["bias"] else "false"))
            await pilot.pause()

        def changed() -> bool:
            key = f"{leaf}.bias"
            in_table = _has_row(inspector.params_table, key)
            return in_table == wanted["bias"] and (key in lab.snapshot.parameters) == in_table

        return AppEdit(prepare_arg, ("enter",), changed, undo)

    if edit == "train/eval":
        async def prepare_mode() -> None:
            builder.focus()
            await pilot.pause()

        def flipped() -> bool:
            row = inspector.modules_tree.rows.get("")
            return row is not None and row.training is False and not lab.training

        async def back() -> None:
            builder.focus()
            await pilot.press("T")

        return AppEdit(prepare_mode, ("T",), flipped, back)

    if edit == "dtype":
        async def choose(name: str) -> None:
            builder.focus()
            await pilot.press("P")
            await pilot.pause()
            app.header.prompt.highlight(name)
            app.header.refresh()
            await pilot.pause()

        def cast() -> bool:
            keys = list(lab.snapshot.parameters)
            return (lab.dtype_name == "bfloat16" and bool(keys)
                    and inspector.row_text("parameters", keys[0])[2] == "bfloat16")

        async def back_to_float32() -> None:
            await choose("float32")
            await pilot.press("enter")

        return AppEdit(lambda: choose("bfloat16"), ("enter",), cast, back_to_float32)

    raise ValueError(f"unknown edit {edit!r}")


def _has_row(table: Any, key: str) -> bool:
    try:
        table.get_row(key)
    except Exception:
        return False
    return True


async def _settle(app: Any, pilot: Any) -> None:
    """Wait out the background work an edit starts (the shape summary) before the next one."""
    await app.workers.wait_for_complete()
    await pilot.pause()


async def measure_app_edit(clock: FrameClock, app: Any, pilot: Any, edit: AppEdit, *,
                           naive: bool, timeout: float = 60.0, floor: bool = False,
                           settled: list[float] | None = None) -> float:
    """One edit through the keys: milliseconds from the key to the frame that shows it.
    With `settled`, the milliseconds to the frame that shows all of it are appended there."""
    await edit.prepare()
    from textual.constants import MAX_FPS

    await asyncio.sleep(IDLE_FRAMES_BEFORE_KEY / MAX_FPS)
    clock.naive = naive
    start = clock.arm(floor=edit.shown if floor else None)
    await pilot.press(*edit.keys)
    deadline = time.perf_counter() + timeout
    while clock.frame_at is None or clock.settled_at is None or not edit.shown():
        if time.perf_counter() > deadline:
            raise TimeoutError("the inspector did not show the edit in time")
        await pilot.pause()
    clock.disarm()
    elapsed = (clock.frame_at - start) * 1000
    if settled is not None:
        settled.append((clock.settled_at - start) * 1000)
    clock.naive = False
    await _settle(app, pilot)
    await edit.revert()
    await _settle(app, pilot)
    return elapsed


async def compare_edits(preset: str, *, rounds: int, warmup: int = 1,
                        edits: tuple[str, ...] = EDITS) -> list[dict[str, Any]]:
    """Every edit on `preset`: app latency with the diff vs a full rebuild, and the engine."""
    from tuilab.app.app import make_app
    from tuilab.core.lab import Lab

    rows: list[dict[str, Any]] = []
    timeout = 60.0
    if preset == ROWS_10K:
        rounds, warmup, timeout = min(rounds, HUGE_ROUNDS), 0, HUGE_TIMEOUT_S
    engine_lab = Lab(edit_spec(preset))
    engine = {edit: engine_ms(engine_lab, edit, max(rounds, 3)) for edit in edits}
    del engine_lab

    lab = Lab(edit_spec(preset))
    app = make_app(lab=lab)
    async with app.run_test(size=APP_SIZE) as pilot:
        await _settle(app, pilot)
        clock = FrameClock(app)
        cursor = app_edit(FLOOR, app, pilot)

        async def floor_ms() -> float:
            return await measure_app_edit(clock, app, pilot, cursor, naive=False, floor=True,
                                          timeout=timeout)

        for _ in range(warmup):
            await floor_ms()
        # a cursor move costs ~50 ms of set-up and pauses: taken 3× as often as an edit,
        # so one slow sample (a busy neighbour) does not move the yardstick of every ratio
        floors = [await floor_ms() for _ in range(3 * max(rounds, 3))]
        floor = median(floors)
        for edit in edits:
            steps = app_edit(edit, app, pilot)
            comparison = Comparison(
                name=f"{edit} · {preset}", a_label="inspector diff (tuilab)",
                b_label="full inspector rebuild", unit="ms", higher_is_better=False)

            settled: list[float] = []

            async def ours(steps: AppEdit = steps, settled: list[float] = settled) -> float:
                return await measure_app_edit(clock, app, pilot, steps, naive=False,
                                              timeout=timeout, settled=settled)

            async def naive(steps: AppEdit = steps) -> float:
                return await measure_app_edit(clock, app, pilot, steps, naive=True,
                                              timeout=timeout)

            await alternate_async(ours, naive, rounds=rounds, warmup=warmup,
                                  comparison=comparison)
            snapshot = lab.snapshot
            comparison.note = (f"{len(snapshot.modules)} modules, "
                               f"{len(snapshot.parameters)} parameters in the inspector")
            rows.append(edit_row(comparison, preset, edit, engine[edit], floor, floors, settled))
    return rows


def edit_row(comparison: Comparison, preset: str, edit: str, engine: list[float], floor: float,
             floors: list[float], settled: list[float]) -> dict[str, Any]:
    """One edit's figures and its verdict: ≤ FLOOR_GOAL × the floor, and on the big models
    ≤ REBUILD_GOAL × the full rebuild."""
    ours_ms = median(comparison.a)
    of_floor = ours_ms / floor if floor > 0 else float("inf")
    rebuild_goal = REBUILD_GOAL if preset in BIG_MODELS else None
    met = of_floor <= FLOOR_GOAL and (rebuild_goal is None or comparison.ratio <= rebuild_goal)
    return {**comparison.to_json(), "preset": preset, "edit": edit,
            "engine_ms": median(engine), "engine_samples": engine, "floor_ms": floor,
            "floor_samples": floors, "of_floor": of_floor, "floor_goal": FLOOR_GOAL,
            "all_panels_ms": median(settled) if settled else None,
            "all_panels_samples": settled,
            "rebuild_goal": rebuild_goal, "met": met}
