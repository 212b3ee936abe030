"""The runbook panel: the running operation's steps, done / running / waiting / failed."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Label, Static

from services.core.events import (
    ConfirmationNeeded,
    Event,
    Finished,
    OperationStarted,
    Outcome,
    Progress,
    StepFinished,
    StepStarted,
    StepStatus,
)
from widgets.colours import tone
from widgets.steady import update_steady

ICONS = {
    StepStatus.PENDING: ("·", "dim"),
    StepStatus.RUNNING: ("▶", "bold $warning"),
    StepStatus.WAITING: ("?", "bold $accent"),
    StepStatus.DONE: ("✓", "$success"),
    StepStatus.FAILED: ("✗", "bold $error"),
    StepStatus.SKIPPED: ("-", "dim"),
}


class RunbookPanel(VerticalScroll):
    DEFAULT_CSS = """
    RunbookPanel { height: auto; max-height: 9; border-top: solid $primary; padding: 0 1; display: none; }
    RunbookPanel.-active { display: block; }
    RunbookPanel.-short { max-height: 6; }
    RunbookPanel .title { text-style: bold; }
    RunbookPanel #runbook-progress { height: auto; color: $accent; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.steps: list[tuple[str, str]] = []
        self.status: dict[str, StepStatus] = {}
        self.details: dict[str, str] = {}
        self.outcome: Text | None = None

    def compose(self) -> ComposeResult:
        # Plain text: the title ends in "[env]", which markup would swallow as a tag.
        yield Label("Runbook: no operation running", classes="title", id="runbook-title", markup=False)
        yield Static(id="runbook-steps")
        # Text, not an animated ProgressBar: an idle console must not redraw over SSH.
        yield Static("", id="runbook-progress")

    def on_resize(self) -> None:
        self.set_class(self.app.size.height < 32, "-short")

    def apply(self, event: Event) -> None:
        if isinstance(event, OperationStarted):
            self.add_class("-active")
            self.steps = list(event.steps)
            self.status = {sid: StepStatus.DONE if i < event.start_at else StepStatus.PENDING
                           for i, (sid, _) in enumerate(event.steps)}
            self.details, self.outcome = {}, None
            self.query_one("#runbook-title", Label).update(f"Runbook: {event.title}")
            self.show_progress("")
        elif isinstance(event, StepStarted):
            self.status[event.step_id] = StepStatus.RUNNING
            self.show_progress("")
        elif isinstance(event, StepFinished):
            self.status[event.step_id] = event.status
            self.details[event.step_id] = event.detail
        elif isinstance(event, ConfirmationNeeded):
            self.status[event.step_id] = StepStatus.WAITING
            self.details[event.step_id] = "waiting for you"
        elif isinstance(event, Progress):
            self.show_progress(progress_bar(event.done, event.total, event.unit))
            return
        elif isinstance(event, Finished):
            warning = tone(self, "$warning")
            style = tone(self, "bold $success" if event.outcome is Outcome.SUCCEEDED else "bold $error")
            self.outcome = Text(f"{event.outcome.value.upper()}: {event.detail}", style=style)
            if event.next_options:
                self.outcome.append("\nnext: " + " | ".join(event.next_options), style=warning)
            if event.outcome is not Outcome.SUCCEEDED:
                self.outcome.append("\npress r to run it again from the step that stopped", style=warning)
        else:
            return
        self.query_one("#runbook-steps", Static).update(self.render_steps())
        if isinstance(event, Finished):
            self.call_after_refresh(self.reveal_outcome)
        elif isinstance(event, (StepStarted, ConfirmationNeeded)):
            self.call_after_refresh(self.reveal_current)

    def reveal_current(self) -> None:
        """Keep the running step in view, with the one before it, on a short terminal."""
        steps = self.query_one("#runbook-steps", Static)
        current = next((i for i, (sid, _) in enumerate(self.steps)
                        if self.status.get(sid) in (StepStatus.RUNNING, StepStatus.WAITING)), None)
        if current is None or not steps.size.width:
            return
        before = self.render_steps(upto=max(current - 1, 0))
        lines = len(before.wrap(self.app.console, steps.size.width)) if current > 1 else 0
        self.scroll_to(y=steps.virtual_region.y + lines, animate=False)

    def reveal_outcome(self) -> None:
        """Scroll the outcome to the top of the view: on a short terminal it falls below the steps."""
        steps = self.query_one("#runbook-steps", Static)
        if self.outcome is None or not steps.size.width:
            return
        lines = len(self.outcome.wrap(self.app.console, steps.size.width))
        self.scroll_to(y=steps.virtual_region.bottom - lines, animate=False)

    def show_progress(self, text: str) -> None:
        update_steady(self.query_one("#runbook-progress", Static), text)  # once a check: no reflow

    def render_steps(self, upto: int | None = None) -> Text:
        """The checklist; with `upto`, only the steps before that index (to measure them)."""
        text = Text()
        for step_id, title in self.steps[:upto]:
            icon, style = ICONS[self.status.get(step_id, StepStatus.PENDING)]
            text.append(f"{icon} ", style=tone(self, style))
            text.append(title)
            if detail := self.details.get(step_id):
                text.append(f"  {detail}", style="dim")
            text.append("\n")
        if self.outcome is not None and upto is None:
            text.append_text(self.outcome)
        return text


def progress_bar(done: float, total: float, unit: str, width: int = 20) -> str:
    share = done / total if total else 0.0
    filled = round(share * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done:g}/{total:g} {unit}"
