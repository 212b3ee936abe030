"""The point-in-time restore walkthrough: the live cluster back to a second, to a backup's end, or to
just before a migration.

pgBackRest restores; the console decides the target (services/backups/pitr_target.py), refuses one
outside the recovery window before anything stops, and walks the outage: stop the app, stop
PostgreSQL, `pgbackrest restore --delta`, start PostgreSQL, wait for recovery to end, validate, start
the app, health check, and a report of the RTO and what was lost (the migrations undone, by name,
and the rows per table).

Everything a later step or a resume needs is in ctx.state, which the runner journals after each
step. Each step can run again: stopping or starting twice is said and harmless, a restore again with
--delta rewrites only what differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from services.backups.pitr import utc
from services.backups.pitr_target import (
    SHAPES,
    TARGET,
    parse_target,
    read_restored,
    recovery_target,
    resolve,
    wait_recovered,
)
from services.backups.recovery import HEALTH_INTERVAL_S, HEALTH_TRIES, number, retake_lock, wait_healthy
from services.core.actions import action, confirm_step
from services.core.audit import SharedUnavailable
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.pitr_port import PitrEngine

if TYPE_CHECKING:
    from services.core.container import Services


@action("pitr-restore", "Point-in-time restore: to a UTC time, a backup, or just before a migration",
        destructive=True, params=(TARGET, HEALTH_TRIES, HEALTH_INTERVAL_S))
def pitr_restore(services: Services, env: str, params: dict[str, Any]) -> Operation:
    return PitrRestore(services, env, params).operation()


class PitrRestore:
    def __init__(self, services: Services, env: str, params: dict[str, Any]) -> None:
        if not params.get("target"):
            raise ValueError(f"pitr-restore needs target: {SHAPES}")
        self.services, self.env, self.params = services, env, params
        parse_target(str(params["target"]))  # refused before any step runs
        self.tries = number(HEALTH_TRIES, params, services.config, int)
        self.interval_s = number(HEALTH_INTERVAL_S, params, services.config, float)
        environment = services.config.environment(env)
        # An app the console can stop: a deploy target, or the service commands of a host without one.
        self.has_app = environment.target.kind != "none" or environment.services is not None

    @property
    def engine(self) -> PitrEngine:
        """pgBackRest for env: one without [backup.pitr] fails the first step, saying so."""
        return self.services.pitr(self.env)

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
        return resolve(self.services, self.env, str(self.params["target"]), ctx)

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
        target = recovery_target(ctx.state)
        self.engine.restore(target, ctx.log)
        ctx.state["restored"] = True
        return f"restored to {target.describe()}"

    def start_db(self, ctx: StepContext) -> str:
        self.engine.start_database(ctx.log)
        return "started"

    def recovery(self, ctx: StepContext) -> str:
        took = wait_recovered(self.services, self.engine.live(), ctx)
        ctx.state["recovered"] = True
        retake_lock(self.services, self.env, ctx, "pitr-restore")
        return f"recovery ended, promoted after {took:.1f}s"

    def validate(self, ctx: StepContext) -> str:
        # A cluster of its own: connections of its own, a kept one would be from before the restart.
        head, counts = read_restored(self.services, self.engine.live(), ctx)
        ctx.state.update(counts_after=counts, head_after=head)
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
        self._resend_audit(ctx)
        rows = ", ".join(f"{table} {count}" for table, count in lost.items() if count) or "none"
        return f"RTO {rto:.1f}s; migrations undone: {', '.join(undone) or 'none'}; rows lost: {rows}"

    def _resend_audit(self, ctx: StepContext) -> None:
        """The restore rolled the shared audit trail back with the database: this bastion's records
        after the target go to it again. Other bastions' records come back only from their logs."""
        audit = self.services.audit
        if audit.shared is None or audit.shared.where(self.env) is None:
            return
        again = f"release-console audit resend --env {self.env}"
        try:
            sent = audit.resend(self.env)
        except SharedUnavailable as err:
            ctx.log(f"the shared audit trail was not sent what the restore rolled back: {err}; run `{again}`",
                    "warning")
            return
        ctx.log(f"the shared audit trail: {sent} record(s) of this bastion's log that the restore rolled back were"
                f" sent again; on any other bastion that acted on {self.env} after the target, run `{again}`")

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

