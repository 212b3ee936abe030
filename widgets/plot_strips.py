"""plotext's ANSI output turned straight into Textual strips, kept until the data changes.

Rich's Text.from_ansi and then Textual's own conversion of that Text cost about as much again as
plotext's build; plotext writes only SGR colour runs, so a regex split into segments is ~10x
cheaper, and the strips are drawn as they are until the next replot or resize.
"""

from __future__ import annotations

import re
from functools import lru_cache

from rich.ansi import AnsiDecoder
from rich.segment import Segment
from rich.style import Style as RichStyle
from textual.css.styles import RulesMap
from textual.strip import Strip
from textual.style import Style
from textual.visual import RenderOptions, Visual

SGR = re.compile(r"\x1b\[([0-9;]*)m")


@lru_cache(maxsize=512)
def _after(style: RichStyle, params: str) -> RichStyle:
    """The style once the SGR sequence ``ESC [ params m`` is applied, by Rich's own rules."""
    decoder = AnsiDecoder()
    decoder.style = style
    decoder.decode_line(f"\x1b[{params}m")
    return decoder.style


def ansi_strips(text: str, width: int) -> list[Strip]:
    strips = []
    for line in text.split("\n"):
        segments, style, position = [], RichStyle.null(), 0
        for match in SGR.finditer(line):
            if match.start() > position:
                segments.append(Segment(line[position:match.start()], style))
            style, position = _after(style, match.group(1)), match.end()
        if position < len(line):
            segments.append(Segment(line[position:], style))
        strips.append(Strip(segments).adjust_cell_length(width))
    return strips


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
