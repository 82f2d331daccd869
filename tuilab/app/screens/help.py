"""The help screen: every key, grouped, from the same table the App binds (never out of date)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from tuilab.app.screens.dialogs import Dialog, modal_frame_css


class HelpScreen(Dialog[None]):
    """Keys, grouped by what they do; escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
        Binding("question_mark", "close", "Close", show=False),
        Binding("f1", "close", "Close", show=False),
    ]

    DEFAULT_CSS = modal_frame_css("HelpScreen", width="90%", max_width="100", height="90%",
                                  max_height=None) + """
    HelpScreen #help-title { text-style: bold; height: 1; }
    """

    def __init__(self, groups: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> None:
        super().__init__()
        self.groups = groups

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for title, rows in self.groups:
            table.add_row(Text(title, style="bold underline"), "")
            for keys, description in rows:
                table.add_row(keys, description)
            table.add_row("", "")
        with Vertical():
            yield Static("tuilab keys  (ctrl+p: command palette with every action)",
                         id="help-title")
            with VerticalScroll():
                yield Static(table, id="help-table")

    def action_close(self) -> None:
        self.dismiss(None)
