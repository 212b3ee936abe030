"""The migrations pane: applied, pending, failed, edited; when each was applied and how long it took."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from services.core.ports import MigrationRecord
from services.migrations.lint import Finding, counts
from widgets.colours import tone
from widgets.table_pane import TablePane

STATE_STYLE = {"applied": "$success", "pending": "$warning", "failed": "bold $error", "edited": "bold $accent",
               "missing_folder": "$accent", "rolled_back": "dim"}
NAME_WIDTH = 30
GLYPH = {"blocking": "✗", "warning": "!", "info": "i"}
LEVEL_STYLE = {"blocking": "$error", "warning": "$warning", "info": "dim"}
SHOWN_FINDINGS = 4  # more would push the table off an 80x24 screen; the CLI lists them all


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class MigrationsPane(TablePane[MigrationRecord]):
    NAME = "migrations"
    COLUMNS = (("migration", NAME_WIDTH), ("state", 8))
    DEFAULT_CSS = """
    MigrationsPane #migrations-lint { height: auto; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.findings: list[Finding] = []

    def compose(self) -> ComposeResult:
        yield from super().compose()
        yield Static("", id="migrations-lint")

    def show(self, env: str, records: list[MigrationRecord], findings: list[Finding] | None = None) -> None:
        self.findings = findings or []
        pending = sum(r.state in ("pending", "rolled_back") for r in records)
        self.fill(f"3 Migrations: {env}, {len(records) - pending} applied, {pending} pending", records)
        self.query_one("#migrations-lint", Static).update(lint_summary(self, findings or [], pending))

    def row(self, item: MigrationRecord) -> Sequence[Text]:
        return Text(clip(item.name, NAME_WIDTH)), Text(item.state, style=tone(self, STATE_STYLE.get(item.state, "")))

    def detail(self, item: MigrationRecord) -> str:
        applied = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(item.started_at)) if item.started_at else "-"
        took = f"{item.finished_at - item.started_at:.1f}s" if item.started_at and item.finished_at else "-"
        logs = f"\n{item.logs}" if item.logs else ""
        # Blocking ones first, as in the summary: at 80x24 what comes last is below the fold.
        mine = sorted((f for f in self.findings if f.migration == item.name), key=_first)
        lint = "".join(f"\n{GLYPH[f.level]} {f.rule} (line {f.line}): {f.message}"
                       + (f"\n  database: {f.note}" if f.note else "") + f"\n  safer: {f.safer}" for f in mine)
        if item.state in ("pending", "rolled_back"):
            return f"{item.name}\npending{lint or ', lint clean'}"
        return f"{item.name}\napplied {applied}, took {took}\nchecksum {item.checksum[:16]}…{logs}"


def _first(finding: Finding) -> int:
    return ("blocking", "warning", "info").index(finding.level)


def _estimate(finding: Finding) -> str:
    """` ~1.2k rows`: the table's estimated rows, short (an 80x24 pane); the detail has the rest."""
    if finding.size_bytes is None:
        return ""
    rows = finding.estimated_rows
    shown = "?" if rows is None else f"~{rows / 1e6:.1f}M" if rows >= 1e6 else f"~{rows / 1e3:.1f}k" if rows >= 1e3 \
        else str(rows)
    return f" {shown} rows"


def lint_summary(pane: MigrationsPane, findings: list[Finding], pending: int) -> Text:
    """The pending migrations' lint findings: rule, where, and the safer way, one per line."""
    if not pending:
        return Text("")
    if not findings:
        return Text("lint: pending migrations are clean", style=tone(pane, "$success"))
    blocking = any(f.blocking for f in findings)
    text = Text()
    text.append(f"lint: {counts(findings)}; highlight a migration for the safer way\n",
                style=tone(pane, "bold $error" if blocking else "$warning"))
    shown = sorted(findings, key=_first)[:SHOWN_FINDINGS]  # blocking ones first
    for finding in shown:
        text.append(f"{GLYPH[finding.level]} ", style=tone(pane, LEVEL_STYLE[finding.level]))
        text.append(f"{finding.rule} ", style="bold")
        text.append(f"{finding.migration}:{finding.line}", style="dim")
        text.append(f"{_estimate(finding)}\n", style="dim")
    if len(findings) > len(shown):
        text.append(f"+{len(findings) - len(shown)} more: release-console migrate lint --env ENV", style="dim")
    return text
