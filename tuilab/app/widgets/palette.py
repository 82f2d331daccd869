"""The palette: every catalog block, grouped by family, with a search box.

The catalog is plain data (no PyTorch import), so the palette is drawn in the first frame,
before the lab has loaded. Each option shows the block's name and its one-line description;
the App reads :attr:`Palette.selected_block` when the user adds a block.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tuilab.core.catalog import BlockDef, blocks_by_family

START_BLOCK = "Linear"
"""Highlighted when the palette opens: the block a first model most often starts with (the
first in the catalog is an empty container, a poor first pick)."""


def _matches(block: BlockDef, words: list[str]) -> bool:
    haystack = f"{block.name} {block.family} {block.description} {block.class_name}".lower()
    return all(word in haystack for word in words)


def rank(block: BlockDef, query: str) -> int:
    """How well a block's name answers the search: 0 exact, 1 prefix, 2 inside the name,
    3 elsewhere (family, description). "sigmoid" puts Sigmoid before SiLU, whose description
    only mentions a sigmoid."""
    name = block.name.lower()
    if name == query:
        return 0
    if name.startswith(query):
        return 1
    return 2 if query in name else 3


def search(query: str) -> list[BlockDef]:
    """The blocks matching every word of `query`, best name match first, then catalog order
    (sorting is stable)."""
    words = query.lower().split()
    found = [b for blocks in blocks_by_family().values() for b in blocks if _matches(b, words)]
    key = " ".join(words)
    return sorted(found, key=lambda block: rank(block, key))


class Palette(Vertical):
    """Search box, grouped block list, and a detail line for the highlighted block."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # on a narrow screen the list is open only while the palette has focus: escape
        # closes it (the App puts the focus back on the model)
        Binding("escape", "app.focus_model", "Back to the model"),
    ]

    DEFAULT_CSS = """
    Palette { height: 1fr; }
    Palette > Input { margin: 0; border: none; height: 1; padding: 0 1; }
    Palette > Input:focus { border: none; background: $boost; }
    Palette > OptionList {
        height: 1fr; border: none; padding: 0;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    Palette > OptionList:focus { border: none; }
    Palette > #palette-detail { height: auto; max-height: 4; color: $text-muted; }
    """

    class Chosen(Message):
        """The user pressed enter (or clicked) on a block: add it after the selection."""

        def __init__(self, block: str) -> None:
            super().__init__()
            self.block = block

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search blocks…", id="palette-search")
        yield OptionList(id="palette-list")
        yield Static("", id="palette-detail", markup=False)

    def on_mount(self) -> None:
        self.border_title = "palette"
        self._fill("")

    @property
    def options(self) -> OptionList:
        return self.query_one("#palette-list", OptionList)

    @property
    def selected_block(self) -> str | None:
        """The highlighted block's palette name, or None when nothing is highlighted."""
        option_list = self.options
        index = option_list.highlighted
        if index is None:
            return None
        option = option_list.get_option_at_index(index)
        return option.id

    def select_block(self, name: str) -> None:
        """Highlight block `name` (clearing the search if it hides it)."""
        try:
            index = self.options.get_option_index(name)
        except Exception:
            self.query_one(Input).value = ""
            self._fill("")
            index = self.options.get_option_index(name)
        self.options.highlighted = index

    def _fill(self, query: str) -> None:
        """Every block grouped by family (no search), or the matches ranked best first with
        the highlight on the first (a search)."""
        option_list = self.options
        previous = self.selected_block if option_list.option_count else START_BLOCK
        option_list.clear_options()
        options: list[Option | None] = []
        if query.strip():
            options.extend(_option(block) for block in search(query))
            previous = None  # the best match, not the block highlighted before
        else:
            for family, blocks in blocks_by_family().items():
                if options:
                    options.append(None)
                options.append(Option(Text(family.upper(), style="bold"), disabled=True))
                options.extend(_option(block) for block in blocks)
        option_list.add_options(options)
        target = None
        if previous is not None:
            try:
                target = option_list.get_option_index(previous)
            except Exception:
                target = None
        if target is None:
            target = next((i for i in range(option_list.option_count)
                           if not option_list.get_option_at_index(i).disabled), None)
        option_list.highlighted = target
        if target is not None:
            option_list.scroll_to_highlight()
        self._show_detail()

    def _show_detail(self) -> None:
        from tuilab.core.catalog import get_block

        name = self.selected_block
        detail = self.query_one("#palette-detail", Static)
        if name is None:
            detail.update("no block matches")
            return
        block = get_block(name)
        args = ", ".join(a.name for a in block.args) or "no arguments"
        detail.update(f"{block.code_name}: {block.description} ({args})")

    @on(Input.Changed, "#palette-search")
    def _search(self, event: Input.Changed) -> None:
        event.stop()
        self._fill(event.value)

    @on(Input.Submitted, "#palette-search")
    def _search_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.options.focus()

    @on(OptionList.OptionHighlighted, "#palette-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self._show_detail()

    @on(OptionList.OptionSelected, "#palette-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.post_message(self.Chosen(event.option.id))


def _option(block: BlockDef) -> Option:
    prompt = Text.assemble((block.name, "bold"), "  ", (block.description, "dim"))
    prompt.no_wrap = True
    prompt.overflow = "ellipsis"
    return Option(prompt, id=block.name)
