"""The main screen: the environments list beside one pane (more on wide terminals), the runbook
below. It wires widgets to services; all service calls run in named thread workers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import ContentSwitcher, Footer, Header, Static
from textual.worker import Worker, WorkerState

from console.action_table import ACTIONS, BY_KIND, PANES
from console.last_seen import SeenKeeper, seen_rows
from console.pump import EventPump
from console.screens.resume import ResumeModal
from services.backups.catalog import BackupEntry, list_backups
from services.backups.pitr import PitrCheck, pitr_covers, read_window
from services.catalog import all_actions, build_operation
from services.core.audit import AuditView
from services.core.config import ConfigError
from services.core.container import Services
from services.core.events import (
    CanaryStepChanged,
    CheckScheduled,
    ConfirmationNeeded,
    Event,
    Finished,
    LogLine,
    MetricSample,
    OperationStarted,
    VerdictLogged,
)
from services.core.journal import OperationRecord
from services.core.operations import StepFailed
from services.core.ports import MigrationRecord
from services.environments.health import EnvironmentHealth, HealthBoard, check
from services.environments.overview import EnvironmentRow, environment_rows
from services.factory import suggested_params
from services.migrations.deploy import lint_pending
from services.migrations.lint import Finding
from widgets.audit import AuditPane
from widgets.backups import BackupsPane
from widgets.banner import SandboxBanner
from widgets.build_log import BuildLogPane
from widgets.canary import CanaryPane
from widgets.colours import tone
from widgets.confirm import ConfirmModal
from widgets.environments import EnvironmentsPane
from widgets.health import HealthScreen
from widgets.migrations import MigrationsPane
from widgets.params import ParamsModal
from widgets.pitr_window import RecoveryWindow
from widgets.runbook import RunbookPanel

POLL_SECONDS = 2.0
# The operation's events are drained 10 times a second while the build log shows (its lines stream
# in view), 4 times otherwise: the canary pane redraws once a second anyway, and a question wakes
# the drain at once (EventPump.wake).
DRAIN_LOG_S, DRAIN_S = 0.1, 0.25
WIDE_COLUMNS = 140  # from here the runbook gets its own column
CHECKLISTS = ("restore", "restore-drill", "pitr-restore", "pitr-drill")
RETRYABLE = ("failed", "declined", "cancelled")


@dataclass
class PaneData:
    env: str
    migrations: list[MigrationRecord]
    findings: list[Finding]
    backups: list[BackupEntry]
    audit: AuditView
    now: float
    errors: dict[str, str]  # pane -> why its data could not be read (an unreachable database, say)


T = TypeVar("T")


def attempt(errors: dict[str, str], pane: str, read: Callable[[], T], empty: T) -> T:
    """Read one pane's data; a failure is shown in that pane and never hides the others."""
    try:
        return read()
    except Exception as err:  # noqa: BLE001 - shown to the operator, with its type
        errors[pane] = str(err) if isinstance(err, StepFailed) else f"{type(err).__name__}: {err}"
        return empty


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("1", "focus_envs", "Envs", id="pane.environments"),
        *[Binding(key, f"show('{pane}')", pane.capitalize(), id=f"pane.{pane}", show=False)
          for pane, key in PANES.items()],
        *[Binding(entry.key, f"start('{entry.kind}')", entry.kind.capitalize(), id=f"action.{entry.kind}",
                  show=entry.kind in ("release", "canary")) for entry in ACTIONS],
        Binding("h", "health_detail", "Health", id="environments.health", show=False),
        Binding("ctrl+x", "cancel_operation", "Cancel op", id="operation.cancel"),
        Binding("r", "retry", "Retry", id="operation.retry", show=False),
        Binding("T", "export_trace", "Export trace", id="canary.export_trace", show=False),
        Binding("equals_sign", "config_diff", "Config diff", id="environments.config_diff", show=False),
        Binding("7", "dev_stack", "Dev stack", id="screen.dev", show=False),
        Binding("l", "logs", "App logs", id="screen.logs", show=False),
    ]

    class Overview(Message):
        def __init__(self, rows: list[EnvironmentRow]) -> None:
            super().__init__()
            self.rows = rows

    class HealthPolled(Message):
        def __init__(self, results: list[EnvironmentHealth]) -> None:
            super().__init__()
            self.results = results

    class Loaded(Message):
        def __init__(self, data: PaneData) -> None:
            super().__init__()
            self.data = data

    class WindowRead(Message):
        """The recovery window of `env` (the backups pane's PITR section), read off the UI thread."""

        def __init__(self, env: str, report: PitrCheck) -> None:
            super().__init__()
            self.env, self.report = env, report

    class Asked(Message):
        """The running operation put a question: drain now (posted from its worker thread)."""

    def __init__(self, services: Services, seed: int = 7, overview: list[EnvironmentRow] | None = None,
                 keeper: SeenKeeper | None = None) -> None:
        """`overview`: environment rows already fetched off the UI thread, for a first frame with data.
        `keeper`: keeps each new list for the next start-up's first frame."""
        super().__init__()
        self.keeper = keeper
        self.services = services
        self.seed = seed
        self.overview = overview
        self.pump = EventPump()
        self.running: str | None = None
        self.health = HealthBoard(services.config.health.history)
        self.health_waiting = False  # a poll came due while hidden: it runs when the screen is back
        self.overview_waiting = False  # its poll fell due behind a full screen: polled on the return

    def compose(self) -> ComposeResult:
        yield Header()
        if self.services.sandbox:
            yield SandboxBanner(self.seed, self.services.time_scale)
        config = self.services.config
        with Horizontal(id="body"):
            yield EnvironmentsPane(list(config.environments),
                                   {n for n, e in config.environments.items() if e.production}, id="environments")
            with Vertical(id="right"):
                with ContentSwitcher(initial="build", id="panes"):
                    yield BuildLogPane(id="build")
                    yield MigrationsPane(id="migrations")
                    yield CanaryPane(id="canary")
                    yield BackupsPane(id="backups")
                    yield AuditPane(id="audit")
                yield RunbookPanel(id="runbook")
        yield Footer()

    def on_mount(self) -> None:
        self.drain_every = DRAIN_S
        self.drain_timer = self.set_interval(self.drain_every, self.drain, pause=True)
        self.query_one("#env-table").focus()
        if self.overview is None:
            self.poll_overview()
        else:
            self.post_message(self.Overview(self.overview))
        self.load_panes()
        self.poll_health()
        self.offer_resume()
        # A new theme: the panes' Rich text takes its colours at each update, so update them now.
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.load_panes())

    def on_resize(self) -> None:
        self.set_class(self.app.size.width >= WIDE_COLUMNS, "-wide")

    # --- polling: the next poll is scheduled only after the last one finished -------------

    @work(thread=True, exclusive=True, group="env-poll", exit_on_error=False)
    def poll_overview(self) -> None:
        self.services.refresh()  # what a CLI call changed meanwhile (the sandbox's world) shows here too
        rows = environment_rows(self.services, list(self.services.config.environments))
        self.post_message(self.Overview(rows))
        self.keep_seen(rows)

    def keep_seen(self, rows: list[EnvironmentRow]) -> None:
        """The list as the next start-up draws it first (from this worker thread)."""
        if self.keeper is not None and (problem := self.keeper.keep(seen_rows(rows))):
            self.app.call_from_thread(self.notify, problem, severity="warning", markup=False)

    def on_main_screen_overview(self, message: Overview) -> None:
        if self.list_in_sight():
            self.query_one(EnvironmentsPane).update_rows(message.rows)
            self.set_timer(POLL_SECONDS, self.overview_due)
        else:  # a poll under way when a full screen came over the list: polled again on the return
            self.overview_waiting = True

    def list_in_sight(self) -> bool:
        """This screen is on top, or under a modal only."""
        return self.app.screen is self or isinstance(self.app.screen, ModalScreen)

    def overview_due(self) -> None:
        """Polled while the list is in sight. Behind a full screen it waits for the return
        (on_screen_resume): Textual sends the whole top screen again (~10 KB at 80x24) after anything
        the main screen does under it, even a timer that finds nothing to do."""
        if self.list_in_sight():
            self.poll_overview()
        else:
            self.overview_waiting = True

    @work(thread=True, exclusive=True, group="health-poll", exit_on_error=False)
    def poll_health(self) -> None:
        """Every [health] interval_s, in the background: the probes' timeouts never hold the UI."""
        self.post_message(self.HealthPolled([check(self.services, env) for env in self.services.config.environments]))

    def on_main_screen_health_polled(self, message: HealthPolled) -> None:
        for result in message.results:
            self.health.add(result)
        if isinstance(self.app.screen, HealthScreen):
            self.app.screen.refresh_body()  # the list under it is brought up to date when it closes
        else:
            self.query_one(EnvironmentsPane).update_health(self.health)
        self.set_timer(self.services.config.health.interval_s, self.health_due)

    def health_due(self) -> None:
        """Never while hidden: behind another full screen, the poll waits for the return (a modal leaves
        the list in sight, and the health detail shows the polls: they go on)."""
        stack = self.app.screen_stack
        top = stack[-1]
        if top is self or (isinstance(top, ModalScreen | HealthScreen) and stack[-2:-1] == [self]):
            self.poll_health()
        else:
            self.health_waiting = True

    def on_screen_resume(self) -> None:
        if self.overview_waiting:
            self.overview_waiting = False
            self.poll_overview()
        self.query_one(EnvironmentsPane).update_health(self.health)  # what came while a screen covered it
        if self.health_waiting:
            self.health_waiting = False
            self.poll_health()

    def action_health_detail(self) -> None:
        self.app.push_screen(HealthScreen(self.health, self.selected_env, self.services))

    @work(thread=True, exclusive=True, group="pane-data", exit_on_error=False)
    def load_panes(self) -> None:
        env, services = self.selected_env, self.services
        errors: dict[str, str] = {}
        audit = services.audit.view(env)
        migrations: list[MigrationRecord] = attempt(errors, "migrations", lambda: services.database(env).status(), [])
        data = PaneData(
            env, migrations,
            attempt(errors, "lint", lambda: lint_pending(services, env, migrations) if migrations else [], []),
            attempt(errors, "backups", lambda: list_backups(services, env), []),
            audit, services.clock.now(),
            errors)
        self.post_message(self.Loaded(data))

    def on_main_screen_loaded(self, message: Loaded) -> None:
        data = message.data
        self.query_one(MigrationsPane).show(data.env, data.migrations, data.findings)
        self.query_one(BackupsPane).show(data.env, data.backups, data.now, self.services.config.backup.retention_days)
        self.refresh_window(data.env)
        self.query_one(AuditPane).show(data.audit)
        for pane, error in data.errors.items():
            target = "migrations" if pane == "lint" else pane
            self.query_one(f"#{target}-detail", Static).update(
                Text(f"cannot read {pane}: {error}", style=tone(self, "$error")))

    def refresh_window(self, env: str) -> None:
        """At the pane's own cadence (each load), and only while the backups pane shows: pgBackRest's
        info is a process run, not worth it for a hidden pane."""
        if not pitr_covers(self.services, env):
            self.query_one(BackupsPane).show_window(None)
        elif self.query_one("#panes", ContentSwitcher).current == "backups":
            self.read_window(env)

    @work(thread=True, exclusive=True, group="pitr-window", exit_on_error=False)
    def read_window(self, env: str) -> None:
        self.post_message(self.WindowRead(env, read_window(self.services, env)))

    def on_main_screen_window_read(self, message: WindowRead) -> None:
        if message.env == self.selected_env:  # else the operator moved on while it was read
            self.query_one(BackupsPane).show_window(message.report)

    @on(EnvironmentsPane.Selected)
    def env_selected(self) -> None:
        self.load_panes()

    @property
    def selected_env(self) -> str:
        return self.query_one(EnvironmentsPane).selected

    # --- panes -------------------------------------------------------------------------------

    def action_focus_envs(self) -> None:
        self.query_one("#env-table").focus()

    def on_click(self, event: events.Click) -> None:
        """A pane's title is its tab: a click on it focuses that pane, as its number key does."""
        title = event.widget
        if title is None or not title.has_class("title"):
            return
        pane = next((node.id for node in title.ancestors if node.id in PANES or node.id == "environments"), None)
        if pane == "environments":
            self.action_focus_envs()
        elif pane is not None:
            self.action_show(pane)

    def action_show(self, pane: str) -> None:
        self.remove_class("-checklist")
        self.query_one("#panes", ContentSwitcher).current = pane
        self.pace_drain(DRAIN_LOG_S if pane == "build" else DRAIN_S)
        if pane != "canary":
            self.query_one(f"#{pane}").query("DataTable, BuildLog, OptionList").focus()
        self.load_panes()

    # --- operations --------------------------------------------------------------------------

    def action_start(self, kind: str, params: dict[str, Any] | None = None) -> None:
        if self.running:
            self.notify(f"{self.running} is still running; wait, or cancel it with ctrl+x", severity="warning")
            return
        spec = all_actions().get(kind)
        if params is None and spec is not None and any(p.in_form for p in spec.params):
            # The action asks for parameters: a form first, pre-filled from what is highlighted.
            banner = "SANDBOX" if self.services.sandbox else None
            form = ParamsModal(f"{spec.title} on {self.selected_env}", spec.params, self.form_values(kind), banner,
                               self.services.config)
            self.app.push_screen(form, lambda values: None if values is None else self.action_start(kind, values))
            return
        env = self.selected_env
        try:
            operation = build_operation(self.services, kind, env, params)
        except (ConfigError, ValueError) as err:
            self.notify(str(err), severity="error", timeout=10, markup=False)
            return
        self.launch(operation)

    def form_values(self, kind: str) -> dict[str, str]:
        """Defaults for a form, from the highlighted row: the migration to resolve, the backup to pin,
        the migration to restore to just before (the highlighted one if the recovery window holds it,
        else the window's newest); in the sandbox, what its world offers (the canary's demo version)."""
        values = dict(suggested_params(self.services.sandbox).get(kind, {}))
        migration = self.query_one(MigrationsPane).highlighted
        if kind == "resolve" and migration is not None and migration.state == "failed":
            values["rolled_back"] = migration.name
        window = self.query_one(RecoveryWindow).report
        in_window = [m.name for m in window.migrations] if window and window.env == self.selected_env else []
        if kind in ("pitr-restore", "pitr-drill") and in_window:
            chosen = migration.name if migration is not None and migration.name in in_window else in_window[-1]
            values["target"] = f"before:{chosen}"
        backup = self.query_one(BackupsPane).highlighted
        if backup is not None and kind in ("backup-pin", "verify", "restore", "restore-drill"):
            values["backup_id"] = backup.id
        return values

    def launch(self, operation: Any, start_at: int = 0, state: dict[str, Any] | None = None) -> None:
        self.running = f"{operation.kind} on {operation.env}"
        self.pump = EventPump(wake=lambda: self.post_message(self.Asked()))
        self.drain_timer.resume()
        self.action_show(BY_KIND[operation.kind].pane)
        # A walkthrough is read as a checklist: it gets the whole column until a pane key is pressed.
        self.set_class(operation.kind in CHECKLISTS, "-checklist")
        if operation.kind == "canary":
            self.query_one(CanaryPane).show_title(f"{operation.title}")
        elif any(step.id == "monitor" for step in operation.steps):  # a deploy the post-deploy monitor watches
            self.query_one(CanaryPane).show_title(f"{operation.title}", post_deploy=True)
        self.query_one(BuildLogPane).start(operation.title, self.services.log_path(operation.id))
        self.run_operation(operation, start_at, state)

    @work(thread=True, exclusive=True, group="operation", exit_on_error=False)
    def run_operation(self, operation: Any, start_at: int, state: dict[str, Any] | None) -> None:
        pump = self.pump
        self.services.runner.run(operation, pump.put, pump.ask, pump.cancel, start_at, state)

    def pace_drain(self, seconds: float) -> None:
        """Drain every `seconds` from now on (a Textual timer's interval is fixed: a new one)."""
        if seconds != self.drain_every:
            running = self.running is not None
            self.drain_timer.stop()
            self.drain_every = seconds
            self.drain_timer = self.set_interval(seconds, self.drain, pause=not running)

    def on_main_screen_asked(self) -> None:
        self.drain()

    def drain(self) -> None:
        batch = self.pump.drain()
        if batch:
            self.dispatch(batch)

    def dispatch(self, batch: list[Event]) -> None:
        runbook, build_log = self.query_one(RunbookPanel), self.query_one(BuildLogPane)
        canary = self.query_one(CanaryPane)
        lines: list[str] = []
        for event in batch:
            if isinstance(event, LogLine):
                lines.append(f"[{event.step_id}] {event.text}")
                continue
            if lines:  # keep log order relative to step changes
                build_log.write_lines(lines)
                lines = []
            if isinstance(event, MetricSample):
                canary.add(event)
                continue
            if isinstance(event, VerdictLogged):
                canary.add_verdict(event.entry)
                continue
            if isinstance(event, CheckScheduled):
                canary.schedule(event)
                continue
            if isinstance(event, CanaryStepChanged):
                canary.step(event)
                continue
            runbook.apply(event)
            if isinstance(event, ConfirmationNeeded):
                self.ask(event)
            elif isinstance(event, Finished):
                self.running = None
                canary.finish(event.outcome.value)
                self.drain_timer.pause()
                build_log.finish(event.outcome.value)
                self.load_panes()
                # One line: a declined restore's detail is its whole plan, a dozen lines in a 33-wide toast.
                said = event.detail.strip().splitlines()[0] if event.detail.strip() else ""
                self.notify(f"{event.outcome.value}: {said}", markup=False,
                            severity="information" if event.outcome.value == "succeeded" else "error", timeout=8)
            elif isinstance(event, OperationStarted):
                runbook.scroll_home(animate=False)
        build_log.write_lines(lines)

    def ask(self, question: ConfirmationNeeded) -> None:
        banner = "SANDBOX" if self.services.sandbox else None
        self.app.push_screen(ConfirmModal(question.prompt, question.expected, banner, question.free_text,
                                          question.timeout_s, question.default_yes), self.pump.answer)

    def on_unmount(self) -> None:
        # The app is closing: a worker blocked on a confirmation or a sleep must stop at its next
        # safe point, or the process hangs on exit waiting for the thread.
        self.pump.cancel.set()

    def action_cancel_operation(self) -> None:
        if not self.running:
            self.notify("no operation is running")
            return

        def cancel(answer: str | None) -> None:
            if answer:
                self.pump.cancel.set()
                self.notify("cancelling at the next safe point…")

        banner = "SANDBOX" if self.services.sandbox else None
        self.app.push_screen(ConfirmModal(f"Cancel {self.running}? It can be resumed later from its step.",
                                          None, banner), cancel)

    @on(Worker.StateChanged)
    def worker_failed(self, event: Worker.StateChanged) -> None:
        """One place for worker failures: show them, never lose them."""
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            if event.worker.group == "operation":
                self.running = None
            # Not markup: an error's text may hold "[section]" (swallowed) or "[/..." (a MarkupError).
            self.notify(f"{event.worker.group}: {type(error).__name__}: {error}", severity="error", timeout=15,
                        markup=False)

    def action_dev_stack(self) -> None:
        from console.screens.dev_stack import DevStackScreen

        self.app.push_screen(DevStackScreen(self.services))

    def action_logs(self) -> None:
        """The selected environment's app logs and resource use, on a screen of their own."""
        from console.screens.logs import LogsScreen

        self.app.push_screen(LogsScreen(self.services, self.selected_env, self.seed))

    def action_export_trace(self) -> None:
        """The latest canary's decision trace, as Markdown and JSON, beside the journal."""
        from services.canary import trace  # only when asked for

        record = trace.latest(self.services.journal)
        if record is None:
            self.notify("no canary has run yet: nothing to export", severity="warning")
            return
        markdown, data = trace.export(record, self.services.journal.path.parent / "traces")
        self.notify(f"decision trace of {record.id}:\n{markdown}\n{data}", timeout=15, markup=False)

    def action_config_diff(self) -> None:
        """The highlighted environment's settings beside another's (a read of the loaded config)."""
        from console.screens.config_diff import ConfigDiffScreen

        self.app.push_screen(ConfigDiffScreen(self.services.config, self.selected_env))

    def action_retry(self) -> None:
        """Run the last failed, declined or cancelled operation again from the step it stopped at."""
        if self.running:
            self.notify(f"{self.running} is still running", severity="warning")
            return
        last = next(iter(self.services.journal.recent(1)), None)
        if last is None or last.status not in RETRYABLE:
            self.notify("nothing to retry: the last operation did not fail")
            return
        operation = build_operation(self.services, last.kind, last.env, last.params)
        operation.id = last.id
        self.launch(operation, last.resume_index, last.state)

    # --- resume ------------------------------------------------------------------------------

    def offer_resume(self) -> None:
        interrupted = self.services.journal.interrupted()
        if interrupted:
            self.app.push_screen(ResumeModal(interrupted[-1]), self._resume_answer(interrupted[-1]))

    def _resume_answer(self, record: OperationRecord) -> Any:
        def answer(choice: str | None) -> None:
            if choice == "resume":
                operation = build_operation(self.services, record.kind, record.env, record.params)
                operation.id = record.id
                self.launch(operation, record.resume_index, record.state)
            elif choice == "abandon":
                self.services.journal.abandon(record.id, "abandoned from the console at start-up")
                self.services.audit.append(record.env, "abandon", {"op_id": record.id}, "abandoned")
                self.notify(f"abandoned {record.title}", markup=False)

        return answer

