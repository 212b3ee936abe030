"""The backups pane: age, size, completeness; the highlighted backup's store and contents below."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from services.backups.catalog import BackupEntry
from widgets.table_pane import TablePane

DAY = 86_400


class BackupsPane(TablePane[BackupEntry]):
    NAME = "backups"
    COLUMNS = (("backup", 16), ("age", 4), ("size", 6), ("state", 8))

    def show(self, env: str, entries: list[BackupEntry], now: float, retention_days: int) -> None:
        self.now, self.retention_days = now, retention_days
        self.fill(f"5 Backups: {env}, {len(entries)} found, keep {retention_days}d", entries)

    def row(self, item: BackupEntry) -> Sequence[Text]:
        age_days = (self.now - item.created) / DAY
        age = Text(f"{age_days:.0f}d" if age_days >= 1 else f"{age_days * 24:.0f}h",
                   style="yellow" if age_days > self.retention_days else "")
        state = Text("complete", style="green") if item.complete else Text("PARTIAL", style="bold red")
        return Text(item.id), age, Text(_size(item.size)), state

    def detail(self, item: BackupEntry) -> str:
        warning = "" if item.complete else "\nno manifest: never restore from this"
        return (f"{item.env}/{item.id} in {item.store}\nversion {item.version or '?'}, "
                f"migration head {item.migration_head or '?'}{warning}")


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f}{unit}"
        size //= 1024
    return f"{size}TiB"
