"""Dependency health on screen: the marks, the sparklines, and the environment's detail screen (`h` from
the list): its dependencies in full, then its containers' or pods' CPU and memory."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Label, Static

from services.core.container import Services
from services.environments.health import EnvironmentHealth, HealthBoard, Status
from widgets.colours import tone
from widgets.resources import ResourceTable

# The sign as well as the colour: NO_COLOR terminals still tell them apart.
MARK: dict[str, tuple[str, str]] = {"ok": ("✓", "$success"), "warn": ("!", "bold $warning"),
                                    "fail": ("✗", "bold $error")}
BARS = "▁▂▃▄▅▆▇█"
SHORT = {"postgres": "pg"}


def sparkline(history: list[tuple[Status, float]], width: int = 12) -> str:
    """The latest latencies as bars, scaled to their own maximum; a failed probe is a ✗."""
    shown = history[-width:]
    top = max((value for _, value in shown), default=0.0) or 1.0
    return "".join("✗" if status == "fail" else BARS[min(7, int(value / top * 7))] for status, value in shown)


def dependency_line(board: HealthBoard, health: EnvironmentHealth, width: int = 4) -> str:
    """One line for the list's detail: each dependency's mark, short name and latest latencies."""
    return " ".join(f"{MARK[c.status][0]}{SHORT.get(c.dependency, c.dependency)}"
                    f"{sparkline(board.history(health.env, c.dependency), width)}" for c in health.checks)


class HealthScreen(Screen[None]):
    """One environment's health in full: each dependency's status, reasons, facts and history, and
    below them its resource use (polled at the health interval, only while this screen shows).

    A screen, not a modal: a modal draws the screen under it too, so each of the list's 2 s
    updates would send the whole terminal again. The list goes on polling health while it shows."""

    DEFAULT_CSS = """
    HealthScreen { align: center middle; }
    HealthScreen > VerticalScroll {
        width: 100; max-width: 96%; height: auto; max-height: 90%; border: thick $primary;
        background: $surface; padding: 0 1;
    }
    HealthScreen .hint { color: $text-muted; }
    HealthScreen #health-body { height: auto; }
    HealthScreen #health-body Static { height: 1; }
    """
    BINDINGS = [Binding("escape,h,q", "dismiss_modal", "Close", id="health.close")]

    def __init__(self, board: HealthBoard, env: str, services: Services) -> None:
        super().__init__()
        self.board, self.env, self.services = board, env, services

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Label(f"Health: {self.env}", classes="title")
            yield Static(id="health-body")
            yield Label("Resource use", classes="title")
            yield ResourceTable(self.services, self.env, self.services.config.health.interval_s, id="resources")
            yield Label("refreshed every poll · Esc closes", classes="hint")

    def on_mount(self) -> None:
        self.refresh_body()

    def refresh_body(self) -> None:
        """One Static a line, each drawn again only when it changed: a poll mostly moves a sparkline
        and a latency, and a whole-body update would send the whole box to the terminal again."""
        health = self.board.latest.get(self.env)
        lines = self._lines(health) if health else [("no reading yet: the first probe is under way", "")]
        body = self.query_one("#health-body", Static)
        shown = list(body.query(Static))
        if len(shown) != len(lines):
            body.remove_children()
            body.mount_all(Static(Text(text, style=style), markup=False) for text, style in lines)
            return
        for widget, (text, style) in zip(shown, lines, strict=True):
            if str(widget.content) != text:
                widget.update(Text(text, style=style), layout=False)

    def _lines(self, health: EnvironmentHealth) -> list[tuple[str, str]]:
        lines = []
        for c in health.checks:
            version = f" {c.reading.version}" if c.reading.version else ""
            mark, style = MARK[c.status]
            history = sparkline(self.board.history(self.env, c.dependency), 30)
            lines.append((f"{mark} {c.dependency}{version}  {c.status.upper()}   {history}", tone(self, style)))
            lines += [(f"    ! {reason}", "") for reason in c.reasons]
            lines += [(f"    {fact}", "") for fact in c.reading.facts]
        return lines

    def action_dismiss_modal(self) -> None:
        self.dismiss(None)
