"""Full garbage collections between keys, not inside them.

CPython collects its oldest generation once ten younger collections have passed; with the
app's objects alive that walk took 36–100 ms on the 2-core machine, and it started wherever
the allocation count ran out — often inside an edit's key → frame span (an edit on gpt2_xl
snapshots ~1,000 rows and relabels tree nodes, which allocates). Measured by the bench's
edits section (`python -m tuilab.bench.run --sections edits`), one such collection tripled
that edit's latency.

While the app runs, the automatic full collection is pushed far off (young generations
collect as usual), and a quarter-second tick runs it when CPython would have (ten younger
collections since the last full one) *and* the app has been quiet for `QUIET_S` since its
last update: between edits, not inside one. A long burst without a pause still collects once
`OVERDUE` younger collections have passed, so memory stays bounded. The thresholds the app
found are restored when it unmounts (tests run many apps in one process).
"""

from __future__ import annotations

import gc
import time
from typing import Any

DUE = 10
"""Younger collections since the last full one after which a full one is due (CPython's
default third threshold)."""
OVERDUE = 100
"""... after which it runs even in the middle of a burst of edits."""
QUIET_S = 0.5
"""Seconds since the last update before a due collection runs."""
TICK_S = 0.25
_FAR = 1_000_000


class IdleCollector:
    """Runs the full garbage collections of one app while it is quiet."""

    def __init__(self) -> None:
        self._saved: tuple[int, ...] | None = None
        self._last_update = 0.0
        self.collections = 0
        """Full collections run here (tests read it)."""

    def install(self, app: Any) -> None:
        """Take over the full collections for as long as `app` runs."""
        if self._saved is None:
            self._saved = gc.get_threshold()
            young, middle = self._saved[:2]
            gc.set_threshold(young, middle, _FAR)
        app.set_interval(TICK_S, self.tick, name="idle collector")

    def uninstall(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None

    def updated(self) -> None:
        """The app showed a change: hold the collection until it has been quiet a while."""
        self._last_update = time.monotonic()

    def tick(self) -> None:
        """Collect if a full collection is due and the app is quiet (or it is long overdue)."""
        pending = gc.get_count()[2]
        if pending < DUE or not gc.isenabled():
            return
        quiet = time.monotonic() - self._last_update >= QUIET_S
        if quiet or pending >= OVERDUE:
            gc.collect()
            self.collections += 1
