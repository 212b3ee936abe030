"""The migrations pane: applied, pending, failed, edited; when each was applied and how long it took.

The table keeps to two columns so it fits beside the environments at 80x24; the highlighted
migration's full record shows below it.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static

from services.ports import MigrationRecord

STATE_STYLE = {"applied": "green", "pending": "yellow", "failed": "bold red", "edited": "bold magenta",
               "missing_folder": "magenta", "rolled_back": "dim"}
NAME_WIDTH = 30


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class MigrationsPane(Vertical):
    DEFAULT_CSS = """
    MigrationsPane DataTable { height: auto; max-height: 1fr; }
    MigrationsPane .title { text-style: bold; }
    MigrationsPane #migration-detail { height: auto; color: $text-muted; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.records: list[MigrationRecord] = []

    def compose(self) -> ComposeResult:
        yield Label("3 Migrations", classes="title", id="migrations-title")
        table: DataTable[Text] = DataTable(cursor_type="row", id="migrations-table")
        yield table
        yield Static("", id="migration-detail")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("migration", width=NAME_WIDTH)
        table.add_column("state", width=8)

    def show(self, env: str, records: list[MigrationRecord]) -> None:
        self.records = records
        pending = sum(r.state == "pending" for r in records)
        self.query_one("#migrations-title", Label).update(
            f"3 Migrations: {env}, {len(records) - pending} applied, {pending} pending")
        table = self.query_one(DataTable)
        table.clear()
        for record in records:
            table.add_row(Text(clip(record.name, NAME_WIDTH)),
                          Text(record.state, style=STATE_STYLE.get(record.state, "")))
        self.show_detail(table.cursor_row)

    def show_detail(self, index: int) -> None:
        if not 0 <= index < len(self.records):
            return
        record = self.records[index]
        applied = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.started_at)) if record.started_at else "-"
        took = f"{record.finished_at - record.started_at:.1f}s" if record.started_at and record.finished_at else "-"
        self.query_one("#migration-detail", Static).update(
            f"{record.name}\napplied {applied}, took {took}\nchecksum {record.checksum[:16]}…"
            + (f"\n{record.logs}" if record.logs else ""))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail(event.cursor_row)
