"""The key footer, recomposed once per burst of binding changes.

Textual 8.2's ``Footer`` answers every "bindings changed" signal by scheduling its own
recompose after the next refresh, and a recompose unmounts and mounts every key widget.
Closing a dialog sends that signal twice before the next refresh (the focus comes back, and the
main screen resumes), so the footer was rebuilt twice in a row, ~20 ms each here, delaying the
frames that finish the edit the dialog made. This footer keeps at most one recompose pending.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class LabFooter(Footer):
    """``Footer`` with at most one pending recompose."""

    _recompose_pending = False

    def bindings_changed(self, screen: Screen) -> None:
        # Textual's own method, less the second scheduling.
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._recompose_pending:
            self._recompose_pending = True
            self.call_after_refresh(self._recompose_once)

    async def _recompose_once(self) -> None:
        self._recompose_pending = False
        await self.recompose()
