"""The migrations pane: applied, pending, failed, edited; when each was applied and how long it took."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label

from services.ports import MigrationRecord

STATE_STYLE = {"applied": "green", "pending": "yellow", "failed": "bold red", "edited": "bold magenta",
               "missing_folder": "magenta", "rolled_back": "dim"}


class MigrationsPane(Vertical):
    DEFAULT_CSS = """
    MigrationsPane DataTable { height: 1fr; }
    MigrationsPane .title { text-style: bold; }
    """

    def compose(self) -> ComposeResult:
        yield Label("3 Migrations", classes="title", id="migrations-title")
        table: DataTable[Text] = DataTable(cursor_type="row", id="migrations-table")
        yield table

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("migration", "state", "applied", "took")

    def show(self, env: str, records: list[MigrationRecord]) -> None:
        pending = sum(r.state == "pending" for r in records)
        self.query_one("#migrations-title", Label).update(
            f"3 Migrations: {env}, {len(records) - pending} applied, {pending} pending")
        table = self.query_one(DataTable)
        table.clear()
        for record in records:
            applied = time.strftime("%Y-%m-%d %H:%M", time.gmtime(record.started_at)) if record.started_at else "-"
            took = (f"{record.finished_at - record.started_at:.1f}s"
                    if record.started_at and record.finished_at else "-")
            table.add_row(Text(record.name), Text(record.state, style=STATE_STYLE.get(record.state, "")),
                          Text(applied), Text(took))
