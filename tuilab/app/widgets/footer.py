"""The key footer, rebuilt only when the keys it would show changed.

Textual 8.2's ``Footer`` answers every "bindings changed" signal by scheduling its own
recompose after the next refresh, and a recompose unmounts and mounts every key widget
(~12 ms here, then a relayout and repaint of the screen, ~14 ms more). Each dialog opened over
the lab shows a footer of its own, on the lab's footer's row. The lab's footer was rebuilt
for the dialog anyway (with the lab's keys off, drawn under the dialog's footer where nobody
sees it), and again when the dialog closed, in the frames right after the edit the dialog
made. So this footer keeps at most one recompose pending, waits while a screen with its own
footer covers it, and skips the recompose when it would show what it shows.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer


class LabFooter(Footer):
    """``Footer`` rebuilt once per burst of binding changes, only when they change what it
    shows, and not while it is covered."""

    _recompose_pending = False
    _composed: tuple[tuple[Any, ...], ...] | None = None
    """The screen's bindings as the last compose read them."""

    def bindings_changed(self, screen: Screen) -> None:
        # Textual's own method, less the second scheduling.
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._recompose_pending:
            self._recompose_pending = True
            self.call_after_refresh(self._recompose_if_changed)

    def compose(self) -> ComposeResult:
        self._composed = self._shown_bindings() if self._bindings_ready else None
        yield from super().compose()

    def _shown_bindings(self) -> tuple[tuple[Any, ...], ...]:
        """What ``Footer.compose`` reads from the screen's bindings."""
        return tuple((key, binding.action, binding.show, binding.description, binding.tooltip,
                      binding.group, enabled, tooltip)
                     for key, (_node, binding, enabled, tooltip)
                     in self.screen.active_bindings.items())

    @property
    def covered(self) -> bool:
        """Is this footer under a screen that draws a footer of its own over it (a dialog, or a
        full screen)? It is rebuilt when its screen comes back, if it must be."""
        top = self.app.screen
        return top is not self.screen and getattr(top, "has_own_footer", not top.is_modal)

    async def _recompose_if_changed(self) -> None:
        self._recompose_pending = False
        if self.is_attached and not self.covered and self._shown_bindings() != self._composed:
            await self.recompose()
