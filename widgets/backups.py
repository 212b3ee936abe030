"""The backups pane: age, size, completeness; the highlighted backup's store and contents below, and the
point-in-time recovery window under them when the environment has one (widgets/pitr_window.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult

from services.backups.catalog import BackupEntry
from services.backups.pitr import PitrCheck
from widgets.colours import tone
from widgets.pitr_window import RecoveryWindow
from widgets.table_pane import TablePane

DAY = 86_400


class BackupsPane(TablePane[BackupEntry]):
    NAME = "backups"
    COLUMNS = (("backup", 16), ("age", 4), ("size", 6), ("state", 8))

    def compose(self) -> ComposeResult:
        yield from super().compose()
        yield RecoveryWindow(id="backups-pitr")

    def show_window(self, report: PitrCheck | None) -> None:
        self.query_one(RecoveryWindow).show(report)

    def show(self, env: str, entries: list[BackupEntry], now: float, retention_days: int) -> None:
        self.now, self.retention_days = now, retention_days
        self.fill(f"5 Backups: {env}, {len(entries)} found, keep {retention_days}d", entries)

    def row(self, item: BackupEntry) -> Sequence[Text]:
        age_days = (self.now - item.created) / DAY
        age = Text(f"{age_days:.0f}d" if age_days >= 1 else f"{age_days * 24:.0f}h",
                   style=tone(self, "$warning") if age_days > self.retention_days else "")
        if not item.complete:
            state = Text("PARTIAL", style=tone(self, "bold $error"))
        elif item.verified_at:
            state = Text("verified", style=tone(self, "bold $success"))
        else:
            state = Text("complete", style=tone(self, "$success"))
        return Text(item.id + ("*" if item.pinned else "")), age, Text(_size(item.size)), state

    def detail(self, item: BackupEntry) -> str:
        lines = [f"{item.env}/{item.id} in {item.store}",
                 f"version {item.version or '?'}, migration head {item.migration_head or '?'}"]
        if not item.complete:
            lines.append("no manifest: never restore from this")
        elif item.verified_at and item.restore_s is not None:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(item.verified_at))
            lines.append(f"verified {when} by a trial restore; RTO (database) {item.restore_s:.1f}s")
        else:
            lines.append("not verified yet: v runs a trial restore (a backup not restored is a hope)")
        if item.pinned:
            lines.append(f"* pinned to release {item.pinned}: retention keeps it")
        return "\n".join(lines)


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f}{unit}"
        size //= 1024
    return f"{size}TiB"
