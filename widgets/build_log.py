"""The build-log pane: Textual's Log (lazy rendering, capped), written in batches."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Log

MAX_LINES = 20_000


class BuildLogPane(Vertical):
    DEFAULT_CSS = """
    BuildLogPane Log { height: 1fr; }
    BuildLogPane .title { text-style: bold; }
    """
    can_focus = False

    def compose(self) -> ComposeResult:
        yield Label("2 Build log", classes="title", id="build-title")
        yield Log(max_lines=MAX_LINES, id="build-log")

    def on_mount(self) -> None:
        self.showing_hint = True
        # Short lines: a Log does not wrap, and this must fit beside the environments at 80x24.
        self.query_one(Log).write_lines([
            "Nothing has run yet.", "Pick an environment with the arrow keys,", "then press d to release.",
            "ctrl+p lists every action."])

    def write_lines(self, lines: list[str]) -> None:
        if lines:
            self.query_one(Log).write_lines(lines)

    def start(self, title: str) -> None:
        self.query_one("#build-title", Label).update(f"2 Build log: {title}")
        if self.showing_hint:  # the first operation replaces the empty-state hint
            self.query_one(Log).clear()
            self.showing_hint = False
        self.query_one(Log).write_line(f"--- {title} ---")
