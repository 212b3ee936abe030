"""A small table of CPU and memory per container or pod (services/environments/logs.resource_use).
A widget of its own so the environment's detail view can embed it too; it only shows what it is given."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label

from services.core.observe import UsageReport
from services.environments.logs import usage_cells

COLUMNS = (("CONTAINER", 30), ("ROLE", 7), ("CPU", 7), ("MEMORY", 20))


class ResourceTable(Vertical):
    DEFAULT_CSS = """
    ResourceTable { height: auto; max-height: 8; }
    ResourceTable DataTable { height: auto; max-height: 6; }
    ResourceTable #resources-note { color: $text-muted; height: auto; }
    """

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="none", show_cursor=False, id="resources-table")
        yield Label("reading CPU and memory…", id="resources-note", markup=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for header, width in COLUMNS:
            table.add_column(header, width=width)

    def show(self, report: UsageReport) -> None:
        table: DataTable[str] = self.query_one(DataTable)
        table.clear()
        for row in report.rows:
            table.add_row(*usage_cells(row))
        note = report.note or (f"CPU and memory from {report.source}" if report.rows
                               else "no running containers or pods")
        self.query_one("#resources-note", Label).update(note)

    def failed(self, why: str) -> None:
        self.query_one("#resources-note", Label).update(f"cannot read CPU and memory: {why}")
