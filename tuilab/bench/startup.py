"""Start-up: `tuilab` in a real pseudo-terminal against `python -c "import torch"`.

The app is started as a user starts it (the installed `tuilab` script, or `python -m tuilab`
where none is installed) with stdin/stdout on a pseudo-terminal of 120x40, and what it writes
is read as it arrives. Two moments are taken from the bytes themselves, so the app needs no
timing hook of its own:

* **first frame**: the first screen it paints, recognised by the palette's border title,
  drawn before PyTorch is imported (the header says "loading PyTorch…" then);
* **ready**: the header's parameter count (" params"), which appears only once the worker has
  imported torch, built the preset and filled the inspector (`App._lab_ready`).

Then ctrl+q quits it. The baseline is the bare interpreter importing torch, run alternately
with the app (ABBA) so that both see the same page cache and the same background load. The
user's autosave folder is pointed at a fresh temporary one so no "restore?" dialog appears.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass
from pathlib import Path

from tuilab.bench.harness import Comparison, timed

FIRST_FRAME_MARK = b"palette"
READY_MARK = b" params"
SIZE = (120, 40)
GOAL_FIRST_FRAME_S = 0.5
GOAL_READY_RATIO = 1.3


@dataclass(frozen=True)
class StartTimes:
    """Seconds from the process start to its first frame and to ready."""

    first_frame: float
    ready: float


def tuilab_command(preset: str = "mlp") -> list[str]:
    """The installed `tuilab` script beside this interpreter, else `python -m tuilab`."""
    script = Path(sys.executable).with_name("tuilab")
    if script.exists():
        return [str(script), preset]
    found = shutil.which("tuilab")
    if found:
        return [found, preset]
    return [sys.executable, "-m", "tuilab", preset]


def _set_size(fd: int, columns: int, lines: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))


def time_app_start(command: list[str], *, timeout: float = 60.0) -> StartTimes:
    """Run the app in a pseudo-terminal; return when it became visible and when ready."""
    master, slave = os.openpty()
    _set_size(slave, *SIZE)
    data_dir = tempfile.mkdtemp(prefix="tuilab-bench-")
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(SIZE[0]),
           "LINES": str(SIZE[1]), "TUILAB_DATA_DIR": data_dir}
    env.pop("TEXTUAL", None)  # no devtools
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env,
                               start_new_session=True, close_fds=True)
    os.close(slave)
    seen = bytearray()
    first = ready = None
    try:
        deadline = start + timeout
        while ready is None:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"tuilab was not ready within {timeout:.0f} s; it wrote: "
                                   f"{bytes(seen[-300:])!r}")
            readable, _, _ = select.select([master], [], [], min(left, 0.5))
            if not readable:
                if process.poll() is not None:
                    raise RuntimeError(f"tuilab exited with {process.returncode} before it "
                                       f"was ready: {bytes(seen[-300:])!r}")
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                raise RuntimeError(f"tuilab closed its terminal before it was ready: "
                                   f"{bytes(seen[-300:])!r}")
            now = time.perf_counter()
            seen += chunk
            if first is None and FIRST_FRAME_MARK in seen:
                first = now - start
            if first is not None and READY_MARK in seen:
                ready = now - start
        os.write(master, b"\x11")  # ctrl+q
        _drain_until_exit(master, process)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        os.close(master)
        shutil.rmtree(data_dir, ignore_errors=True)
    return StartTimes(first_frame=first, ready=ready)


def _drain_until_exit(master: int, process: subprocess.Popen[bytes],
                      timeout: float = 10.0) -> None:
    """Keep reading (a full terminal buffer would block the app's exit) until it ends."""
    deadline = time.perf_counter() + timeout
    while process.poll() is None and time.perf_counter() < deadline:
        readable, _, _ = select.select([master], [], [], 0.1)
        if readable:
            try:
                if not os.read(master, 65536):
                    break
            except OSError:
                break
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=max(0.1, deadline - time.perf_counter()))


def time_torch_import() -> float:
    """Seconds for a fresh interpreter to import torch and exit: the floor for "ready"."""
    return timed(lambda: subprocess.run([sys.executable, "-c", "import torch"], check=True,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))


def compare_startup(*, rounds: int, warmup: int = 1,
                    preset: str = "mlp") -> tuple[Comparison, Comparison]:
    """(first frame vs torch import, ready vs torch import), from the same paired rounds."""
    command = tuilab_command(preset)
    first = Comparison(name="first frame", a_label="tuilab first frame",
                       b_label='python -c "import torch"', unit="s", higher_is_better=False,
                       note=" ".join(Path(command[0]).name.split() + command[1:]))
    ready = Comparison(name="ready (torch loaded, preset built and inspected)",
                       a_label="tuilab ready", b_label='python -c "import torch"', unit="s",
                       higher_is_better=False, note=first.note)
    for _ in range(warmup):
        time_app_start(command)
        time_torch_import()
    for i in range(rounds):
        if i % 2 == 0:
            app = time_app_start(command)
            bare = time_torch_import()
        else:
            bare = time_torch_import()
            app = time_app_start(command)
        first.a.append(app.first_frame)
        first.b.append(bare)
        ready.a.append(app.ready)
        ready.b.append(bare)
    return first, ready
