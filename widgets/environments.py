"""The environments list: status, deployed version, lock holder; production marked apart."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable, Label, Static

from services.environments.health import HealthBoard
from services.environments.overview import EnvironmentRow
from widgets.colours import tone
from widgets.env_columns import COLUMNS, cut, env_label
from widgets.health import MARK, dependency_line


class EnvironmentsPane(Vertical):
    DEFAULT_CSS = """
    EnvironmentsPane { width: 34; border-right: solid $primary; }
    EnvironmentsPane DataTable { height: auto; max-height: 8; }
    EnvironmentsPane #env-detail { height: 1fr; padding: 0 1; color: $text-muted; }
    EnvironmentsPane .title { text-style: bold; padding: 0 1; }
    """

    class Selected(Message):
        def __init__(self, env: str) -> None:
            super().__init__()
            self.env = env

    def __init__(self, envs: list[str], production: set[str], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.envs = envs
        self.production = production
        self.rows: dict[str, EnvironmentRow] = {}
        self.board: HealthBoard | None = None

    def compose(self) -> ComposeResult:
        yield Label("1 Environments", classes="title")
        table: DataTable[Text] = DataTable(cursor_type="row", id="env-table", zebra_stripes=False)
        yield table
        yield Static(id="env-detail")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name, width in COLUMNS:  # h: dependency health, its detail on the h key
            table.add_column(name, width=width)
        for env in self.envs:
            table.add_row(self._label(env), Text("…"), Text("…"), Text("·"), key=env)

    def _label(self, env: str) -> Text:
        production = env in self.production
        return Text(env_label(env, production), style=tone(self, "bold reverse $error") if production else "")

    @property
    def selected(self) -> str:
        table = self.query_one(DataTable)
        return self.envs[table.cursor_row] if self.envs else ""

    def update_rows(self, rows: list[EnvironmentRow]) -> None:
        table = self.query_one(DataTable)
        for row in rows:
            self.rows[row.env] = row
            index = self.envs.index(row.env)
            # Drift marks the version too ("!" for NO_COLOR terminals); the detail names what differs.
            style = "$error" if row.error else "bold $warning" if row.drift else ""
            version = Text(cut(f"!{row.version}" if row.drift else row.version, 8), style=tone(self, style))
            self._cells(table, index, {1: version, 2: Text(row.ready)})
        self.show_detail()

    def _cells(self, table: DataTable[Text], index: int, cells: dict[int, Text]) -> None:
        for column, cell in cells.items():
            # Only what changed: each update redraws the table, and the poll comes every 2 s.
            shown = table.get_cell_at(Coordinate(index, column))
            if (shown.plain, shown.style) != (cell.plain, cell.style):
                table.update_cell_at(Coordinate(index, column), cell)

    def update_health(self, board: HealthBoard) -> None:
        self.board = board
        table = self.query_one(DataTable)
        for env, health in board.latest.items():
            mark, style = MARK[health.status]
            self._cells(table, self.envs.index(env), {3: Text(mark, style=tone(self, style))})
        self.show_detail()

    def show_detail(self) -> None:
        row = self.rows.get(self.selected)
        if row is None:
            return
        lines = [
            f"{row.env}{' (PRODUCTION)' if row.production else ''}",
            f"target  {row.target}",
            f"version {row.version}",
            f"ready   {row.ready}",
            f"canary  {f'{row.canary_version} at {row.canary_weight}%' if row.canary_version else 'none'}"
            + (f", {row.canary_ready} ready" if row.canary_version else ""),
            f"lock    {row.lock or 'free'}",
        ]
        if row.restarts:
            lines.append(f"restarts {row.restarts}")
        if row.error:
            lines.append(f"error   {row.error}")
        if row.drift:
            lines += [f"DRIFT   {line}" for line in row.drift]
            lines.append("        (a: adopt what runs as a revision)")
        lines += self._health_lines(row.env)
        lines += [f"· {event}" for event in row.events]
        if row.revisions:
            lines += ["revisions (R: roll back)", *[f"  {r}" for r in row.revisions]]
        detail = self.query_one("#env-detail", Static)
        text = "\n".join(lines)
        if detail.content != text:  # the poll repeats what is shown more often than not
            detail.update(text, layout=False)  # its height is fixed (1fr): nothing to lay out again

    def _health_lines(self, env: str) -> list[str]:
        health = self.board.latest.get(env) if self.board else None
        if health is None or self.board is None:
            return []
        return [f"health  {health.status} (h: detail)", f"  {dependency_line(self.board, health)}"]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()
        self.post_message(self.Selected(self.selected))


