"""File names made from user-written names: a model called ``../../etc/x`` or ``a/b`` must
not make a default path that leaves the folder it is offered in."""

from __future__ import annotations

import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_STEM = 100


def safe_stem(name: str, fallback: str = "model") -> str:
    """`name` as one file name with no folder part: every run of characters other than
    letters, digits, ``_``, ``-`` and ``.`` becomes ``_``, and so does ``..``; dots,
    dashes and underscores at either end go (no hidden file, nothing read as an option); cut
    to MAX_STEM; `fallback` when nothing is left."""
    stem = re.sub(r"\.{2,}", "_", _UNSAFE.sub("_", name))
    stem = re.sub(r"_{2,}", "_", stem).strip("._-")[:MAX_STEM].rstrip("._-")
    return stem or fallback


def default_save_path(name: str, suffix: str = ".toml") -> str:
    """The Save-As suggestion for a model called `name`: a file in the current folder."""
    return safe_stem(name) + suffix


def same_file(a: Path, b: Path) -> bool:
    """Do two paths name one file (relative or absolute, through links)?"""
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return a == b
