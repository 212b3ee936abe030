"""The audit / history view: the newest records of the audit trail, and its verification.

It shows the selected environment's shared trail (every bastion's records) when it has one, else
this bastion's log; the title says which.

Records are options that wrap, so a long outcome is never cut off on a narrow terminal.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, OptionList

from services.core.audit import AuditView
from widgets.colours import tone


class AuditPane(Vertical):
    DEFAULT_CSS = """
    AuditPane OptionList { height: 1fr; }
    AuditPane .title { text-style: bold; }
    """

    def compose(self) -> ComposeResult:
        yield Label("6 Audit", classes="title", id="audit-title")
        yield OptionList(id="audit-list")

    def show(self, view: AuditView) -> None:
        records, result = view.records, view.verified
        title = Text(f"6 Audit · {view.trail}: ")
        title.append("chain verified" if result.ok else f"CHAIN BROKEN: {result.problem}",
                     style=tone(self, "$success" if result.ok else "bold $error"))
        if result.ok and not result.keyed:
            title.append(" (unkeyed)", style=tone(self, "$warning"))
        self.query_one("#audit-title", Label).update(title)
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([_line(r, self) for r in reversed(records)] or [Text("no audit records yet", style="dim")])


def _line(record: dict[str, Any], pane: AuditPane) -> Text:
    who = record["who"]["user"] + (f"@{record['who']['host']}" if record["who"].get("host") else "")
    if ssh := record["who"].get("ssh_client"):
        who += f" from {ssh.split()[0]}"
    line = Text(f"{record['when'][5:16].replace('T', ' ')} ", style="dim")
    line.append(f"{record['env']} {record['action']} ", style="bold")
    line.append(f"{record['outcome']} ({who})")
    if record.get("override_reason"):
        line.append(f" override: {record['override_reason']}", style=tone(pane, "$warning"))
    return line
