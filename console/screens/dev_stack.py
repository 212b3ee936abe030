"""`7`: the development stack ([dev] in release.toml): each compose service's state and health, up,
down and restart (down and restart confirm in the modal; each runs as an audited operation), the
selected service's log, and prisma-studio's URL (shown, and opened where a browser can be).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Log, Static
from textual.worker import Worker, WorkerState

from console.pump import EventPump
from services.core.container import Services
from services.core.events import ConfirmationNeeded, Finished, LogLine
from services.core.operations import Cancelled, cancelled_by
from services.core.ports import DevService
from widgets.confirm import ConfirmModal

MAX_LINES = 2000
FLUSH_S = 0.1


class DevStackScreen(Screen[None]):
    DEFAULT_CSS = """
    DevStackScreen #dev-heading { height: auto; padding: 0 1; }
    DevStackScreen DataTable { height: auto; max-height: 8; }
    DevStackScreen Log { height: 1fr; border-top: solid $primary; }
    """
    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back", id="dev.back"),
        Binding("u", "up", "Up", id="dev.up"),
        Binding("U", "up_all", "Up all", id="dev.up_all", show=False),
        Binding("R", "restart", "Restart", id="dev.restart"),
        Binding("X", "down", "Down", id="dev.down"),
        Binding("l", "logs", "Logs", id="dev.logs"),
        Binding("f", "follow", "Follow", id="dev.follow", show=False),
        Binding("o", "studio", "Studio", id="dev.studio"),
        Binding("g", "refresh", "Refresh", id="dev.refresh", show=False),
    ]

    class Status(Message):
        def __init__(self, rows: list[DevService] | None, error: str = "") -> None:
            super().__init__()
            self.rows, self.error = rows, error

    def __init__(self, services: Services) -> None:
        super().__init__()
        self.services = services
        self.pump: EventPump | None = None
        self.following = threading.Event()  # set: stop the followed log

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self._heading(), id="dev-heading", markup=False)
            yield DataTable(cursor_type="row", zebra_stripes=True)
            yield Log(max_lines=MAX_LINES, auto_scroll=True)
        yield Footer()

    def _heading(self) -> str:
        dev = self.services.config.dev
        if dev is None:
            return "No development stack: add a [dev] section to release.toml (docs/operations.md)."
        return (f"Development stack: compose project {dev.project} ({dev.compose_file})"
                f" · prisma-studio: {dev.studio_url}")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("SERVICE", "STATE", "HEALTH", "N", "IMAGE")
        self.drain_timer = self.set_interval(0.1, self.drain, pause=True)
        self.action_refresh()

    def on_unmount(self) -> None:
        self.following.set()
        if self.pump is not None:
            self.pump.cancel.set()

    @work(thread=True, exclusive=True, group="dev-status", exit_on_error=False)
    def action_refresh(self) -> None:
        from services.environments import dev_stack

        try:
            self.post_message(self.Status(dev_stack.status(self.services)))
        except Exception as err:  # noqa: BLE001 - shown on the screen, not a crash: Docker may be away
            self.post_message(self.Status(None, str(err)))

    def on_dev_stack_screen_status(self, message: Status) -> None:
        table = self.query_one(DataTable)
        at = table.cursor_row  # kept across the refresh: the operator's selection stays
        table.clear()
        if message.rows is None:
            self.query_one(Log).write_line(f"status: {message.error}")
            return
        for row in message.rows:
            table.add_row(row.name, row.state, row.health or "-", str(row.containers), row.image or "-", key=row.name)
        table.move_cursor(row=min(at, table.row_count - 1))

    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            self.notify("no service to act on", severity="warning")
            return None
        return str(table.get_row_at(table.cursor_row)[0])

    def _launch(self, make: Any) -> None:
        if self.pump is not None:
            self.notify("a dev stack operation is running", severity="warning")
            return
        try:
            operation = make()
        except Exception as err:  # noqa: BLE001 - refused before it started: say why
            self.notify(str(err), severity="error", markup=False)
            return
        self.pump = EventPump()
        self.query_one(Log).write_line(f"--- {operation.title}")
        self.drain_timer.resume()
        self.run_operation(operation, self.pump)

    @work(thread=True, exclusive=True, group="dev-operation", exit_on_error=False)
    def run_operation(self, operation: Any, pump: EventPump) -> None:
        self.services.runner.run(operation, pump.put, pump.ask, pump.cancel)

    def drain(self) -> None:
        if self.pump is None:
            return
        log = self.query_one(Log)
        for event in self.pump.drain():
            if isinstance(event, LogLine):
                log.write_line(event.text)
            elif isinstance(event, ConfirmationNeeded):
                banner = "SANDBOX" if self.services.sandbox else None
                self.app.push_screen(ConfirmModal(event.prompt, event.expected, banner), self.pump.answer)
            elif isinstance(event, Finished):
                log.write_line(f"--- {event.outcome.value}: {event.detail}")
                self.notify(f"{event.outcome.value}: {event.detail.splitlines()[0] if event.detail else ''}",
                            markup=False, severity="information" if event.outcome.value == "succeeded" else "error")
                self.pump = None
                self.drain_timer.pause()
                self.action_refresh()
                return

    def action_up(self) -> None:
        from services.environments import dev_stack

        if (service := self.selected()) is not None:
            self._launch(lambda: dev_stack.up(self.services, service))

    def action_up_all(self) -> None:
        from services.environments import dev_stack

        self._launch(lambda: dev_stack.up(self.services))

    def action_restart(self) -> None:
        from services.environments import dev_stack

        if (service := self.selected()) is not None:
            self._launch(lambda: dev_stack.restart(self.services, service))

    def action_down(self) -> None:
        from services.environments import dev_stack

        self._launch(lambda: dev_stack.down(self.services))

    def action_logs(self, follow: bool = False) -> None:
        if (service := self.selected()) is None:
            return
        self.following.set()  # a log followed before stops
        self.following = threading.Event()
        self.query_one(Log).write_line(f"--- {service}: {'following (l stops)' if follow else 'last 200 lines'}")
        self.read_log(service, follow, self.following)

    def action_follow(self) -> None:
        self.action_logs(follow=True)

    @work(thread=True, exclusive=True, group="dev-logs", exit_on_error=False)
    def read_log(self, service: str, follow: bool, stop: threading.Event) -> None:
        from services.environments import dev_stack

        buffered: list[str] = []
        flushed = time.monotonic()

        def flush() -> None:
            nonlocal flushed
            if buffered:
                self.app.call_from_thread(self.query_one(Log).write_lines, buffered[:])
                buffered.clear()
            flushed = time.monotonic()

        def line(text: str) -> None:
            buffered.append(text)
            if follow and time.monotonic() - flushed >= FLUSH_S:  # a firehose: one UI update a tick
                flush()

        with cancelled_by(stop):
            try:
                dev_stack.logs(self.services, service, line, follow)
            except Cancelled:
                pass  # stopped on purpose: another log, or leaving the screen
            finally:
                flush()

    def action_studio(self) -> None:
        from services.environments import dev_stack

        try:
            url = dev_stack.studio_url(self.services)
        except Exception as err:  # noqa: BLE001 - no [dev]: say so
            self.notify(str(err), severity="error", markup=False)
            return
        self.query_one(Log).write_line(f"prisma-studio: {url}  (over SSH: ssh -L 5555:localhost:5555 this host)")
        self.app.open_url(url)
        self.notify(f"prisma-studio: {url}", markup=False)

    @on(Worker.StateChanged)
    def worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.group != "dev-status":
            self.notify(str(event.worker.error), severity="error", markup=False)
            if event.worker.group == "dev-operation":
                self.pump = None
