"""The logs screen (`l` on the main screen): the selected environment's app logs, stable and canary
merged with a prefix, followed live, with since (`s`), role (`r`), filter (`F`) and search (`/`); and a
small CPU and memory table above them (widgets/resources.py), polled every few seconds while the screen shows.

The follow runs in a named thread worker and reads lines into a buffer that a 100 ms timer writes
in one batch."""

from __future__ import annotations

import threading

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header
from textual.worker import Worker, WorkerState

from services.core.container import Services
from services.environments.logs import Line, follow_logs, parse_since
from widgets.app_logs import AppLogPane
from widgets.banner import SandboxBanner
from widgets.resources import ResourceTable

SINCES = ("1m", "10m", "1h", "all")
ROLES: tuple[str | None, ...] = (None, "stable", "canary")
USAGE_POLL_S = 5.0
BATCH_S = 0.1


class LogsScreen(Screen[None]):
    BINDINGS = [
        Binding("l", "app.pop_screen", "Back", id="logs.back"),
        Binding("s", "since", "Since", id="logs.since"),
        Binding("r", "role", "Role", id="logs.role"),
        Binding("F", "filter", "Filter", id="logs.filter"),
    ]

    def __init__(self, services: Services, env: str, seed: int = 7) -> None:
        super().__init__()
        self.services, self.env, self.seed = services, env, seed
        self.since, self.role = "10m", ROLES[0]
        self.cancel = threading.Event()
        self.buffer: list[Line] = []
        self.buffer_lock = threading.Lock()

    def compose(self) -> ComposeResult:
        yield Header()
        if self.services.sandbox:
            yield SandboxBanner(self.seed, self.services.time_scale)
        yield ResourceTable(self.services, self.env, USAGE_POLL_S, id="resources")
        yield AppLogPane(id="app-logs")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(BATCH_S, self.drain)
        self.restart()

    def on_unmount(self) -> None:
        self.cancel.set()

    # --- logs ----------------------------------------------------------------------------------

    def restart(self) -> None:
        self.cancel.set()  # the last follow stops at its next line or poll
        self.cancel = threading.Event()
        with self.buffer_lock:
            self.buffer = []
        pane = self.query_one(AppLogPane)
        pane.begin(f"{self.env} · {self.role or 'stable + canary'} · since {self.since}")
        pane.view.focus()
        self.follow(self.cancel)

    @work(thread=True, exclusive=True, group="app-logs", exit_on_error=False)
    def follow(self, cancel: threading.Event) -> None:
        for line in follow_logs(self.services, self.env, role=self.role, since_s=parse_since(self.since),
                                follow=True, cancel=cancel):
            with self.buffer_lock:
                if cancel.is_set():
                    return
                self.buffer.append(line)

    def drain(self) -> None:
        with self.buffer_lock:
            lines, self.buffer = self.buffer, []
        if lines:
            self.query_one(AppLogPane).add(lines)

    def action_since(self) -> None:
        self.since = SINCES[(SINCES.index(self.since) + 1) % len(SINCES)]
        self.restart()

    def action_role(self) -> None:
        self.role = ROLES[(ROLES.index(self.role) + 1) % len(ROLES)]
        self.restart()

    def action_filter(self) -> None:
        self.query_one(AppLogPane).open_filter()

    @on(Worker.StateChanged)
    def worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{event.worker.group}: {type(error).__name__}: {error}", severity="error", timeout=15,
                        markup=False)
