"""Sizes written for people (no PyTorch here: the app's header and the CLI both use it)."""

from __future__ import annotations


def size_text(nbytes: int, *, digits: int = 1) -> str:
    """`241.0 KiB`: binary units, whole bytes below a KiB."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{int(value)} B" if unit == "B" else f"{value:.{digits}f} {unit}"
        value /= 1024
    return f"{value:.{digits}f} TiB"
