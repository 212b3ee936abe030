"""The audit / history view: the last records of the hash-chained audit log, and its verification."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label


class AuditPane(Vertical):
    DEFAULT_CSS = """
    AuditPane DataTable { height: 1fr; }
    AuditPane .title { text-style: bold; }
    """

    def compose(self) -> ComposeResult:
        yield Label("6 Audit", classes="title", id="audit-title")
        table: DataTable[Text] = DataTable(cursor_type="row", id="audit-table")
        yield table

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("when", "who", "env", "action", "outcome")

    def show(self, records: list[dict[str, Any]], verified: bool, problem: str) -> None:
        status = Text("chain verified", style="green") if verified else Text(f"CHAIN BROKEN: {problem}", style="bold red")
        title = Text("6 Audit: ")
        title.append_text(status)
        self.query_one("#audit-title", Label).update(title)
        table = self.query_one(DataTable)
        table.clear()
        for record in reversed(records):
            who = record["who"]["user"] + (f" ({record['who']['ssh_client'].split()[0]})"
                                           if record["who"].get("ssh_client") else "")
            table.add_row(Text(record["when"][11:19]), Text(who), Text(record["env"]), Text(record["action"]),
                          Text(record["outcome"][:60]))
