"""The app-logs pane: the build log's fast view (line API, capped, follow, `/` search, n/N, e) with
its own title, and a filter that keeps only the lines holding a text (F opens it, Enter applies it).
The lines come cleaned and masked from services/environments/logs.py; this pane only shows them."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.widgets import Input, Label

from services.environments.logs import Line, matches
from widgets.build_log import MAX_LINES, BuildLog, BuildLogPane


class AppLogPane(BuildLogPane):
    DEFAULT_CSS = """
    AppLogPane #applog-filter { display: none; height: 3; }
    AppLogPane.-filtering #applog-filter { display: block; }
    """

    def __init__(self, max_lines: int = MAX_LINES, *, id: str | None = None) -> None:
        super().__init__(max_lines, id=id)
        self.kept: deque[Line] = deque(maxlen=max_lines)  # every line since the last start, for a new filter
        self.needle = ""
        self.what = ""  # env · role · since

    def compose(self) -> ComposeResult:
        yield Label("Logs", classes="title", id="build-title", markup=False)
        yield Label("", id="build-state", markup=False)
        yield self.view
        yield Input(placeholder="search the kept lines; Enter: next, Esc: close", id="build-search")
        yield Input(placeholder="keep only lines holding this text; Enter: apply (empty: all)", id="applog-filter")

    def on_mount(self) -> None:
        self.refresh_title()

    def begin(self, what: str) -> None:
        """A new follow (environment, role or since changed): an empty view."""
        self.kept.clear()
        self.view.clear()
        self.showing_hint, self.what, self.total_lines = False, what, 0
        self.refresh_title()

    def add(self, lines: Sequence[Line]) -> None:
        self.kept.extend(lines)
        self.write_lines([line.render() for line in lines if matches(line, self.needle)])
        self.refresh_title()  # the line count

    def refilter(self, needle: str) -> None:
        self.needle = needle
        self.view.clear()
        self.total_lines = 0
        self.write_lines([line.render() for line in self.kept if matches(line, needle)])
        self.refresh_title()

    def open_filter(self) -> None:
        self.add_class("-filtering")
        self.query_one("#applog-filter", Input).focus()

    @on(Input.Submitted, "#applog-filter")
    def filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.remove_class("-filtering")
        self.refilter(event.value.strip())
        self.view.focus()

    def refresh_title(self) -> None:
        self.query_one("#build-title", Label).update(f"Logs: {self.what}" if self.what else "Logs")
        state = "following" if self.follow else "paused — f to follow"
        shown = f"filter {self.needle!r}" if self.needle else ""
        parts = [state, shown, self.match_note, f"{self.total_lines} lines"]
        self.query_one("#build-state", Label).update(" · ".join(p for p in parts if p))
        self.set_class(True, "-started")
        self.set_class(not self.follow, "-paused")


__all__ = ["AppLogPane", "BuildLog"]
