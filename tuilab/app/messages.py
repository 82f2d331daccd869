"""The app's own messages: plain data posted by widgets and workers, handled by the App.

Workers run PyTorch in threads and post these (``post_message`` is thread-safe); the App's
handlers own the state and apply the change to the inspector, header and code log, so no
widget reaches into another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from tuilab.core.lab import Lab, LabUpdate


class LabChanged(Message):
    """An action (edit, mode change, run) changed the model: apply ``update.diff``."""

    def __init__(self, update: LabUpdate) -> None:
        super().__init__()
        self.update = update
        """What changed: description, PyTorch line, snapshot diff and the new snapshot."""


class CodeLine(Message):
    """A PyTorch line for the code log (a run's ``model(x)``, ``loss.backward()``...)."""

    def __init__(self, code: str) -> None:
        super().__init__()
        self.code = code
        """The line (or lines) of Python, shown syntax-highlighted."""


class LabReady(Message):
    """The loading worker built the lab (PyTorch imported, module built)."""

    def __init__(self, lab: Lab) -> None:
        super().__init__()
        self.lab = lab


class LabFailed(Message):
    """The loading worker could not build the lab; ``error`` says why."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class SummaryReady(Message):
    """A shape summary computed in a thread for spec version ``version``."""

    def __init__(self, summary: Any, version: int) -> None:
        super().__init__()
        self.summary = summary
        self.version = version


class MemoryReady(Message):
    """The memory plan (``core.memory.MemoryPlan``) for spec version ``version``, made after
    its shapes were shown; None where none could be made."""

    def __init__(self, plan: Any, version: int) -> None:
        super().__init__()
        self.plan = plan
        self.version = version


class SummaryFailed(Message):
    """The shape summary worker raised (not a shape error: those are in the summary)."""

    def __init__(self, error: str, version: int) -> None:
        super().__init__()
        self.error = error
        self.version = version
