"""A Tree that works out its own style once per repaint, not once per line.

Textual 8.2's ``Tree.render_line`` reads ``self.rich_style`` for every line it draws, and that
property walks every ancestor's styles to blend colours (~40 % of drawing a 24-line tree here,
measured with cProfile on the inspector's tree). The style cannot change within one
``render_lines`` call, so it is read once there and handed to each line. The line code itself
is Textual's (``_render_line``, private, as pinned to textual 8.2.x in pyproject).
"""

from __future__ import annotations

from typing import TypeVar

from rich.style import Style
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import Tree

NodeData = TypeVar("NodeData")


class LeanTree(Tree[NodeData]):
    """``Tree`` with one ``rich_style`` read per repaint."""

    _style_this_render: Style | None = None

    def render_lines(self, crop: Region) -> list[Strip]:
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
