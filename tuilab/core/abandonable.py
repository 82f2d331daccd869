"""Calling a user's own code where a call that never returns can be left behind.

A user's ``forward`` may loop for ever (``while True``). A Python thread cannot be killed, and
the thread pools behind Textual's workers and ``concurrent.futures`` are joined when the
interpreter exits, so one stuck call used to keep the process alive after quitting, a core
busy, until SIGKILL. Calls made through :func:`run_abandonable` run in a *daemon* thread of
their own: the caller polls the returned future (and can warn while it runs), and
:func:`stuck_calls` tells the launcher that the process must end with ``os._exit`` after its
own clean-up, because the interpreter's normal exit would wait for that thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as WaitTimeout
from typing import TypeVar

__all__ = ["Abandoned", "call_abandonable", "run_abandonable", "stuck_calls"]

T = TypeVar("T")

_running: set[threading.Thread] = set()
_lock = threading.Lock()


def run_abandonable(fn: Callable[[], T], *, name: str = "user-code") -> Future[T]:
    """Start ``fn()`` in a daemon thread; its result or exception lands in the future."""
    future: Future[T] = Future()
    future.set_running_or_notify_cancel()

    def body() -> None:
        try:
            result = fn()
        except BaseException as error:  # the user's code may raise anything
            future.set_exception(error)
        else:
            future.set_result(result)
        finally:
            with _lock:
                _running.discard(threading.current_thread())

    thread = threading.Thread(target=body, name=f"tuilab-{name}", daemon=True)
    with _lock:
        _running.add(thread)
    thread.start()
    return future


class Abandoned(Exception):
    """The caller stopped waiting (its worker was cancelled); the call may still be running."""


def call_abandonable(fn: Callable[[], T], *, cancelled: threading.Event, poll_s: float = 0.25,
                     name: str = "user-code") -> T:
    """``fn()`` in a daemon thread, waited for from a worker that may be cancelled.

    A Textual thread worker blocked inside user code would keep the app's exit waiting (its
    thread pool is joined); waiting here instead returns as soon as ``cancelled`` is set,
    raising :class:`Abandoned` and leaving the call behind in its daemon thread."""
    future = run_abandonable(fn, name=name)
    while True:
        try:
            return future.result(timeout=poll_s)
        except WaitTimeout:
            if cancelled.is_set():
                raise Abandoned(name) from None


def stuck_calls() -> int:
    """How many calls started with :func:`run_abandonable` have not returned yet."""
    with _lock:
        return sum(1 for thread in _running if thread.is_alive())
