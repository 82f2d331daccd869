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


def rate_text(steps_per_s: float) -> str:
    """`743 steps/s`, `2.4 steps/s`, `3.1 s/step`: a slow model (a ResNet on the CPU) shows
    its real pace instead of "0 steps/s"; "measuring…" until a step has finished."""
    if not steps_per_s > 0:
        return "measuring…"
    if steps_per_s >= 10:
        return f"{steps_per_s:,.0f} steps/s"
    if steps_per_s >= 1:
        return f"{steps_per_s:.1f} steps/s"
    return f"{1 / steps_per_s:.1f} s/step"
