"""Full garbage collections run between keys, not inside an edit (app/collector.py).

A full collection walked the app's objects for 36-100 ms on the 2-core machine wherever
CPython's count ran out, often inside an edit's key → frame span. Counted, not timed: the
automatic full collection is off while the app runs, a due one runs when the app is quiet,
none runs while updates keep coming, and CPython's thresholds come back when the app ends.
"""

from __future__ import annotations

import gc

from app_helpers import lab_app, settle

from tuilab.app import collector


def make_due() -> None:
    """Ten generation-1 collections: CPython would now run a full one on its own."""
    for _ in range(collector.DUE):
        gc.collect(1)


async def test_a_due_full_collection_waits_for_a_quiet_app(monkeypatch) -> None:
    thresholds = gc.get_threshold()
    app = lab_app("mlp")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert gc.get_threshold()[2] > 1000  # CPython will not start one inside a key
        full: list[int] = []

        def note(phase: str, info: dict) -> None:
            if phase == "start" and info["generation"] == 2:
                full.append(1)

        gc.callbacks.append(note)
        try:
            made = app.collector.collections
            make_due()
            app.collector.updated()  # an edit was just shown: not now
            app.collector.tick()
            assert app.collector.collections == made and not full
            monkeypatch.setattr(collector, "QUIET_S", 0.0)  # ... and now it has been quiet
            app.collector.tick()
            assert app.collector.collections == made + 1 and full == [1]
            app.collector.tick()  # nothing due any more
            assert app.collector.collections == made + 1
            shown_at = app.collector._last_update
            await pilot.press("a")  # a real edit goes through `_apply`, which holds it again
            await settle(pilot)
            assert app.collector._last_update > shown_at
            monkeypatch.setattr(collector, "QUIET_S", 60.0)
            make_due()
            app.collector.tick()
            assert app.collector.collections == made + 1
        finally:
            gc.callbacks.remove(note)
    assert gc.get_threshold() == thresholds


async def test_a_long_burst_still_collects() -> None:
    app = lab_app("mlp")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        made = app.collector.collections
        for _ in range(collector.OVERDUE):
            gc.collect(1)
        app.collector.updated()
        app.collector.tick()
        assert app.collector.collections == made + 1
