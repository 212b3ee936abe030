"""A pane of one titled table whose highlighted row is described in full below it.

The table keeps to a few narrow columns so it fits beside the environments at 80x24;
whatever does not fit goes into the detail, so nothing is cut off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Generic, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Label, Static

Item = TypeVar("Item")


class TablePane(Vertical, Generic[Item]):
    DEFAULT_CSS = """
    TablePane DataTable { height: auto; max-height: 1fr; }
    TablePane .detail-scroll { height: auto; max-height: 1fr; }
    TablePane .detail { height: auto; color: $text-muted; }
    """
    NAME: ClassVar[str]  # ids: NAME-title, NAME-table, NAME-detail
    COLUMNS: ClassVar[Sequence[tuple[str, int]]]  # (header, width)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.items: list[Item] = []

    def compose(self) -> ComposeResult:
        yield Label(self.NAME, classes="title", id=f"{self.NAME}-title")
        table: DataTable[Text] = DataTable(cursor_type="row", id=f"{self.NAME}-table")
        yield table
        # A long detail scrolls (tab to it, then the arrows) rather than being cut off at 80x24.
        with VerticalScroll(classes="detail-scroll"):
            # Not markup: a detail holds what the database said (a failed migration's logs, "[/path]" say).
            yield Static("", classes="detail", id=f"{self.NAME}-detail", markup=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for header, width in self.COLUMNS:
            table.add_column(header, width=width)

    def fill(self, title: str, items: list[Item]) -> None:
        self.items = items
        self.query_one(f"#{self.NAME}-title", Label).update(title)
        table = self.query_one(DataTable)
        table.clear()
        for item in items:
            table.add_row(*self.row(item))
        self.show_detail(table.cursor_row)

    @property
    def highlighted(self) -> Item | None:
        index = self.query_one(DataTable).cursor_row
        return self.items[index] if 0 <= index < len(self.items) else None

    def show_detail(self, index: int) -> None:
        if 0 <= index < len(self.items):
            self.query_one(f"#{self.NAME}-detail", Static).update(self.detail(self.items[index]))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail(event.cursor_row)

    def row(self, item: Item) -> Sequence[Text]:
        raise NotImplementedError

    def detail(self, item: Item) -> str:
        raise NotImplementedError
