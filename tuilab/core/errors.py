"""The errors tuilab raises for things a user can get wrong.

Each one carries *where* the problem is (a node path, a file, a field) next to *what* went
wrong and what is allowed, so the CLI can print one line and exit 2 and the app can put the
message beside the field that caused it. They subclass ValueError so plain callers can catch
them without knowing tuilab.
"""

from __future__ import annotations


class TuilabError(ValueError):
    """A problem the user can fix; `where` names the node, argument, file or field."""

    def __init__(self, message: str, *, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        # "lr: lr must be a positive number" says the field twice: once is enough.
        if not self.where or self.message.startswith(f"{self.where} "):
            return self.message
        return f"{self.where}: {self.message}"


class ArgumentError(TuilabError):
    """A block argument that has the wrong type or is out of range."""


class EditError(TuilabError):
    """An edit of the model spec that was refused; the spec is left exactly as it was."""


class SpecFileError(TuilabError):
    """A workspace or preset file that cannot be read as a tuilab model."""


class ModeError(TuilabError):
    """A device or dtype that cannot be used for this model here."""


class FileChangedError(SpecFileError):
    """The file on disk changed since it was read: saving would overwrite someone's work."""


class BuildError(TuilabError):
    """A block's own constructor refused its (individually valid) arguments; `where` names
    the node, so a file that validates but cannot be built says which block and why."""


class RunError(TuilabError):
    """A forward or backward pass that failed; `where` names the module that raised, and the
    model is left as it was before the pass (BatchNorm statistics included)."""
