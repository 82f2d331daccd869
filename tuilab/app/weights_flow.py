"""Saving and loading weights from the app: `w` saves, `W` loads, for the selected node.

A mixin of the App (its own room, so app.py only lists it): the selected node (the root for
the whole model) is what is saved or loaded, as seed 002 loads a pre-trained sub-block. The
path prompt's default names a file that does not exist yet; an existing file is overwritten
only after a confirmation whose default answer is Cancel. The checks are the CLI's
(`core.weights`): a file whose names or shapes do not fit loads nothing, and the message
names what does not fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuilab.app.screens.dialogs import ConfirmScreen, TextPrompt
from tuilab.core.errors import TuilabError

if TYPE_CHECKING:
    from tuilab.core.lab import Lab, LabUpdate


def free_name(stem: str, suffix: str = ".safetensors", folder: Path | None = None) -> Path:
    """`stem.safetensors`, or `stem-2.safetensors`, … : the first name no file has."""
    folder = folder or Path.cwd()
    candidate = folder / f"{stem}{suffix}"
    number = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{number}{suffix}"
        number += 1
    return candidate


def _stem(lab: Lab, node: str) -> str:
    safe = node.replace(".", "_")
    return f"{lab.name}-{safe}" if node else lab.name


class WeightsActions:
    """`action_save_weights` / `action_load_weights` for the App (which provides the rest)."""

    last_weights_path: str | None = None

    def _weights_target(self) -> tuple[Lab, str, str] | None:
        """The lab, the selected node's path ("" for the root) and how to name it."""
        lab = self._need_lab()  # type: ignore[attr-defined]
        if lab is None:
            return None
        node = self.builder.selected_path or ""  # type: ignore[attr-defined]
        return lab, node, node or "the whole model"

    def action_save_weights(self) -> None:
        target = self._weights_target()
        if target is None:
            return
        lab, node, what = target

        def chosen(text: str | None) -> None:
            if not text:
                return
            path = Path(text).expanduser()
            if path.suffix.lower() != ".safetensors":
                path = path.with_name(path.name + ".safetensors")
            if path.exists():
                self.push_screen(  # type: ignore[attr-defined]
                    ConfirmScreen("Overwrite?", f"{path} exists. Overwrite it with the weights "
                                  f"of {what}?", yes="Overwrite", no="Cancel"),
                    lambda yes: self._save_weights(lab, node, path, overwrite=True)
                    if yes else None)
                return
            self._save_weights(lab, node, path, overwrite=False)

        self.push_screen(  # type: ignore[attr-defined]
            TextPrompt(f"Save the weights of {what}", str(free_name(_stem(lab, node))),
                       hint="safetensors: the state_dict, tensors only"), chosen)

    def _save_weights(self, lab: Lab, node: str, path: Path, *, overwrite: bool) -> None:
        try:
            update = lab.save_state_dict(path, node, overwrite=overwrite)
        except TuilabError as error:
            self._error(error)  # type: ignore[attr-defined]
            return
        self.last_weights_path = str(path)
        self._weights_done(update)

    def action_load_weights(self) -> None:
        target = self._weights_target()
        if target is None:
            return
        lab, node, what = target
        default = self.last_weights_path or f"{_stem(lab, node)}.safetensors"

        def chosen(text: str | None) -> None:
            if not text:
                return
            try:
                update = lab.load_state_dict(text, node)
            except TuilabError as error:
                self._error(error)  # type: ignore[attr-defined]
                return
            self.last_weights_path = text
            self._weights_done(update)

        self.push_screen(  # type: ignore[attr-defined]
            TextPrompt(f"Load weights into {what}", default,
                       hint=".safetensors, or .pt read with weights_only=True; all or "
                       "nothing: names and shapes must fit"), chosen)

    def _weights_done(self, update: LabUpdate) -> None:
        self._apply(update, reshape=False)  # type: ignore[attr-defined]
        self.notify(update.description, markup=False)  # type: ignore[attr-defined]
        panel = self.run_panel()  # type: ignore[attr-defined]
        if panel is not None:  # the Params tab shows the values just loaded
            panel.show_parameters(update.path or "")
