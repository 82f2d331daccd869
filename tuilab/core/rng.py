"""PyTorch's global random generator, shared by the lab's threads.

The code log replays a session by seeding where the lab seeded (`torch.manual_seed(n)`) and
drawing in the same order. A thread that draws in between (the shape summary's fallback run on
the CPU builds a throwaway model) would shift what the lab's next constructor gets, so every
seeded action holds `RNG_LOCK`, and work whose random numbers must not count runs under
`untracked()`, which also puts the generator's state back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

RNG_LOCK = threading.RLock()


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Hold the generator for one action, seeded with `seed` first (None: not seeded)."""
    import torch

    with RNG_LOCK:
        if seed is not None:
            torch.manual_seed(seed)
        yield


@contextmanager
def untracked() -> Iterator[None]:
    """Draw freely inside; the global generator's state is as it was afterwards."""
    import torch

    with RNG_LOCK, torch.random.fork_rng(devices=[]):
        yield
