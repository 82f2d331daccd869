"""A 2-D grid of numbers drawn as coloured half-blocks: Grad-CAM heat and decision regions.

Why half-blocks: a terminal cell is about twice as tall as it is wide, so drawing ``▀`` with the
upper pixel as foreground and the lower one as background gives two square-ish pixels per
cell — an 8×8 digit fits in 8×4 cells, a 48×48 decision grid in 48×24, with no image protocol.
The widget is a line-API widget (``render_line``): it builds the colour matrix once per data or
size change and hands Textual one cached :class:`~textual.strip.Strip` per row, so a repaint
costs nothing.

It takes plain lists (``tuilab.core.views`` computes them): a heat map in [0, 1] optionally
blended over a grey image, or a grid of class ids with data points on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

RGB = tuple[int, int, int]
Pixel = RGB | None
"""A colour, or None for a transparent pixel (the widget's own background shows)."""

#: Heat colour stops (an inferno-like ramp): dark purple → red → orange → pale yellow.
HEAT_STOPS: tuple[RGB, ...] = (
    (0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164),
)
#: Class colours: a light fill for a region, the strong one for a data point of that class.
CLASS_COLOURS: tuple[RGB, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)


def heat_colour(value: float) -> RGB:
    """The ramp colour for ``value`` in [0, 1] (clamped; nan reads as 0)."""
    v = 0.0 if value != value else min(1.0, max(0.0, value))
    pos = v * (len(HEAT_STOPS) - 1)
    i = min(int(pos), len(HEAT_STOPS) - 2)
    t = pos - i
    a, b = HEAT_STOPS[i], HEAT_STOPS[i + 1]
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t),
            round(a[2] + (b[2] - a[2]) * t))


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (round(a[0] * (1 - t) + b[0] * t), round(a[1] * (1 - t) + b[1] * t),
            round(a[2] * (1 - t) + b[2] * t))


def class_colour(index: int, *, strong: bool) -> RGB:
    """Class ``index``'s colour: the full one for points, a darkened one for its region."""
    base = CLASS_COLOURS[index % len(CLASS_COLOURS)]
    return base if strong else _mix(base, (0, 0, 0), 0.6)


@dataclass(frozen=True)
class HeatmapData:
    """What to draw, as a matrix of RGB pixels (rows top to bottom) plus a caption."""

    pixels: tuple[tuple[Pixel, ...], ...]
    points: tuple[tuple[float, float, RGB], ...] = field(default=())
    """``(u, v, colour)`` markers in [0, 1] coordinates, drawn after scaling."""

    @property
    def height(self) -> int:
        return len(self.pixels)

    @property
    def width(self) -> int:
        return len(self.pixels[0]) if self.pixels else 0


def heat_pixels(heat: Sequence[Sequence[float]],
                base: Sequence[Sequence[float]] | None = None,
                alpha: float = 0.6) -> tuple[tuple[RGB, ...], ...]:
    """Heat colours, blended ``alpha`` over a grey ``base`` image of the same size if given."""
    rows = []
    for r, line in enumerate(heat):
        row = []
        for c, value in enumerate(line):
            colour = heat_colour(value)
            if base is not None:
                g = base[r][c]
                g = 0.0 if g != g else min(1.0, max(0.0, g))
                level = round(255 * g)
                colour = _mix((level, level, level), colour, alpha)
            row.append(colour)
        rows.append(tuple(row))
    return tuple(rows)


def grey_pixels(image: Sequence[Sequence[float]]) -> tuple[tuple[RGB, ...], ...]:
    """A grey image in [0, 1] as RGB pixels."""
    def grey(value: float) -> RGB:
        v = 0.0 if value != value else min(1.0, max(0.0, value))
        level = round(255 * v)
        return (level, level, level)

    return tuple(tuple(grey(v) for v in row) for row in image)


def class_pixels(grid: Sequence[Sequence[int]],
                 confidence: Sequence[Sequence[float]] | None = None
                 ) -> tuple[tuple[RGB, ...], ...]:
    """Region colours per class, fainter where the model is unsure (if ``confidence`` given)."""
    rows = []
    for r, line in enumerate(grid):
        row = []
        for c, cls in enumerate(line):
            colour = class_colour(int(cls), strong=False)
            if confidence is not None:
                sure = min(1.0, max(0.0, confidence[r][c]))
                colour = _mix((24, 24, 24), colour, 0.35 + 0.65 * sure)
            row.append(colour)
        rows.append(tuple(row))
    return tuple(rows)


def _cell(top: Pixel, bottom: Pixel) -> Segment:
    """One cell showing two pixels: ``▀`` in the top colour over the bottom one."""
    if top is None and bottom is None:
        return Segment(" ")
    if top is None:
        assert bottom is not None
        return Segment("▄", Style(color=Color.from_rgb(*bottom)))
    return Segment("▀", Style(color=Color.from_rgb(*top),
                              bgcolor=Color.from_rgb(*bottom) if bottom is not None else None))


class Heatmap(Widget):
    """Draws :class:`HeatmapData` scaled to fit, keeping its aspect ratio (nearest pixel).

    Set :attr:`data` (or call :meth:`show_heat` / :meth:`show_classes`); ``None`` shows the
    ``placeholder`` text.
    """

    DEFAULT_CSS = """
    Heatmap {
        width: 1fr;
        height: 1fr;
        min-height: 4;
    }
    """

    data: reactive[HeatmapData | None] = reactive(None, layout=False)
    """The pixels being shown; replacing it redraws (the cache is rebuilt once)."""

    placeholder: reactive[str] = reactive("nothing to show yet")
    """Shown while there is no data."""

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._strips: list[Strip] = []
        self._cache_key: tuple[int, int, int] | None = None

    # --- public API ---------------------------------------------------------------------
    def show_heat(self, heat: Sequence[Sequence[float]],
                  base: Sequence[Sequence[float]] | None = None, alpha: float = 0.6, *,
                  side_by_side: bool = True) -> None:
        """A heat map in [0, 1], over a grey image in [0, 1] of the same size if given.

        With a base image and ``side_by_side``, the plain image is drawn on the left and the
        blend on the right, so the digit can be read as well as where the model looked.
        """
        pixels = heat_pixels(heat, base, alpha)
        if base is not None and side_by_side and len(base) == len(heat):
            grey = grey_pixels(base)
            gap: tuple[Pixel, ...] = (None,) * max(1, len(heat[0]) // 8 if heat else 1)
            pixels = tuple(g + gap + p for g, p in zip(grey, pixels, strict=True))
        self.data = HeatmapData(pixels)

    def show_classes(self, grid: Sequence[Sequence[int]],
                     points: Sequence[tuple[float, float, int]] = (),
                     confidence: Sequence[Sequence[float]] | None = None) -> None:
        """Class regions, with ``(u, v, label)`` points in [0, 1] drawn in strong colours."""
        marks = tuple((u, v, class_colour(int(k), strong=True)) for u, v, k in points)
        self.data = HeatmapData(class_pixels(grid, confidence), marks)

    def clear(self) -> None:
        self.data = None

    # --- watchers -----------------------------------------------------------------------
    def watch_data(self) -> None:
        self._cache_key = None
        self.refresh()

    def watch_placeholder(self) -> None:
        self.refresh()

    # --- rendering ----------------------------------------------------------------------
    def scaled(self, width: int, height: int) -> list[list[Pixel]]:
        """The pixel matrix resized for ``width`` columns × ``2*height`` half-rows."""
        data = self.data
        if data is None or not data.width or width < 1 or height < 1:
            return []
        rows_avail = 2 * height
        scale = min(width / data.width, rows_avail / data.height)
        if scale >= 1:
            scale = float(int(scale))  # whole-pixel blocks, all the same size
        out_w = max(1, int(data.width * scale))
        out_h = max(1, int(data.height * scale))
        src = data.pixels
        cols = [min(data.width - 1, int(c / scale)) for c in range(out_w)]
        matrix = [[src[min(data.height - 1, int(r / scale))][c] for c in cols]
                  for r in range(out_h)]
        for u, v, colour in data.points:
            r = min(out_h - 1, max(0, int(v * out_h)))
            c = min(out_w - 1, max(0, int(u * out_w)))
            matrix[r][c] = colour
        return matrix

    def _build(self, width: int, height: int) -> None:
        matrix = self.scaled(width, height)
        strips: list[Strip] = []
        cells: dict[tuple[Pixel, Pixel], Segment] = {}
        for y in range(0, len(matrix), 2):
            top_row = matrix[y]
            bottom_row = matrix[y + 1] if y + 1 < len(matrix) else None
            segments = []
            for x, top in enumerate(top_row):
                bottom = bottom_row[x] if bottom_row is not None else None
                cell = cells.get((top, bottom))
                if cell is None:
                    cell = cells[(top, bottom)] = _cell(top, bottom)
                segments.append(cell)
            strips.append(Strip(Segment.simplify(segments), len(top_row)))
        self._strips = strips

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        if self.data is None:
            if y == 0:
                text = self.placeholder[:width]
                return Strip([Segment(text, Style(dim=True))], len(text)).extend_cell_length(
                    width)
            return Strip.blank(width)
        key = (width, height, id(self.data))
        if key != self._cache_key:
            self._build(width, height)
            self._cache_key = key
        if y < len(self._strips):
            return self._strips[y].extend_cell_length(width)
        return Strip.blank(width)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return self.data.width if self.data is not None else len(self.placeholder)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return (self.data.height + 1) // 2 if self.data is not None else 1
