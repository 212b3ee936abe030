"""The first frame: the console's layout, painted while config and services load in a worker.

Importing pydantic and validating release.toml costs ~0.3 s here; the operator sees the
console's shape at once instead of a blank terminal.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Static

from widgets.banner import SandboxBanner


class LoadingScreen(Screen[None]):
    DEFAULT_CSS = """
    LoadingScreen #skeleton-envs { width: 34; border-right: solid $primary; }
    LoadingScreen Static { color: $text-muted; padding: 0 1; }
    """

    def __init__(self, sandbox: bool, seed: int, time_scale: float) -> None:
        super().__init__()
        self.sandbox, self.seed, self.time_scale = sandbox, seed, time_scale

    def compose(self) -> ComposeResult:
        yield Header()
        if self.sandbox:
            yield SandboxBanner(self.seed, self.time_scale)
        with Horizontal():
            with Vertical(id="skeleton-envs"):
                yield Label("1 Environments", classes="title")
                yield Static("loading release.toml…", id="loading-status")
            with Vertical():
                yield Label("2 Build log", classes="title")
        yield Footer()
