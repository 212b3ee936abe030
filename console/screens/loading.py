"""The first frame: the console's layout, painted while config and services load in a worker.

Importing pydantic and validating release.toml costs ~0.3 s here; the operator sees the
console's shape at once instead of a blank terminal, and the environments as last seen
(console/last_seen.py), marked stale until the live poll answers.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Static

from console.last_seen import LastSeen
from widgets.banner import SandboxBanner
from widgets.colours import tone
from widgets.env_columns import COLUMNS, cut, env_label


def seen_table(seen: LastSeen, production_style: str) -> Text:
    """The kept rows in the live table's columns and cell padding; the health column is left empty."""
    text = Text("".join(f" {name:<{width}} " for name, width in COLUMNS), style="bold")
    for row in seen.rows:
        text.append("\n ")
        text.append(f"{env_label(row.env, row.production):<12}", style=production_style if row.production else "")
        text.append("".join(f"  {cut(value, width):<{width}}" for value, (_, width) in
                            zip((row.version, row.ready), COLUMNS[1:3], strict=True)))
    return text


class LoadingScreen(Screen[None]):
    DEFAULT_CSS = """
    LoadingScreen #skeleton-envs { width: 34; border-right: solid $primary; }
    LoadingScreen Static { color: $text-muted; padding: 0 1; }
    LoadingScreen #last-seen { color: $text; padding: 0; }
    LoadingScreen #stale { color: $warning; }
    """

    def __init__(self, sandbox: bool, seed: int, time_scale: float, seen: LastSeen | None = None) -> None:
        super().__init__()
        self.sandbox, self.seed, self.time_scale, self.seen = sandbox, seed, time_scale, seen

    def compose(self) -> ComposeResult:
        yield Header()
        if self.sandbox:
            yield SandboxBanner(self.seed, self.time_scale)
        with Horizontal():
            with Vertical(id="skeleton-envs"):
                yield Label("1 Environments", classes="title")
                if self.seen is not None:
                    yield Static(seen_table(self.seen, tone(self, "bold reverse $error")), id="last-seen")
                    yield Static(f"stale: seen {self.seen.age()} ago, checking…", id="stale", markup=False)
                yield Static("loading release.toml…", id="loading-status")
            with Vertical():
                yield Label("2 Build log", classes="title")
        yield Footer()
