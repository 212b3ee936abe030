"""The point-in-time restore walkthrough: the live cluster back to a second, or to just before a migration.

pgBackRest restores; the console decides the target, refuses one outside the recovery window before
anything stops, and walks the outage: stop the app, stop PostgreSQL, `pgbackrest restore --delta
--type=time`, start PostgreSQL, wait for recovery to end, validate, start the app, health check, and
a report of the RTO and what was lost (the migrations undone, by name, and the rows per table).

A target is `YYYY-MM-DD HH:MM:SS` (UTC) or `before:MIGRATION`: that migration's started_at, as
_prisma_migrations recorded it, less [backup.pitr] margin_s.

Everything a later step or a resume needs is in ctx.state, which the runner journals after each
step. Each step can run again: stopping or starting twice is said and harmless, a restore again with
--delta rewrites only what differs.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from services.backups.pitr import TARGET_FORMAT, target_time, utc
from services.backups.recovery import (
    HEALTH_INTERVAL_S,
    HEALTH_TRIES,
    counts_text,
    number,
    retake_lock,
    wait_healthy,
)
from services.core.actions import Param, action, confirm_step
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.pitr_config import PitrConfig
from services.core.pitr_port import PitrEngine

if TYPE_CHECKING:
    from services.core.container import Services

_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_MIGRATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
POLL_S = 1.0


def parse_target(text: str) -> tuple[str, str | float]:
    """("time", epoch seconds) or ("before", migration name); ValueError with the accepted shapes."""
    text = text.strip()
    if text.startswith("before:"):
        name = text.removeprefix("before:").strip()
        if not _MIGRATION.fullmatch(name):
            raise ValueError(f"{name!r} is not a migration name (letters, digits, '_', '.', '-')")
        return "before", name
    if _TIME.fullmatch(text):
        try:
            return "time", float(calendar.timegm(time.strptime(text, TARGET_FORMAT)))
        except ValueError:
            pass
    raise ValueError(f"target {text!r}: a UTC time YYYY-MM-DD HH:MM:SS, or before:MIGRATION_NAME")


def pgbackrest_time(epoch: float) -> str:
    """The target as pgBackRest's --target gets it: UTC to the microsecond, offset written out."""
    whole = int(epoch // 1)
    return target_time(whole) + f".{round((epoch - whole) * 1e6):06d}+00"


@action("pitr-restore", "Point-in-time restore: to a UTC time, or to just before a migration", destructive=True,
        params=(Param("target", "a UTC time YYYY-MM-DD HH:MM:SS, or before:MIGRATION_NAME", required=True,
                      check=parse_target, example="2026-12-06 14:30:00"),
                HEALTH_TRIES, HEALTH_INTERVAL_S))
def pitr_restore(services: Services, env: str, params: dict[str, Any]) -> Operation:
    return PitrRestore(services, env, params).operation()


class PitrRestore:
    def __init__(self, services: Services, env: str, params: dict[str, Any]) -> None:
        if not params.get("target"):
            raise ValueError("pitr-restore needs target: a UTC time YYYY-MM-DD HH:MM:SS, or before:MIGRATION_NAME")
        self.services, self.env, self.params = services, env, params
        self.kind, self.wanted = parse_target(str(params["target"]))
        self.tries = number(HEALTH_TRIES, params, services.config, int)
        self.interval_s = number(HEALTH_INTERVAL_S, params, services.config, float)
        environment = services.config.environment(env)
        # An app the console can stop: a deploy target, or the service commands of a host without one.
        self.has_app = environment.target.kind != "none" or environment.services is not None

    @property
    def engine(self) -> PitrEngine:
        """pgBackRest for env: one without [backup.pitr] fails the first step, saying so."""
        return self.services.pitr(self.env)

    @property
    def settings(self) -> PitrConfig:
        settings = self.services.config.backup.pitr
        assert settings is not None  # self.engine answered first
        return settings

    def operation(self) -> Operation:
        steps = [
            self._step("target", "Resolve the target inside the recovery window", self.resolve),
            confirm_step(self.services, self.env, self._prompt, "Stop the app and PostgreSQL, restore to the target"),
            self._step("stop-app", "Stop the app" if self.has_app else "Stop the app: none configured",
                       self.stop_app),
            self._step("stop-db", "Stop PostgreSQL", self.stop_db),
            self._step("restore", "pgbackrest restore to the target", self.restore),
            self._step("start-db", "Start PostgreSQL", self.start_db),
            self._step("recovery", "Wait for recovery to end", self.recovery),
            self._step("validate", "Validate: migration head and row counts", self.validate),
            self._step("start-app", "Start the app" if self.has_app else "Start the app: none configured",
                       self.start_app),
            self._step("health", "Health check", self.health),
            self._step("report", "Report the RTO and what was lost", self.report),
        ]
        return Operation("pitr-restore", self.env, f"Point-in-time restore of {self.env}", steps, self.params)

    def _step(self, step_id: str, title: str, run: Callable[[StepContext], str]) -> Step:
        """Each failure says where things stand: what is stopped, what the cluster holds."""

        def guarded(ctx: StepContext) -> str:
            try:
                return run(ctx)
            except StepFailed as err:
                raise StepFailed(f"{err}. {self._standing(ctx.state)}", err.next_options) from None

        return Step(step_id, title, guarded)

    # --- the steps ----------------------------------------------------------------------------

    def resolve(self, ctx: StepContext) -> str:
        live = self.engine.live()
        applied = live.migrations()
        if self.kind == "before":
            found = [m for m in applied if m.name == self.wanted]
            if not found:
                recent = ", ".join(m.name for m in applied[-3:]) or "none"
                raise StepFailed(f"migration {self.wanted} is not applied in {self.env} (the newest: {recent})",
                                 ("name an applied migration: `pitr check` lists those in the window",))
            target = found[0].started_at - self.settings.margin_s
            ctx.log(f"migration {self.wanted} started at {utc(found[0].started_at)}; the target is"
                    f" {self.settings.margin_s:g}s before: {utc(target)}")
        else:
            target = float(self.wanted)
        # The window's end: a commit now, then `pgbackrest check` switches the WAL and waits for it to be
        # archived. Any second up to that commit can then be reached.
        sealed = live.mark_now()
        self.engine.check(ctx.log)
        info = self.engine.info()
        if not info.backups:
            raise StepFailed(f"stanza {info.stanza} has no backup: nothing to restore from", ("`pitr backup`",))
        oldest = info.backups[0]
        window = f"the recovery window is {utc(oldest.stopped)} .. {utc(sealed)}"
        if target < oldest.stopped:
            raise StepFailed(f"{utc(target)} is before the oldest backup's end ({oldest.label}, {utc(oldest.stopped)}):"
                             f" nothing older can be restored; {window}", ("choose a target inside the window",))
        if target > sealed:
            raise StepFailed(f"{utc(target)} is after the last archived WAL ({utc(sealed)}); {window}",
                             ("choose a target inside the window",))
        undone = [m.name for m in applied if m.started_at > target]
        counts = live.row_counts(self.services.config.migrations.integrity_tables)
        ctx.state.update(target=target, target_time=pgbackrest_time(target), undone=undone, counts_before=counts,
                         head_before=applied[-1].name if applied else None)
        ctx.log(window)
        ctx.log(f"migrations applied after the target, undone by the restore: {', '.join(undone) or 'none'}")
        ctx.log(f"rows now: {counts_text(counts)}; every write after the target is lost")
        return f"{utc(target)}; undoes {len(undone)} migration{'' if len(undone) == 1 else 's'}"

    def _prompt(self, ctx: StepContext) -> str:
        undone, when = ctx.state["undone"], utc(ctx.state["target"])
        also = f", and migration{'s' if len(undone) > 1 else ''} {', '.join(undone)} undone" if undone else ""
        return (f"Every write to {self.env}'s cluster after {when} will be LOST{also}. Stop the app and PostgreSQL"
                " and restore the cluster to that time")

    def stop_app(self, ctx: StepContext) -> str:
        ctx.state.setdefault("started_at", self.services.clock.now())  # the RTO runs from the confirmed start
        if not self.has_app:
            ctx.log(f"{self.env} has no deploy target and no [environments.{self.env}.services] commands: the console"
                    " cannot stop an app. If one writes to this database, stop it by hand now.", "warning")
            return "skipped: no app configured"
        self.services.target(self.env).stop(ctx.log)
        ctx.state["app_stopped"] = True
        return "stopped"

    def stop_db(self, ctx: StepContext) -> str:
        self.engine.stop_database(ctx.log)
        ctx.state["db_stopped"] = True
        return "stopped"

    def restore(self, ctx: StepContext) -> str:
        ctx.state["restore_began"] = time.time()  # a lock row older than this can only be the restored one's
        self.engine.restore(ctx.state["target_time"], ctx.log)
        ctx.state["restored"] = True
        return f"restored to {ctx.state['target_time']}"

    def start_db(self, ctx: StepContext) -> str:
        self.engine.start_database(ctx.log)
        return "started"

    def recovery(self, ctx: StepContext) -> str:
        live, began = self.engine.live(), time.monotonic()
        deadline = began + self.services.real_seconds(self.settings.recovery_timeout_s)
        last = ""
        while True:
            try:
                if not live.in_recovery():
                    break
                said = "replaying WAL"
            except StepFailed as err:  # still starting up: it does not answer yet
                said = str(err)
            if time.monotonic() >= deadline:
                raise StepFailed(f"recovery did not end within {self.settings.recovery_timeout_s:g}s ({said})",
                                 ("look at PostgreSQL's log", "retry this step to wait again",
                                  "raise [backup.pitr] recovery_timeout_s"))
            if said != last:  # a line when it changes, not one a poll
                ctx.log(f"in recovery: {said}")
                last = said
            ctx.sleep(self.services.real_seconds(POLL_S))
        ctx.state["recovered"] = True
        retake_lock(self.services, self.env, ctx, "pitr-restore")
        return f"recovery ended, promoted after {time.monotonic() - began:.1f}s"

    def validate(self, ctx: StepContext) -> str:
        live = self.engine.live()  # connections of its own: a kept one would be from before the restart
        applied = [m.name for m in live.migrations()]
        still = [name for name in ctx.state["undone"] if name in applied]
        if still:
            raise StepFailed(f"migrations after the target are still applied: {', '.join(still)}",
                             ("look at PostgreSQL's log: did recovery stop at the target?",))
        counts = live.row_counts(self.services.config.migrations.integrity_tables)
        head = applied[-1] if applied else None
        ctx.state.update(counts_after=counts, head_after=head)
        ctx.log(f"migration head: {head or 'none'}; rows: {counts_text(counts)}")
        return f"head {head or 'none'}; {len(counts)} table{'' if len(counts) == 1 else 's'} counted"

    def start_app(self, ctx: StepContext) -> str:
        if not ctx.state.get("app_stopped"):
            return "skipped: no app configured"
        self.services.target(self.env).start(ctx.log)
        ctx.state["app_started"] = True
        return "started"

    def health(self, ctx: StepContext) -> str:
        if not ctx.state.get("app_started"):
            ctx.state["recovered_at"] = self.services.clock.now()
            return "skipped: the console started no app"
        return wait_healthy(self.services, self.env, self.services.config.health_url(self.env), self.tries,
                            self.interval_s, ctx)

    def report(self, ctx: StepContext) -> str:
        state = ctx.state
        rto = max(0.0, state["recovered_at"] - state["started_at"])
        undone: list[str] = state["undone"]
        before, after = state["counts_before"], state["counts_after"]
        lost = {table: before[table] - after.get(table, 0) for table in before}
        ctx.log(f"restored to {utc(state['target'])}; RTO {rto:.1f}s (from the confirmed start to"
                f" {'healthy' if state.get('app_started') else 'validated'})")
        ctx.log(f"migrations undone: {', '.join(undone) or 'none'}")
        for table, count in lost.items():
            ctx.log(f"{table}: {before[table]} rows before the restore, {after.get(table, 0)} after: {count} lost")
        state["lost_rows"] = lost
        rows = ", ".join(f"{table} {count}" for table, count in lost.items() if count) or "none"
        return f"RTO {rto:.1f}s; migrations undone: {', '.join(undone) or 'none'}; rows lost: {rows}"

    def _standing(self, state: dict[str, Any]) -> str:
        if state.get("recovered"):
            return f"Now: the cluster is restored to {state['target_time']} and running"
        if state.get("restored"):
            return f"Now: the cluster is restored to {state['target_time']}; PostgreSQL may not be running"
        if state.get("db_stopped"):
            return "Now: PostgreSQL is STOPPED; its data is unchanged"
        if state.get("app_stopped"):
            return "Now: the app is STOPPED; the database is unchanged"
        return "Now: nothing was stopped or changed"

