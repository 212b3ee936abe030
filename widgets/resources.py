"""A small table of CPU and memory per container or pod (services/environments/logs.resource_use).

A widget of its own, with its own poll, so the logs screen and the environment's detail (the health
screen, `h`) show the same table: it reads in a named thread worker and schedules the next read only
after the last one came back, and only while it is mounted (a screen that is gone polls nothing)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Label

from services.core.container import Services
from services.core.observe import UsageReport
from services.environments.logs import resource_use, usage_cells

COLUMNS = (("CONTAINER", 26), ("ROLE", 7), ("CPU", 7), ("MEMORY", 20))


class ResourceTable(Vertical):
    DEFAULT_CSS = """
    ResourceTable { height: auto; max-height: 8; }
    ResourceTable DataTable { height: auto; max-height: 6; }
    ResourceTable #resources-note { color: $text-muted; height: auto; }
    """

    class Usage(Message):
        def __init__(self, report: UsageReport | None, error: str = "") -> None:
            super().__init__()
            self.report, self.error = report, error

    def __init__(self, services: Services, env: str, every_s: float, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.services, self.env, self.every_s = services, env, every_s

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="none", show_cursor=False, id="resources-table")
        yield Label("reading CPU and memory…", id="resources-note", markup=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for header, width in COLUMNS:
            table.add_column(header, width=width)
        self.poll()

    @work(thread=True, exclusive=True, group="resources", exit_on_error=False)
    def poll(self) -> None:
        try:
            self.post_message(self.Usage(resource_use(self.services, self.env)))
        except Exception as err:  # noqa: BLE001 - shown in the table's note; the screen goes on
            self.post_message(self.Usage(None, f"{type(err).__name__}: {err}"))

    def on_resource_table_usage(self, message: Usage) -> None:
        message.stop()
        if message.report is not None:
            self.show(message.report)
        else:
            self.failed(message.error)
        if self.is_attached:
            self.set_timer(self.every_s, self.poll)

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
