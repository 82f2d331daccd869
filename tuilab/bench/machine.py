"""What the figures were measured on: they mean nothing without the machine beside them.

Ratios travel between machines far better than absolute times, but the overhead of a Python
trainer still depends on how fast one core is against the kernels it launches, so the header
of every report names the CPU, the cores, the Python, torch and textual versions, and the
devices that were measured.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    """Total RAM in GiB (MemTotal), None where /proc/meminfo is absent."""
    value = _meminfo("MemTotal")
    return None if value is None else value / 2**30


def available_bytes() -> int | None:
    """RAM the kernel could give a new process now (MemAvailable): decides the 6.5 GB build."""
    return _meminfo("MemAvailable")


def _meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def cuda_name() -> str | None:
    """The first CUDA GPU's name, None when torch sees none (then GPU rows are skipped)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def machine_info() -> dict[str, Any]:
    """The header of the report, as plain JSON data."""
    import torch

    gpu = cuda_name()
    memory = memory_gib()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": None if memory is None else round(memory, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "textual": _version("textual"),
        "tuilab": _version("tuilab"),
        "devices": ["cpu"] + ([f"cuda ({gpu})"] if gpu else []),
        # Without a bytecode cache every start compiles tuilab's own modules (0.05-0.1 s of
        # the start-up rows): say so, since a user's machine usually keeps the cache.
        "bytecode_cache": not os.environ.get("PYTHONDONTWRITEBYTECODE"),
    }
