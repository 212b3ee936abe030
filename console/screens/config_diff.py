"""Two environments' settings side by side (`config diff` in the console): the highlighted
environment against another, differences marked and coloured; `[` `]` pick the other environment,
`c` shows only what differs."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from services.core.config import ReleaseConfig
from services.environments.config_diff import diff
from widgets.colours import tone


def counterpart(environments: list[str], env: str) -> str:
    """Whom an environment is compared with first: the next (staging -> production); the last, the one before."""
    at = environments.index(env)
    return environments[at + 1] if at + 1 < len(environments) else environments[max(at - 1, 0)]


class ConfigDiffScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    ConfigDiffScreen { align: center middle; }
    ConfigDiffScreen > Vertical {
        width: 96%; max-width: 140; height: 90%; border: thick $accent; background: $surface; padding: 0 1;
    }
    ConfigDiffScreen DataTable { height: 1fr; }
    ConfigDiffScreen .hint { color: $text-muted; }
    ConfigDiffScreen #diff-detail { height: 2; }
    """
    BINDINGS = [
        Binding("escape,q", "dismiss", "Close", id="diff.close"),
        Binding("left_square_bracket", "other(-1)", "Previous env", id="diff.previous"),
        Binding("right_square_bracket", "other(1)", "Next env", id="diff.next"),
        Binding("c", "toggle_changed", "Only changes", id="diff.changed"),
    ]

    def __init__(self, config: ReleaseConfig, env: str) -> None:
        super().__init__()
        self.config, self.left = config, env
        self.environments = list(config.environments)
        self.right = counterpart(self.environments, env)
        self.changed_only = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("", id="diff-title", classes="title")
            yield DataTable(id="diff-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="diff-detail", markup=False)  # the highlighted row whole: values cut above
            yield Label("[ ] other environment · c only changes · esc close", classes="hint", markup=False)

    def on_mount(self) -> None:
        self.call_after_refresh(self.show)  # after layout: the columns are sized to the table's width

    def show(self) -> None:
        rows = [row for row in diff(self.config, self.left, self.right) if row.differs or not self.changed_only]
        changed = sum(row.differs for row in rows)
        self.query_one("#diff-title", Label).update(
            Text(f"config: {self.left} vs {self.right} — {changed} setting(s) differ"
                 + (" (only changes)" if self.changed_only else "")))
        table = self.query_one("#diff-table", DataTable)
        table.clear(columns=True)
        key_width = max([len(row.key) for row in rows] + [len("setting")])
        # Both sides always in view: each value column gets half of what the key leaves, cut with "…".
        side = max(8, (table.size.width - key_width - 1 - 4 * 2 - 2) // 2)  # 4 cells padded 1+1, a scrollbar
        table.add_column("", width=1)
        table.add_column("setting", width=key_width)
        table.add_column(self.left, width=side)
        table.add_column(self.right, width=side)
        marked = tone(self, "bold $warning")
        for row in rows:
            style = marked if row.differs else ""
            table.add_row(Text("≠" if row.differs else " ", style=style), Text(row.key, style=style),
                          Text(_fit(row.left, side), style=style), Text(_fit(row.right, side), style=style),
                          key=row.key)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        table = event.data_table
        _, key, left, right = (str(cell) for cell in table.get_row(event.row_key))
        whole = {row.key: row for row in diff(self.config, self.left, self.right)}.get(key)
        if whole is not None:
            self.query_one("#diff-detail", Static).update(f"{self.left}: {whole.left}\n{self.right}: {whole.right}")

    def on_resize(self) -> None:
        self.call_after_refresh(self.show)

    def action_other(self, step: int) -> None:
        others = [env for env in self.environments if env != self.left] or [self.left]
        at = others.index(self.right) if self.right in others else -1
        self.right = others[(at + step) % len(others)]
        self.show()

    def action_toggle_changed(self) -> None:
        self.changed_only = not self.changed_only
        self.show()


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
