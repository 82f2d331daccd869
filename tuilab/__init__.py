"""tuilab: a terminal lab for PyTorch models.

`tuilab.show(model)` opens the lab on a live module from a script or a notebook. Everything
heavy (Textual, the engine) is imported inside it, so `import tuilab` stays instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "show"]


def show(model: Any, input_shape: Sequence[int] | str | None = None, *,
         name: str | None = None) -> None:
    """Open the lab on `model` (an `nn.Module`) and block until the user quits.

    `input_shape` includes the batch dimension, e.g. ``(1, 3, 32, 32)``; without it tuilab
    tries what the model says about itself (``image_size``, the first Conv, Embedding or
    Linear) and asks when nothing runs. The module is inspected, run and
    trained as it is (palette edits are off: it was not built from the palette).
    """
    from torch import nn

    from tuilab.app.app import make_app
    from tuilab.core.usercode import module_lab

    if not isinstance(model, nn.Module):
        raise TypeError(f"tuilab.show needs an nn.Module, not {type(model).__name__}")
    shape = input_shape if input_shape is None or isinstance(input_shape, str) else tuple(
        input_shape)
    make_app(lab=module_lab(model, name or type(model).__name__, shape)).run()
