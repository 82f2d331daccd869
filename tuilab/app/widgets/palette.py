"""The palette: every catalog block, grouped by family, with a search box.

The catalog is plain data (no PyTorch import), so the palette is drawn in the first frame,
before the lab has loaded. Each option shows the block's name and its one-line description;
the App reads :attr:`Palette.selected_block` when the user adds a block.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tuilab.core.catalog import BlockDef, blocks_by_family


def _matches(block: BlockDef, words: list[str]) -> bool:
    haystack = f"{block.name} {block.family} {block.description} {block.class_name}".lower()
    return all(word in haystack for word in words)


class Palette(Vertical):
    """Search box, grouped block list, and a detail line for the highlighted block."""

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
        words = query.lower().split()
        option_list = self.options
        previous = self.selected_block if option_list.option_count else None
        option_list.clear_options()
        options: list[Option | None] = []
        for family, blocks in blocks_by_family().items():
            shown = [b for b in blocks if _matches(b, words)]
            if not shown:
                continue
            if options:
                options.append(None)
            options.append(Option(Text(family.upper(), style="bold"), disabled=True))
            for block in shown:
                prompt = Text.assemble((block.name, "bold"), "  ", (block.description, "dim"))
                prompt.no_wrap = True
                prompt.overflow = "ellipsis"
                options.append(Option(prompt, id=block.name))
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
