"""The build-log pane: a line-API view (plain strings, lazy rendering, capped), written in batches.

- The view keeps at most `cap` lines (oldest dropped); the runner saves the operation's full log
  to a file (services/core/oplog.py), so it survives the cap; the title says where.
- Follow mode (auto-scroll) is on by default: `f` toggles it, scrolling up pauses it, End/`G`
  jumps to the bottom and follows again. The title says which.
- `/` searches the kept lines (Enter: next match; n/N next/previous; Esc closes); `e` jumps to
  the first error line. The line found is highlighted.

Bindings live on the pane: they are active only while focus is inside it (the view is focused
when the pane is shown), and never while the pane is hidden.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.selection import Selection
from textual.strip import Strip
from textual.widgets import Input, Label

MAX_LINES = 20_000
_CONTROL = re.compile("[\u0000-\u0014]").sub  # what Textual's Log shows as a replacement character
ERROR_LINE = re.compile(r"error|failed|ERROR|Error:|exit code [1-9]")
HINT = ["Nothing has run yet.", "Pick an environment with the arrow keys,", "then press d to release.",
        "ctrl+p lists every action."]


def shown_path(path: Path, env: dict[str, str] | None = None) -> str:
    """A path as the operator can paste it: under $XDG_STATE_HOME or ~ when it is."""
    env = dict(os.environ) if env is None else env
    text = str(path)
    for prefix, name in ((env.get("XDG_STATE_HOME", ""), "$XDG_STATE_HOME"), (str(Path.home()), "~")):
        if prefix and prefix != os.sep and text.startswith(prefix.rstrip(os.sep) + os.sep):
            return name + text[len(prefix.rstrip(os.sep)):]
    return text


class BuildLog(ScrollView, can_focus=True):
    """The pane's view on Textual's line API (after Toolong's log lines): plain strings in a
    capped list, each drawn only when it is on screen, its strip cached by its absolute line
    number (which pruning does not move). It looks and scrolls as Textual's Log does, and adds
    what the pane needs: the count of lines dropped (so a highlighted line keeps pointing at the
    same text), one highlighted line, and telling its pane when the operator scrolls.

    Writing a batch costs a few C calls over the whole batch, not per line: a batch of printable
    lines (no line break, tab or control code in any) is taken as it is and its width is its
    longest line's length; only other batches are split and measured line by line, as Log does."""

    ALLOW_SELECT = True
    DEFAULT_CSS = """
    BuildLog {
        background: $surface;
        color: $text;
        overflow: scroll;
        &:focus {
            background-tint: $foreground 5%;
        }
    }
    """
    HIGHLIGHT = Style(reverse=True, bold=True)
    CACHE = 1024  # rendered strips kept: a few screens' worth

    def __init__(self, max_lines: int, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        self._lines: list[str] = []
        self._width = 0
        self._strips: LRUCache[int, Strip] = LRUCache(self.CACHE)  # absolute line number -> strip
        self.dropped = 0  # lines pruned from the top since the last clear
        self.highlight_at: int | None = None  # absolute index (dropped + position) of the highlighted line
        self.quiet = False  # set while the pane scrolls programmatically

    @property
    def allow_select(self) -> bool:
        return True

    @property
    def lines(self) -> Sequence[str]:
        """The kept lines (read only)."""
        return self._lines

    @property
    def line_count(self) -> int:
        return len(self._lines)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    # --- writing ------------------------------------------------------------------------------

    def write_lines(self, lines: Iterable[str], scroll_end: bool = False) -> BuildLog:
        """Append a batch; scroll to the end if `scroll_end` and the view was at the end."""
        at_end = self.is_vertical_scroll_end
        batch = lines if isinstance(lines, list) else list(lines)
        text = "".join(batch)
        if text.isprintable() and all(batch):
            # No line breaks, tabs or control codes, no empty lines: as Log would keep them.
            widest = max(map(len, batch), default=0) if text.isascii() else max(map(cell_len, batch), default=0)
        else:
            batch = [part for line in batch for part in line.splitlines()]  # as Log: "" is no line
            widest = max((cell_len(_process_line(line)) for line in batch), default=0)
        if not batch:
            return self
        kept = self._lines
        kept.extend(batch)
        if len(kept) > self.max_lines:
            excess = len(kept) - self.max_lines
            del kept[:excess]
            self.dropped += excess
        wider = widest > self._width
        self._width = max(self._width, widest)
        self.virtual_size = Size(self._width, len(kept))
        if scroll_end and at_end and not self.is_vertical_scrollbar_grabbed:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        else:
            self.refresh()
        if wider:  # wider lines may bring a horizontal scrollbar, one row less: stay at the bottom
            self.call_after_refresh(self._end_if_following)
        return self

    def write_line(self, line: str, scroll_end: bool = False) -> BuildLog:
        return self.write_lines([line], scroll_end)

    def clear(self) -> BuildLog:
        self._lines.clear()
        self._width = 0
        self._strips.clear()
        self.dropped = 0
        self.highlight_at = None
        self.virtual_size = Size(0, 0)
        return self

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True) -> bool:
        resized = super()._size_updated(size, virtual_size, container_size, layout)
        # Following and a row fewer (the state line shows, a scrollbar comes): stay at the bottom
        # now, in this layout, not a refresh later.
        self._end_if_following()
        return resized

    def _end_if_following(self) -> None:
        pane = self.parent
        if isinstance(pane, BuildLogPane) and pane.follow and not self.is_vertical_scroll_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def highlighted_row(self) -> int | None:
        if self.highlight_at is None:
            return None
        row = self.highlight_at - self.dropped
        return row if 0 <= row < len(self._lines) else None

    # --- drawing ------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row, width = scroll_y + y, self.size.width
        rich_style = self.rich_style
        if row >= len(self._lines):
            return Strip.blank(width, rich_style)
        strip = self._line_strip(row, rich_style)
        if self.highlight_at is not None and row == self.highlight_at - self.dropped:
            strip = strip.apply_style(self.HIGHLIGHT)
        return strip.crop_extend(scroll_x, scroll_x + width, rich_style).apply_offsets(scroll_x, row)

    def _line_strip(self, row: int, rich_style: Style) -> Strip:
        """A kept line drawn whole (uncropped), as Log draws it."""
        selection = self.text_selection
        key = self.dropped + row
        if selection is None and (cached := self._strips.get(key)) is not None:
            return cached
        line = _process_line(self._lines[row])
        text = Text(line, no_wrap=True)
        text.stylize(rich_style)
        if selection is not None and (span := selection.get_span(row)) is not None:
            start, end = span
            text.stylize(self.screen.get_component_rich_style("screen--selection"), start,
                         len(text) if end == -1 else end)
        strip = Strip(text.render(self.app.console), cell_len(line))
        if selection is None:
            self._strips[key] = strip
        return strip

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        return selection.extract("\n".join(self._lines)), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        self._strips.clear()
        self.refresh()

    # --- scrolling ----------------------------------------------------------------------------

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Scrolled up, away from the bottom, by the operator (keys, wheel, scrollbar): pause.
        if not self.quiet and new_value < old_value and new_value < self.max_scroll_y - 0.5:
            pane = self.parent
            if isinstance(pane, BuildLogPane):
                pane.set_follow(False)

    def action_scroll_end(self) -> None:
        pane = self.parent
        if isinstance(pane, BuildLogPane):
            pane.action_bottom()
        else:
            super().action_scroll_end()


def _process_line(line: str) -> str:
    """A line as drawn: tabs expanded, control codes shown as one replacement character (as Log)."""
    return _CONTROL("\ufffd", line.expandtabs())


class BuildLogPane(Vertical):
    DEFAULT_CSS = """
    BuildLogPane BuildLog { height: 1fr; }
    BuildLogPane .title { text-style: bold; }
    BuildLogPane #build-title, BuildLogPane #build-state { width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    BuildLogPane #build-state { color: $text-muted; display: none; }
    BuildLogPane.-started #build-state { display: block; }
    BuildLogPane.-paused #build-state { color: $warning; }
    BuildLogPane #build-search { display: none; height: 3; }
    BuildLogPane.-searching #build-search { display: block; }
    """
    BINDINGS = [
        Binding("f", "toggle_follow", "Follow", id="buildlog.follow", show=False),
        Binding("G", "bottom", "Bottom", id="buildlog.bottom", show=False),
        Binding("slash", "open_search", "Search", id="buildlog.search", show=False),
        Binding("n", "find(1)", "Next match", id="buildlog.next", show=False),
        Binding("N", "find(-1)", "Previous match", id="buildlog.previous", show=False),
        Binding("e", "first_error", "First error", id="buildlog.first_error", show=False),
        Binding("escape", "close_search", "Close search", id="buildlog.close_search", show=False),
    ]
    can_focus = False

    def __init__(self, max_lines: int = MAX_LINES, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._cap = max_lines
        self.follow = True
        self.showing_hint = True
        self.op_title = ""  # the operation's title; "" until one starts
        self.log_path: Path | None = None
        self.total_lines = 0  # every line written since start(), kept or not
        self.query_text = ""
        self.match_note = ""
        self.outcome = ""
        self._view = BuildLog(max_lines=self._cap, id="build-log")
        self._unshown: list[str] = []  # written while the pane was hidden (see write_lines)

    def compose(self) -> ComposeResult:
        yield Label("2 Build log", classes="title", id="build-title", markup=False)
        yield Label("", id="build-state", markup=False)
        yield self._view
        yield Input(placeholder="search the kept lines; Enter: next, Esc: close", id="build-search")

    def on_mount(self) -> None:
        # Short lines: the view does not wrap, and this must fit beside the environments at 80x24.
        self.view.write_lines(HINT)

    @property
    def view(self) -> BuildLog:
        return self._view

    @property
    def lines(self) -> list[str]:
        """The kept lines, with those written while the pane was hidden and not drawn yet."""
        return [*self.view.lines, *self._unshown][-self._cap:]

    @property
    def cap(self) -> int:
        return self._cap

    @cap.setter
    def cap(self, lines: int) -> None:
        self._cap = lines
        self.view.max_lines = lines

    # --- writing ------------------------------------------------------------------------------

    def start(self, title: str, log_path: Path | None = None) -> None:
        """An operation starts: a fresh view, following; `log_path` is where the runner saves its full log."""
        log = self.view
        if self.showing_hint:  # the first operation replaces the empty-state hint
            log.clear()
            self.showing_hint = False
        log.highlight_at = None
        self.op_title, self.log_path, self.total_lines = title, log_path, 0
        self.match_note, self.outcome = "", ""
        self.follow = True
        self.write_lines([f"--- {title} ---"])
        self.refresh_title()

    def write_lines(self, lines: Sequence[str]) -> None:
        """One batch: one update of the view (which renders lazily)."""
        if not lines:
            return
        self.total_lines += len(lines)
        if not self.display:
            # Hidden behind another pane: each write would lay the whole screen out again (the
            # log's virtual size changes). Kept here, capped like the view, and shown on Show.
            self._unshown.extend(lines)
            del self._unshown[:-self._cap]
            return
        self._show_lines(lines)

    def on_show(self) -> None:
        if self._unshown:
            lines, self._unshown = self._unshown, []
            self._show_lines(lines)

    def _show_lines(self, lines: Sequence[str]) -> None:
        log = self.view
        dropped = log.dropped
        # Following: the view scrolls to the end itself; otherwise it only refreshes. Never both, which
        # would lay the view out twice per batch.
        log.write_lines(lines, scroll_end=self.follow)
        if not self.follow and log.dropped > dropped:
            # Paused: keep the lines in view still while the oldest are dropped under them.
            self._scroll_to_row(log.scroll_y - (log.dropped - dropped))

    def finish(self, outcome: str = "") -> None:
        self.outcome = outcome
        self.refresh_title()

    # --- title --------------------------------------------------------------------------------

    def refresh_title(self) -> None:
        """Line 1: the operation; line 2: following or paused, notes, and where the full log is saved."""
        title = f"2 Build log: {self.op_title}" if self.op_title else "2 Build log"
        self.query_one("#build-title", Label).update(title)
        state = "following" if self.follow else "paused — f to follow"
        where = f"log: {shown_path(self.log_path)}" if self.log_path else ""
        parts = [state, self.outcome, self.match_note, where]
        self.query_one("#build-state", Label).update(" · ".join(p for p in parts if p))
        self.set_class(True, "-started")
        self.set_class(not self.follow, "-paused")

    # --- follow -------------------------------------------------------------------------------

    def set_follow(self, follow: bool) -> None:
        if follow == self.follow:
            return
        self.follow = follow
        if follow:
            self.view.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh_title()

    def action_toggle_follow(self) -> None:
        self.set_follow(not self.follow)

    def action_bottom(self) -> None:
        self.follow = False  # set_follow(True) below scrolls and retitles
        self.set_follow(True)

    # --- search and errors ---------------------------------------------------------------------

    def action_open_search(self) -> None:
        self.add_class("-searching")
        self.query_one("#build-search", Input).focus()

    def action_close_search(self) -> None:
        if self.has_class("-searching"):
            self.remove_class("-searching")
            self.view.focus()
        elif self.view.highlight_at is not None:
            self.view.highlight_at = None
            self.match_note = ""
            self.view.refresh()
            self.refresh_title()

    @on(Input.Submitted, "#build-search")
    def search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value
        if text != self.query_text:
            self.query_text = text
            self.view.highlight_at = None  # a new query starts from the top of the view
        self.action_find(1)

    def matches(self) -> list[int]:
        needle = self.query_text.casefold()
        if not needle:
            return []
        return [row for row, line in enumerate(self.view.lines) if needle in line.casefold()]

    def action_find(self, step: int) -> None:
        """The next (step 1) or previous (step -1) kept line holding the query, wrapping around."""
        if not self.query_text:
            self.action_open_search()
            return
        rows = self.matches()
        if not rows:
            self.match_note = f"no match for {self.query_text!r}"
            self.refresh_title()
            return
        current = self.view.highlighted_row()
        if current is None:
            origin = int(self.view.scroll_y)  # from the top of the view
            found = next((r for r in rows if r >= origin), rows[0]) if step > 0 else \
                next((r for r in reversed(rows) if r <= origin + self.view.size.height), rows[-1])
        elif step > 0:
            found = next((r for r in rows if r > current), rows[0])
        else:
            found = next((r for r in reversed(rows) if r < current), rows[-1])
        self.match_note = f"match {rows.index(found) + 1}/{len(rows)}"
        self.jump_to(found)

    def first_error_row(self) -> int | None:
        return next((row for row, line in enumerate(self.view.lines) if ERROR_LINE.search(line)), None)

    def action_first_error(self) -> None:
        row = self.first_error_row()
        if row is None:
            self.match_note = "no error lines"
            self.refresh_title()
            return
        self.match_note = "first error"
        self.jump_to(row)

    def jump_to(self, row: int) -> None:
        """Highlight a kept line and bring it into view; following pauses so it stays there."""
        log = self.view
        log.highlight_at = log.dropped + row
        self.follow = False
        self._scroll_to_row(max(0, row - max(1, log.size.height) // 3))
        log.refresh()
        self.refresh_title()

    def _scroll_to_row(self, y: float) -> None:
        log = self.view
        log.quiet = True
        try:
            log.scroll_to(y=max(0.0, y), animate=False, immediate=True)
        finally:
            log.quiet = False

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Hidden (another pane is shown): the keys belong to the screen again.
        return bool(self.display)
