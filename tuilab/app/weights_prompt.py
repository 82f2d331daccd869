"""Trained weights of a user's own module (`tuilab file.py:NAME`, `tuilab.show`).

No workspace file holds such a module, so the weights a run produced exist only in this
process: quitting (or opening something else) asks to save them as safetensors, as unsaved
edits are asked about. Every dialog here defaults to the answer that keeps the work: the
question's focus is on Cancel, an empty or escaped file name saves nothing and quits nothing,
and an existing file is only replaced after a yes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tuilab.app.screens.dialogs import ConfirmScreen, TextPrompt, UnsavedScreen
from tuilab.core.errors import TuilabError

if TYPE_CHECKING:
    from textual.app import App

    from tuilab.core.lab import Lab

SUFFIX = ".safetensors"


def ask_to_save_weights(app: App[object], lab: Lab, what: str,
                        proceed: Callable[[], None]) -> None:
    """Save / discard / cancel for trained, unsaved weights; `proceed` after save or discard."""

    def answer(choice: str | None) -> None:
        if choice == "save":
            save_weights_as(app, lab, proceed)
        elif choice == "discard":
            proceed()

    app.push_screen(UnsavedScreen(
        what, title="Trained weights not saved",
        body=f"{lab.name} was trained in this session and its weights are only in memory."),
        answer)


def save_weights_as(app: App[object], lab: Lab, then: Callable[[], None] | None = None) -> None:
    """Ask for a .safetensors file name and write the weights there."""

    def done(text: str | None) -> None:
        if not text:
            return
        if not text.endswith(SUFFIX):
            text += SUFFIX
        if Path(text).expanduser().exists():
            app.push_screen(ConfirmScreen("Overwrite?", f"{text} exists: replace it with "
                                          f"{lab.name}'s weights?", yes="Overwrite",
                                          no="Cancel"),
                            lambda yes: _write(app, lab, text, then) if yes else None)
            return
        _write(app, lab, text, then)

    app.push_screen(TextPrompt("Save trained weights as", lab.weights_path(),
                               hint="safetensors; load them back with "
                               "model.load_state_dict(safetensors.torch.load_file(path))"),
                    done)


def _write(app: App[object], lab: Lab, text: str, then: Callable[[], None] | None) -> None:
    try:
        saved = lab.save_weights(text)
    except (TuilabError, OSError, ValueError) as error:  # WeightsError is a ValueError
        app.notify(str(error), title="weights not saved", severity="error", markup=False,
                   timeout=10)
        return
    app.notify(f"saved weights {saved}", markup=False)
    if then is not None:
        then()
