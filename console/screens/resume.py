"""Offered on start-up when an operation was interrupted (SSH drop, crash, Ctrl-C)."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from services.core.journal import OperationRecord


class ResumeModal(ModalScreen[str | None]):
    DEFAULT_CSS = """
    ResumeModal { align: center middle; }
    ResumeModal > Vertical {
        width: 72; max-width: 95%; height: auto; border: thick $warning; background: $surface; padding: 1 2;
    }
    ResumeModal Horizontal { height: auto; margin-top: 1; }
    ResumeModal Button { margin-right: 1; }
    """
    BINDINGS = [
        Binding("r", "choose('resume')", "Resume", id="resume.resume"),
        Binding("a", "choose('abandon')", "Abandon", id="resume.abandon"),
        Binding("escape,l", "choose('later')", "Later", id="resume.later"),
    ]

    def __init__(self, record: OperationRecord) -> None:
        super().__init__()
        self.record = record

    def compose(self) -> ComposeResult:
        record = self.record
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.updated))
        steps = "\n".join(f"  {'✓' if s.status == 'done' else '·'} {s.title} ({s.status})" for s in record.steps)
        at = record.steps[record.resume_index].title if record.resume_index < len(record.steps) else "the end"
        with Vertical():
            # Plain text: "[env]" and journaled titles must not be read as markup.
            yield Label(f"Interrupted: {record.title} [{record.env}]", classes="title", markup=False)
            yield Static(f"last update {when} by pid {record.pid} on {record.host}\n{steps}\n\nResume at: {at}",
                         markup=False)
            with Horizontal():
                yield Button("Resume (r)", variant="primary", id="resume")
                yield Button("Abandon (a)", variant="error", id="abandon")
                yield Button("Later (l)", id="later")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
