"""Where tuilab's shipped data lives, whether it runs from a checkout or from a wheel.

`presets/` and `assets/` sit at the top of the repository (data, never code). A wheel maps
them into the package as `tuilab/presets` and `tuilab/assets` (see pyproject.toml); an
editable install or a plain checkout finds them beside the package instead.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def shipped_dir(name: str) -> Path:
    """The folder `name` ("presets" or "assets"), installed copy first, checkout second."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"tuilab's {name}/ folder is missing from this installation")


def presets_dir() -> Path:
    return shipped_dir("presets")


def assets_dir() -> Path:
    return shipped_dir("assets")
