"""A form for an action's parameters: one input per parameter, Enter to go, Esc to cancel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from services.core.actions import Param, param_problem

if TYPE_CHECKING:
    from services.core.config import ReleaseConfig


class ParamsModal(ModalScreen[dict[str, str] | None]):
    DEFAULT_CSS = """
    ParamsModal { align: center middle; }
    ParamsModal > VerticalScroll {
        width: 72; max-width: 95%; height: auto; max-height: 90%; border: thick $primary; background: $surface;
        padding: 0 2;
    }
    ParamsModal .field { height: 1; margin-top: 1; }
    ParamsModal .field Label { width: 18; }
    ParamsModal .field Input { width: 1fr; height: 1; border: none; padding: 0 1; background: $boost; }
    ParamsModal .field Input:focus { background: $accent 30%; }
    ParamsModal .help { color: $text-muted; width: 100%; }
    ParamsModal .hint { color: $text-muted; margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="params.cancel")]

    def __init__(self, title: str, params: Sequence[Param], values: dict[str, str], banner: str | None = None,
                 config: ReleaseConfig | None = None):
        """`values` pre-fills fields (e.g. the migration highlighted in the pane); `config` gives the defaults
        that come from it, shown in the empty fields."""
        super().__init__()
        self.title_text, self.values, self.banner, self.config = title, values, banner, config
        self.params = tuple(p for p in params if p.in_form)  # switches are CLI-only (the plan shows anyway)

    def compose(self) -> ComposeResult:
        with VerticalScroll(can_focus=False):  # Tab goes field to field, not to the scroller
            if self.banner:
                yield Static(self.banner, classes="sandbox-banner")
            yield Label(self.title_text, classes="title", markup=False)
            for param in self.params:
                # Compact: one row per field, its help below, so a form fits an 80x24 terminal.
                with Horizontal(classes="field"):
                    yield Label(param.name + (" *" if param.required else ""), markup=False)
                    # Empty, a field shows its default and where it comes from (never its name: that
                    # would read as a value typed in); an empty field runs with that default.
                    yield Input(self.values.get(param.name, param.default), placeholder=param.placeholder(self.config),
                                id=f"param-{param.name}")
                yield Label(param.help, classes="help", markup=False)
            yield Static("Tab between fields; Enter to go on; Esc to cancel; * is required", classes="hint")

    def on_mount(self) -> None:
        self.query(Input).first().focus()

    def on_input_submitted(self) -> None:
        values = {p.name: self.query_one(f"#param-{p.name}", Input).value.strip() for p in self.params}
        missing = [p.name for p in self.params if p.required and not values[p.name]]
        if missing:
            self.notify(f"{', '.join(missing)} is required", severity="error")
            return
        # A value its check refuses is said here, the form kept open with what was typed, that field focused.
        for param in self.params:
            if problem := param_problem(param, values[param.name]):
                self.notify(problem, severity="error", timeout=10, markup=False)
                self.query_one(f"#param-{param.name}", Input).focus()
                return
        self.dismiss({name: value for name, value in values.items() if value})

    def action_cancel(self) -> None:
        self.dismiss(None)
