"""The audit / history view: the newest records of the hash-chained audit log, and its verification.

Records are options that wrap, so a long outcome is never cut off on a narrow terminal.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, OptionList


class AuditPane(Vertical):
    DEFAULT_CSS = """
    AuditPane OptionList { height: 1fr; }
    AuditPane .title { text-style: bold; }
    """

    def compose(self) -> ComposeResult:
        yield Label("6 Audit", classes="title", id="audit-title")
        yield OptionList(id="audit-list")

    def show(self, records: list[dict[str, Any]], verified: bool, problem: str) -> None:
        title = Text("6 Audit: ")
        title.append("chain verified" if verified else f"CHAIN BROKEN: {problem}",
                     style="green" if verified else "bold red")
        self.query_one("#audit-title", Label).update(title)
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([_line(r) for r in reversed(records)] or [Text("no audit records yet", style="dim")])


def _line(record: dict[str, Any]) -> Text:
    who = record["who"]["user"]
    if ssh := record["who"].get("ssh_client"):
        who += f" from {ssh.split()[0]}"
    line = Text(f"{record['when'][5:16].replace('T', ' ')} ", style="dim")
    line.append(f"{record['env']} {record['action']} ", style="bold")
    line.append(f"{record['outcome']} ({who})")
    if record.get("override_reason"):
        line.append(f" override: {record['override_reason']}", style="yellow")
    return line
