"""The backups pane: age, size, completeness; the highlighted backup's store and contents below."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static

from services.backups import BackupEntry

DAY = 86_400


class BackupsPane(Vertical):
    DEFAULT_CSS = """
    BackupsPane DataTable { height: auto; max-height: 1fr; }
    BackupsPane .title { text-style: bold; }
    BackupsPane #backup-detail { height: auto; color: $text-muted; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.entries: list[BackupEntry] = []

    def compose(self) -> ComposeResult:
        yield Label("5 Backups", classes="title", id="backups-title")
        table: DataTable[Text] = DataTable(cursor_type="row", id="backups-table")
        yield table
        yield Static("", id="backup-detail")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column, width in (("backup", 16), ("age", 4), ("size", 6), ("state", 8)):
            table.add_column(column, width=width)

    def show(self, env: str, entries: list[BackupEntry], now: float, retention_days: int) -> None:
        self.entries = entries
        self.query_one("#backups-title", Label).update(
            f"5 Backups: {env}, {len(entries)} found, keep {retention_days}d")
        table = self.query_one(DataTable)
        table.clear()
        for entry in entries:
            age_days = (now - entry.created) / DAY
            age = Text(f"{age_days:.0f}d" if age_days >= 1 else f"{age_days * 24:.0f}h",
                       style="yellow" if age_days > retention_days else "")
            state = Text("complete", style="green") if entry.complete else Text("PARTIAL", style="bold red")
            table.add_row(Text(entry.id), age, Text(_size(entry.size)), state)
        self.show_detail(table.cursor_row)

    def show_detail(self, index: int) -> None:
        if not 0 <= index < len(self.entries):
            return
        entry = self.entries[index]
        self.query_one("#backup-detail", Static).update(
            f"{entry.env}/{entry.id} in {entry.store}\nversion {entry.version or '?'}, "
            f"migration head {entry.migration_head or '?'}"
            + ("" if entry.complete else "\nno manifest: never restore from this"))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail(event.cursor_row)


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f}{unit}"
        size //= 1024
    return f"{size}TiB"
