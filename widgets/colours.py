"""Colours from the theme. Rich styles in the widgets name theme variables ("bold $error") as the
CSS does; `tone` swaps in the current theme's colours, so a theme picked in the palette recolours
the panes (at their next update) as it recolours the CSS."""

from __future__ import annotations

import re

from textual.dom import DOMNode

VARIABLE = re.compile(r"\$([a-z][a-z0-9-]*)")


def tone(node: DOMNode, style: str) -> str:
    """`style` with each $variable replaced by the current theme's colour ("bold $error" -> "bold #ba3c5b")."""
    variables = node.app.theme_variables
    return VARIABLE.sub(lambda match: variables.get(match[1], "default"), style)


def rgb(node: DOMNode, variable: str) -> tuple[int, int, int]:
    """A theme colour ("$error") as (r, g, b), the form plotext takes."""
    from textual.color import Color

    colour = Color.parse(tone(node, variable))
    return colour.r, colour.g, colour.b
