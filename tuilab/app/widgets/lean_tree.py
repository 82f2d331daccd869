"""A Tree whose changes repaint only the lines that changed.

An edit in the lab adds, removes or relabels a few rows of the builder and the inspector. With
Textual 8.2's ``Tree`` that frame cost 3-4× a cursor move's even on a 10-row model (measured
per widget in the edit's frame: reflow 2.2 ms, both trees and every container around them
repainted 6.3 ms, against 1.4 ms for the whole frame of a cursor move):

- Any added, removed, expanded or collapsed node calls ``_invalidate``, which repaints the
  whole widget and asks for a layout. The layout is wasted (the lines are built lazily when
  drawn, so it sees the old virtual size), and the repaint redraws every visible line; the
  compositor repaints the box around it, with every container in it.
- The virtual height is the line count, so every added row changes the widget's geometry, and
  Textual lays out the screen again and repaints the whole widget for that alone.

Here ``_invalidate`` only notes that the lines moved. When the frame collects what to repaint
(``_exchange_repaint_regions``), or when the tree is drawn at all (``render_lines``), the lines
are built and compared with what each visible row last showed; only the rows that differ are
repainted. The virtual height is at least the viewport's, so a tree whose rows fit keeps its
geometry when a row comes or goes (the space below the last row was blank either way); one
that scrolls still grows, and Textual relays and repaints it as before.

Lines are also kept by what they show (node, label version, the ancestors' guide shapes, hover
and selection, cursor, focus, width, style), not by line number, so a row that only moved down
is not drawn again: only its mouse metadata (``{"line": y}``, which clicks and hover read) is
set to its new number. And the style is read once per repaint, not once per line (Textual's
``render_line`` reads ``self.rich_style``, which walks every ancestor's styles).

The line drawing itself is Textual's (``_render_line``, private, as pinned to textual 8.2.x
in pyproject); ``tests/app/test_lean_tree.py`` checks what is drawn here against Textual's own
drawing after random changes.
"""

from __future__ import annotations

from typing import Any, TypeVar

from rich.segment import Segment
from rich.style import Style
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

NodeData = TypeVar("NodeData")

LineKey = tuple[Any, ...]
"""What a line shows, apart from the widget's style: see ``LeanTree._line_key``."""
BLANK: LineKey = ()
"""The key of a row below the last line."""


class LeanTree(Tree[NodeData]):
    """``Tree`` that repaints changed lines only and reuses lines by what they show."""

    _style_this_render: Style | None = None
    _lines_moved = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._drawn: LRUCache[tuple[LineKey, Style, Any], tuple[Strip, int]] = LRUCache(1024)
        """(line key, style, pseudo-classes) → (full-width strip, the line its metadata names)."""
        self._shown: dict[int, tuple[int, LineKey]] = {}
        """Visible row → (scroll offset, key of the line drawn there last)."""
        self._label_widths: dict[int, tuple[int, int]] = {}
        """Node id → (its version, its label's width in cells)."""
        super().__init__(*args, **kwargs)

    # --- what to repaint ---------------------------------------------------------------
    def _invalidate(self) -> None:
        self._clear_line_cache()
        self._updates += 1
        root = self.root
        if root._hover or root._selected:
            root._reset()  # as Textual does; when both are off it would only bump a version
        if self.styles.is_auto_height:  # its height is its line count: lay it out now
            self.refresh(layout=True)
            return
        self.repaint_changed_lines()

    def repaint_changed_lines(self) -> None:
        """Repaint, in the next frame, the visible rows that show something new (after
        nodes were added, moved or relabelled); which ones is worked out in that frame."""
        self._lines_moved = True
        self.refresh(Region(0, 0, 0, 0))  # puts the tree in the frame's list, nothing else

    def _exchange_repaint_regions(self) -> Any:
        self._mark_changed_rows()
        return super()._exchange_repaint_regions()

    def _mark_changed_rows(self) -> None:
        """Mark dirty the visible rows whose line differs from what was drawn there."""
        if not self._lines_moved:
            return
        self._lines_moved = False
        lines = self._tree_lines  # builds them; a changed virtual size repaints all by itself
        scroll_y = self.scroll_offset.y
        width = self.size.width
        dirty = [Region(0, row, width, 1) for row in range(self.size.height)
                 if self._shown.get(row) != (scroll_y, self._key_at(lines, row + scroll_y))]
        if dirty:
            self._set_dirty(*dirty)

    def _key_at(self, lines: list[Any], y: int) -> LineKey:
        return self._line_key(lines[y], y) if y < len(lines) else BLANK

    def _line_key(self, line: Any, y: int) -> LineKey:
        """Everything Textual's ``_render_line`` reads for this line, except its number and
        the widget's style."""
        path = line.path
        return (
            tuple(node._id for node in path),
            line.node._updates,  # its label and expansion (a parent's add bumps it too)
            # the guides: their shape and colour come from each ancestor's place, hover and
            # selection
            tuple((node.is_last, node._hover, node._selected) for node in path),
            line.last,
            self.cursor_line == y,
            self.hover_line == y,
            self.hover_line >= 0,
            self.has_focus,
            self._padded_width,
            self.show_root,
            self.show_guides,
            self.guide_depth,
        )

    @property
    def _padded_width(self) -> int:
        """The width Textual pads every line to."""
        return max(self.virtual_size.width, self.size.width)

    def get_label_width(self, node: TreeNode[NodeData]) -> int:
        """Kept per node version: building the lines asks for every expanded node's width,
        and Textual renders each label for it (~10 µs a row, 10 ms on gpt2_xl's inspector
        for every added row)."""
        known = self._label_widths.get(node._id)
        if known is not None and known[0] == node._updates:
            return known[1]
        width = super().get_label_width(node)
        self._label_widths[node._id] = (node._updates, width)
        return width

    def validate_virtual_size(self, size: Size) -> Size:
        """At least the viewport's height: a row more or less keeps the geometry while the
        rows fit (see the module's docstring). Counted from the built lines, not from `size`,
        which may be an earlier padded value."""
        lines = self._tree_lines_cached
        rows = len(lines) if lines is not None else size.height
        viewport = self.container_size.height - self.scrollbar_size_horizontal
        return Size(size.width, max(rows, viewport))

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size,
                      layout: bool = True) -> bool:
        resized = super()._size_updated(size, virtual_size, container_size, layout)
        self.virtual_size = self.virtual_size  # padded to the new viewport (a shrunk one too)
        return resized

    # --- drawing -----------------------------------------------------------------------
    def render_lines(self, crop: Region) -> list[Strip]:
        self._mark_changed_rows()
        self._style_this_render = self.rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._style_this_render = None

    def render_line(self, y: int) -> Strip:
        style = self._style_this_render
        if style is None:  # called outside a repaint
            style = self.rich_style
        scroll_x, scroll_y = self.scroll_offset
        return self._render_line(y + scroll_y, scroll_x, scroll_x + self.size.width, style)

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        line_key = self._key_at(self._tree_lines, y)
        scroll_y = self.scroll_offset.y
        self._shown[y - scroll_y] = (scroll_y, line_key)
        if line_key is BLANK:
            return super()._render_line(y, x1, x2, base_style)
        key = (line_key, base_style, self._pseudo_class_state)
        drawn = self._drawn.get(key)
        if drawn is None:
            strip = super()._render_line(y, 0, self._padded_width, base_style)
        else:
            strip, drawn_at = drawn
            if drawn_at != y:
                strip = _with_line_meta(strip, y)
        self._drawn[key] = (strip, y)
        return strip.crop(x1, x2)

    # --- when everything changes -----------------------------------------------------------
    def clear(self) -> LeanTree[NodeData]:
        self._forget_drawn()  # node ids start again from 0: keys would name other nodes
        return super().clear()

    def notify_style_update(self) -> None:
        self._forget_drawn()  # component styles (guides, cursor) are not in the keys
        super().notify_style_update()
        self.refresh()

    def _forget_drawn(self) -> None:
        self._drawn.clear()
        self._shown.clear()
        self._label_widths.clear()


def _with_line_meta(strip: Strip, y: int) -> Strip:
    """The same cells, with mouse metadata naming line `y` (applied last, so it wins)."""
    post = Style.from_meta({"line": y})
    return Strip(Segment.apply_style(strip._segments, post_style=post), strip.cell_length)
