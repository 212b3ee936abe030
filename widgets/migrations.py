"""The migrations pane: applied, pending, failed, edited; when each was applied and how long it took."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text

from services.ports import MigrationRecord
from widgets.table_pane import TablePane

STATE_STYLE = {"applied": "green", "pending": "yellow", "failed": "bold red", "edited": "bold magenta",
               "missing_folder": "magenta", "rolled_back": "dim"}
NAME_WIDTH = 30


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class MigrationsPane(TablePane[MigrationRecord]):
    NAME = "migrations"
    COLUMNS = (("migration", NAME_WIDTH), ("state", 8))

    def show(self, env: str, records: list[MigrationRecord]) -> None:
        pending = sum(r.state == "pending" for r in records)
        self.fill(f"3 Migrations: {env}, {len(records) - pending} applied, {pending} pending", records)

    def row(self, item: MigrationRecord) -> Sequence[Text]:
        return Text(clip(item.name, NAME_WIDTH)), Text(item.state, style=STATE_STYLE.get(item.state, ""))

    def detail(self, item: MigrationRecord) -> str:
        applied = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(item.started_at)) if item.started_at else "-"
        took = f"{item.finished_at - item.started_at:.1f}s" if item.started_at and item.finished_at else "-"
        logs = f"\n{item.logs}" if item.logs else ""
        return f"{item.name}\napplied {applied}, took {took}\nchecksum {item.checksum[:16]}…{logs}"
