"""The engine never imports the UI libraries; importing the package does not import torch."""

from __future__ import annotations

import subprocess
import sys

UI_LIBRARIES = ("textual", "rich", "plotext", "textual_plotext")


def _loaded_after(statement: str, names: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print(','.join(n for n in {names!r} if n in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return [name for name in result.stdout.strip().split(",") if name]


def test_core_does_not_import_the_ui() -> None:
    modules = ("tuilab.core.catalog", "tuilab.core.spec", "tuilab.core.edits",
               "tuilab.core.build", "tuilab.core.workspace", "tuilab.core.introspect",
               "tuilab.core.lab", "tuilab.core.tasks", "tuilab.core.weights",
               "tuilab.core.shapes", "tuilab.core.runtime", "tuilab.core.training",
               "tuilab.core.export")
    statement = "; ".join(f"import {m}" for m in modules)
    assert _loaded_after(statement, UI_LIBRARIES) == []


def test_the_palette_and_the_package_load_without_torch() -> None:
    """The app draws its first frame from the catalog before PyTorch has loaded."""
    assert _loaded_after("import tuilab, tuilab.core.catalog, tuilab.cli", ("torch",)) == []
