"""Dependency health on screen: the marks, the sparklines, and the detail modal (`h` from the list)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from services.environments.health import EnvironmentHealth, HealthBoard, Status
from widgets.colours import tone

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


class HealthModal(ModalScreen[None]):
    """One environment's health in full: each dependency's status, reasons, facts and history."""

    DEFAULT_CSS = """
    HealthModal { align: center middle; }
    HealthModal > VerticalScroll {
        width: 100; max-width: 96%; height: auto; max-height: 90%; border: thick $primary;
        background: $surface; padding: 0 1;
    }
    HealthModal .hint { color: $text-muted; }
    """
    BINDINGS = [Binding("escape,h,q", "dismiss_modal", "Close", id="health.close")]

    def __init__(self, board: HealthBoard, env: str) -> None:
        super().__init__()
        self.board, self.env = board, env

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Label(f"Health: {self.env}", classes="title")
            yield Static(id="health-body")
            yield Label("refreshed every poll · Esc closes", classes="hint")

    def on_mount(self) -> None:
        self.refresh_body()

    def refresh_body(self) -> None:
        health = self.board.latest.get(self.env)
        body = self.query_one("#health-body", Static)
        if health is None:
            body.update("no reading yet: the first probe is under way")
            return
        text = Text()
        for c in health.checks:
            mark, style = MARK[c.status]
            version = f" {c.reading.version}" if c.reading.version else ""
            text.append(f"{mark} {c.dependency}{version}  {c.status.upper()}", style=tone(self, style))
            text.append(f"   {sparkline(self.board.history(self.env, c.dependency), 30)}\n")
            for reason in c.reasons:
                text.append(f"    ! {reason}\n")
            for fact in c.reading.facts:
                text.append(f"    {fact}\n")
        body.update(text)

    def action_dismiss_modal(self) -> None:
        self.dismiss(None)
