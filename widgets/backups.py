"""The backups pane: age, size, location, completeness."""

from __future__ import annotations


from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label

from services.backups import BackupEntry

DAY = 86_400


class BackupsPane(Vertical):
    DEFAULT_CSS = """
    BackupsPane DataTable { height: 1fr; }
    BackupsPane .title { text-style: bold; }
    """

    def compose(self) -> ComposeResult:
        yield Label("5 Backups", classes="title", id="backups-title")
        table: DataTable[Text] = DataTable(cursor_type="row", id="backups-table")
        yield table

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("backup", "age", "size", "store", "state")

    def show(self, env: str, entries: list[BackupEntry], now: float, retention_days: int) -> None:
        self.query_one("#backups-title", Label).update(
            f"5 Backups: {env}, {len(entries)} found, retention {retention_days}d")
        table = self.query_one(DataTable)
        table.clear()
        for entry in entries:
            age_days = (now - entry.created) / DAY
            age = Text(f"{age_days:.0f}d" if age_days >= 1 else f"{age_days * 24:.0f}h",
                       style="yellow" if age_days > retention_days else "")
            state = Text("complete", style="green") if entry.complete else Text("INCOMPLETE", style="bold red")
            table.add_row(Text(entry.id), age, Text(f"{entry.size / 1024:.0f} KiB"), Text(entry.store), state)
