"""A line chart in braille, drawn straight into Textual strips: what plotext 5.3 draws for the canary
pane's charts, cell for cell, at a tenth of its cost.

plotext builds a chart as lists of cells and then as ANSI text, in general code (any marker, both
axes, dates, logs, legends, fills) that took ~3 ms a chart; the pane redraws up to four of them a
second. This draws only what the pane asks plotext for (a title, braille lines on the lower/left
axes, horizontal lines, a framed canvas with plotext's ticks) with plotext's own rules: the limits
(data and lines together), 7 y ticks and 5 x ticks spread evenly and labelled with as many digits
as tell them apart, x labels moved clear of each other or dropped, lines between samples traced
at braille resolution (2x4 dots a cell), a later series over an earlier one, a gap for NaN.
tests/unit/test_braille_chart.py holds it to plotext's output for random data and sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from itertools import groupby

from rich.color import Color
from rich.segment import Segment
from rich.style import Style as RichStyle
from textual.css.styles import RulesMap
from textual.strip import Strip
from textual.style import Style
from textual.visual import RenderOptions, Visual

RGB = tuple[int, int, int]
Line = tuple[Sequence[float], Sequence[float], RGB]  # xs, ys, colour
Cell = tuple[str, RGB | None, RGB | None]  # character, foreground, background
SPACE = " "
E8 = 10 ** (-8)  # as plotext scales back its rounding
Y_TICKS, X_TICKS = 7, 5  # plotext's default tick counts
# The braille dot of each (x % 2, y % 4) in a cell, y counted up from the cell's bottom.
DOTS = {(0, 3): 0x01, (0, 2): 0x02, (0, 1): 0x04, (1, 3): 0x08, (1, 2): 0x10, (1, 1): 0x20, (0, 0): 0x40, (1, 0): 0x80}


def _round(n: float, d: int = 0) -> float:
    """plotext's round: 0.5 rounds up."""
    n *= 10**d
    f = math.floor(n)
    r = f if n - f < 0.5 else math.ceil(n)
    return float(r * 10 ** (-d))


def _numerical(value: float) -> bool:
    return not math.isnan(value)


def _lim(data: Sequence[float]) -> tuple[float, float]:
    known = [v for v in data if _numerical(v)]
    low, high = min(known, default=0), max(known, default=0)
    if low != high:
        return low, high
    return (0.5 * low, 1.5 * low) if low != 0 else (-1, 1)


def _linspace(lower: float, upper: float, length: int) -> list[float]:
    slope = (upper - lower) / (length - 1) if length > 1 else 0
    return [lower + x * slope for x in range(length)]


def _bins(data: Sequence[float], lim: tuple[float, float], bins: int) -> list[int]:
    """Data to canvas coordinates: plotext's get_matrix_data, its round to 8 digits inlined, in its
    order of operations (so that the floats, and the cells, are the same). NaN stays NaN."""
    low, span, out = lim[0], lim[1] - lim[0], []
    for v in data:
        if v != v:  # NaN: a gap
            out.append(v)
            continue
        n = (0.5 + (bins - 1) * (v - low) / span) * 100000000
        f = math.floor(n)
        out.append(math.floor((f if n - f < 0.5 else math.ceil(n)) * E8))
    return out  # type: ignore[return-value]


def _distinguishing_digit(a: float, b: float) -> int:
    d = abs(a - b)
    d = 0 if d == 0 else -math.log10(2 * d)
    d = 0 if d < 0 else math.ceil(d)
    return d + 1 if _round(a, d) == _round(b, d) else d


def _labels(ticks: list[float]) -> list[str]:
    """plotext's tick labels: as many decimals as tell neighbours apart, integers as integers."""
    d = max((_distinguishing_digit(ticks[i], ticks[i + 1]) for i in range(len(ticks) - 1)), default=1)
    labels = [f"{tick:.{d + 1}f}" for tick in ticks]
    labels = [label[: label.index(".") + d + 2] for label in labels]
    if all(tick == int(tick) for tick in ticks):
        return [str(int(tick)) for tick in ticks]
    if len(labels) > 1:
        labels = [label + "0" * max(0, d - (len(label) - 1 - label.index("." if "e" not in label else "e")))
                  for label in labels]
    return labels


class _Grid:
    """plotext's matrix: rows counted from the bottom, each cell a character, a foreground and a
    background; writes outside it are dropped, as plotext's are."""

    def __init__(self, width: int, height: int, canvas: tuple[range, range], canvas_bg: RGB, axes_bg: RGB) -> None:
        self.width, self.height = width, height
        self.chars = [[SPACE] * width for _ in range(height)]
        self.fg: list[list[RGB | None]] = [[None] * width for _ in range(height)]
        cols, rows = canvas
        inside = [axes_bg if col not in cols else canvas_bg for col in range(width)]
        self.bg = [list(inside) if row in rows else [axes_bg] * width for row in range(height)]

    def put(self, col: int, row: int, char: str, fg: RGB) -> None:
        if 0 <= col < self.width and 0 <= row < self.height:
            self.chars[row][col] = char
            self.fg[row][col] = fg

    def text(self, col: int, row: int, text: str, fg: RGB, align: str = "left", check_space: bool = False) -> bool:
        """plotext's add_horizontal_string: with check_space, written only where the text and a cell
        either side are free; "dynamic" moves it clear of the text already on its row."""
        size = len(text)
        if align == "center":
            col -= size // 2
        elif align == "dynamic":
            col = _clear_of(self.chars[row], size, col)
        if check_space:
            line = self.chars[row]
            if not (col >= 0 and col + size <= self.width
                    and all(line[c] == SPACE for c in range(max(col - 1, 0), min(col + size + 1, self.width)))):
                return False
        if 0 <= row < self.height:  # the part of the text inside the grid
            first, last = max(col, 0), min(col + size, self.width)
            if first < last:
                self.chars[row][first:last] = text[first - col:last - col]
                self.fg[row][first:last] = [fg] * (last - first)
        return True

    def column(self, col: int, row: int, text: str, fg: RGB) -> None:
        for i, char in enumerate(text):
            self.put(col, row + i, char, fg)

    def segments(self) -> list[list[Segment]]:
        """Top row first, a segment per run of cells with the same colours (as plotext's ANSI runs)."""
        lines = []
        for row in range(self.height - 1, -1, -1):
            chars, segments, start = self.chars[row], [], 0
            for (fg, bg), run in groupby(zip(self.fg[row], self.bg[row], strict=True)):
                end = start + sum(1 for _ in run)
                segments.append(Segment("".join(chars[start:end]), _style(fg, bg)))
                start = end
            lines.append(segments)
        return lines


def _clear_of(line: list[str], size: int, col: int) -> int:
    """plotext's correct_coord: the column a label of `size` centred near `col` starts at."""
    b, e = max(col - size + 1, 0), min(col + size, len(line) - 1)
    free = [i for i in range(b, e) if line[i] == SPACE]
    b, e = min(free, default=col - size + 1), max(free, default=col + size)
    b, e = e - size + 1, b + size
    return (b + e - size) // 2


@lru_cache(maxsize=256)
def _style(fg: RGB | None, bg: RGB | None) -> RichStyle:
    """A run's colours, as plotext's 24-bit colour codes for it are read."""
    return RichStyle(color=Color.from_rgb(*fg) if fg else None, bgcolor=Color.from_rgb(*bg) if bg else None)


def _trace(xs: list[int], ys: list[float]) -> set[tuple[int, int]]:
    """The dots of the lines from sample to sample (plotext's get_lines): evenly spaced steps, as many
    as the longer side has dots, each truncated; a sample with NaN is a gap."""
    dots: set[tuple[int, int]] = set()
    for n in range(len(xs) - 1):
        x0, y0, x1, y1 = xs[n], ys[n], xs[n + 1], ys[n + 1]
        if math.isnan(y0):
            continue
        if math.isnan(y1):
            dots.add((x0, int(y0)))
            continue
        steps = max(abs(x1 - x0), abs(int(y1) - int(y0)))
        if steps:  # as plotext's linspace: a slope, then a multiple of it
            dx, dy = (x1 - x0) / steps, (y1 - y0) / steps
            for i in range(steps):  # the last point is the next segment's first
                dots.add((int(x0 + i * dx), int(y0 + i * dy)))
    if xs and not math.isnan(ys[-1]):
        dots.add((xs[-1], int(ys[-1])))
    return dots


def chart_segments(width: int, height: int, title: str, lines: Sequence[Line], hlines: Sequence[tuple[float, RGB]],
                   canvas_bg: RGB, axes_bg: RGB, ticks: RGB) -> list[list[Segment]]:
    """The chart's rows, top first, as segments (one per run of like-coloured cells)."""
    ys_all = [y for _, ys, _ in lines for y in ys] + [value for value, _ in hlines]
    xs_all = [x for xs, _, _ in lines for x in xs]
    used = bool(lines)  # plotext draws x ticks only for an axis with data, y ticks also for lines
    xlim = _lim(xs_all) if xs_all else None
    ylim = _lim(ys_all)
    yticks = _linspace(*ylim, Y_TICKS) if (used or hlines) and ys_all else None
    ylabels = [label.rjust(max(map(len, labels))) for labels in [_labels(yticks)] for label in labels] if yticks else []
    label_width = max(map(len, ylabels), default=0)
    xticks = _linspace(*xlim, X_TICKS) if used and xlim is not None else None
    xlabels = _labels(xticks) if xticks else None
    xlabel_rows = 1 if xlabels else 0

    canvas_width = width - 2 - label_width
    canvas_height = height - 2 - xlabel_rows - 1  # two frame rows, the x labels, the title
    col_start, row_start = label_width + 1, xlabel_rows + 1
    col_end, row_end = col_start + canvas_width, row_start + canvas_height
    cticks = _bins(xticks, xlim, canvas_width) if xticks and xlim else []
    rticks = _bins(yticks, ylim, canvas_height) if yticks else []
    hrows = _bins([value for value, _ in hlines], ylim, canvas_height) if (used or hlines) else []
    grid = _Grid(width, height, (range(col_start, col_end), range(row_start, row_end)), canvas_bg, axes_bg)

    if title and height > 0:
        grid.text(col_start + canvas_width // 2, row_end + 1, title, ticks, "center", check_space=True)
    if xlabels and height > 0:
        row = min(row_start - 2, height - 1)
        cticks = [c for c, label in zip(cticks, xlabels, strict=True)
                  if grid.text(col_start + c, row, label, ticks, "dynamic", check_space=True)]
    if height_ok := canvas_height >= -1:
        grid.text(col_start, row_end, "─" * max(canvas_width, 0), ticks)
    if width >= label_width:
        for row, label in zip(rticks, ylabels, strict=True):
            grid.text(0, row + row_start, label, ticks)
    if width >= label_width + 1:
        grid.column(label_width, row_start, "".join(
            "├" if i in hrows else "┤" if i in rticks else "│" for i in range(canvas_height)), ticks)
    if width >= label_width + 2:
        grid.column(col_end, row_start, "".join("┤" if i in hrows else "│" for i in range(canvas_height)), ticks)
    if canvas_height >= 0 and canvas_width >= 0:
        grid.put(col_start - 1, row_start - 1, "└", ticks)
        grid.put(col_end, row_start - 1, "┘", ticks)
        grid.put(col_start - 1, row_end, "┌", ticks)
        grid.put(col_end, row_end, "┐", ticks)
    if height_ok:
        grid.text(col_start, row_start - 1, "".join("┬" if i in cticks else "─" for i in range(canvas_width)), ticks)
    for row, (_, colour) in zip(hrows, hlines, strict=True):
        grid.text(col_start, row + row_start, "─" * max(canvas_width, 0), colour)

    if canvas_width and xlim is not None:
        for xs, ys, colour in lines:
            dots = _trace(_bins(xs, xlim, canvas_width * 2), _bins(ys, ylim, canvas_height * 4))  # type: ignore[arg-type]
            cells: dict[tuple[int, int], int] = {}
            for x, y in dots:
                cell = (x // 2, y // 4)
                cells[cell] = cells.get(cell, 0) | DOTS[(x % 2, y % 4)]
            for (col, row), code in cells.items():
                if 0 <= col < canvas_width and 0 <= row < canvas_height and col + col_start < width:
                    grid.chars[row + row_start][col + col_start] = chr(0x2800 + code)
                    grid.fg[row + row_start][col + col_start] = colour
    return grid.segments()


class Strips(Visual):
    """Lines already rendered: drawn as they are, cropped or padded to the widget."""

    def __init__(self, strips: list[Strip]) -> None:
        self.strips = strips

    def render_strips(self, width: int, height: int | None, style: Style, options: RenderOptions) -> list[Strip]:
        lines = self.strips if height is None else self.strips[:height]
        return [strip.adjust_cell_length(width) for strip in lines]

    def get_optimal_width(self, rules: RulesMap, container_width: int) -> int:
        return max((strip.cell_length for strip in self.strips), default=0)

    def get_height(self, rules: RulesMap, width: int) -> int:
        return len(self.strips)
