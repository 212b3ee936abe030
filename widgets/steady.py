"""Updating an auto-sized Static without laying the whole screen out again each time.

Static.update re-lays-out the screen by default, because the new content may need another
height. A line updated every second (a countdown, a progress bar, a values table) almost never
does: measure the new content at the widget's width and ask for a layout only when its height
differs from the last one shown.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from textual.visual import VisualType
from textual.widgets import Static

_heights: WeakKeyDictionary[Static, int] = WeakKeyDictionary()


def update_steady(widget: Static, content: VisualType) -> None:
    widget.update(content, layout=False)
    width = widget.content_size.width
    # As Widget.get_content_height measures it (its styles serve as the rules map there too).
    height = widget.visual.get_height(widget.styles, width) if width else -1  # type: ignore[arg-type]
    if width == 0 or _heights.get(widget) != height:
        widget.refresh(layout=True)  # not laid out yet, or its height changes
    _heights[widget] = height
