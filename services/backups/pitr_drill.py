"""The point-in-time drill: the same restore as the walkthrough, into a scratch copy of the cluster.

It proves the backups and the archived WAL restore to the target, and times it, while the live
cluster runs on: pgBackRest restores into [backup.pitr] scratch_dir, the copy starts on a free local
port with archiving off, is read (migration head, the integrity tables' rows, its system identifier),
and is stopped and removed whatever happened. The report compares the copy with the live cluster now
(what a restore to the target would lose) and checks that the live cluster was not restarted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from services.backups.pitr import utc
from services.backups.pitr_target import TARGET, parse_target, read_restored, recovery_target, resolve, wait_recovered
from services.backups.recovery import counts_text
from services.core.actions import action, confirm_step
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.pitr_port import Identity
from services.core.units import byte_size

if TYPE_CHECKING:
    from services.core.container import Services


@action("pitr-drill", "PITR drill: restore to a target into a scratch copy; the live cluster runs on",
        changes_env=False, params=(TARGET,))
def pitr_drill(services: Services, env: str, params: dict[str, Any]) -> Operation:
    return PitrDrill(services, env, params).operation()


class PitrDrill:
    def __init__(self, services: Services, env: str, params: dict[str, Any]) -> None:
        parse_target(str(params.get("target") or ""))  # refused before any step runs
        self.services, self.env, self.params = services, env, params

    def operation(self) -> Operation:
        steps = [
            Step("target", "Resolve the target inside the recovery window", self.resolve),
            confirm_step(self.services, self.env, self._prompt, "Restore into a scratch copy"),
            Step("drill", "Restore into a scratch copy, start it, read it, remove it", self.drill),
            Step("report", "Report the time taken and what a restore would lose", self.report),
        ]
        return Operation("pitr-drill", self.env, f"Point-in-time drill of {self.env}", steps, self.params,
                         takes_lock=False)

    def resolve(self, ctx: StepContext) -> str:
        detail = resolve(self.services, self.env, str(self.params["target"]), ctx)
        ctx.state["live_before"] = _pair(self.services.pitr(self.env).live().identity())
        return detail

    def _prompt(self, ctx: StepContext) -> str:
        settings = self.services.config.backup.pitr
        where = settings.scratch_dir if settings and settings.scratch_dir else "[backup.pitr] scratch_dir (unset)"
        return (f"Restore {self.env}'s cluster to {utc(ctx.state['target'])} into a scratch copy in {where}"
                f" (about {byte_size(ctx.state['restore_size'])}), start it on a free local port, read it, then"
                " remove it. The live cluster is not stopped or written")

    def drill(self, ctx: StepContext) -> str:
        began = time.monotonic()
        engine = self.services.pitr(self.env)
        name = f"drill-{ctx.op_id.lower()}"
        with engine.scratch(recovery_target(ctx.state), name, ctx.state["restore_size"], ctx.log) as copy:
            started = time.monotonic()
            recovered = wait_recovered(self.services, copy, ctx)
            head, counts = read_restored(self.services, copy, ctx)
            system_id = copy.identity().system_id
        ctx.state.update(copy_head=head, copy_counts=counts, copy_system_id=system_id,
                         restore_s=started - began, recovery_s=recovered, drill_s=time.monotonic() - began)
        return (f"restored and started in {started - began:.1f}s, recovered in {recovered:.1f}s; head"
                f" {head or 'none'}; the copy is removed")

    def report(self, ctx: StepContext) -> str:
        state = ctx.state
        live = self.services.pitr(self.env).live()
        before, now = Identity(*state["live_before"]), live.identity()
        if now != before:
            raise StepFailed(f"the live cluster changed during the drill: {_said(before)} before, {_said(now)} now",
                             ("look at PostgreSQL's log: a restart during a drill is not the drill's",))
        if None not in (state["copy_system_id"], now.system_id) and state["copy_system_id"] != now.system_id:
            raise StepFailed(f"the copy's system identifier {state['copy_system_id']} is not the live cluster's"
                             f" {now.system_id}: the stanza holds another cluster's backups",
                             ("check [backup.pitr] stanza and config",))
        counts_now = live.row_counts(self.services.config.migrations.integrity_tables)
        copy: dict[str, int] = state["copy_counts"]
        lost = {table: counts_now[table] - copy.get(table, 0) for table in counts_now}
        ctx.log(f"the live cluster is untouched: {_said(now)}, the same as before the drill")
        ctx.log(f"the copy at {utc(state['target'])}: head {state['copy_head'] or 'none'}; rows:"
                f" {counts_text(copy)}")
        for table, count in lost.items():
            ctx.log(f"{table}: {counts_now[table]} rows live, {copy.get(table, 0)} at the target:"
                    f" a restore to it would lose {count}")
        ctx.log(f"time: restore and start {state['restore_s']:.1f}s, recovery {state['recovery_s']:.1f}s, the"
                f" whole drill {state['drill_s']:.1f}s; a restore of the live cluster adds the app's stop and start")
        undone = state["undone"]
        rows = ", ".join(f"{table} {count}" for table, count in lost.items() if count) or "none"
        state["lost_rows"] = lost
        return (f"restorable to {utc(state['target'])} in {state['restore_s'] + state['recovery_s']:.1f}s;"
                f" a restore would undo {', '.join(undone) or 'no migration'} and lose rows: {rows}")


def _pair(identity: Identity) -> list[Any]:
    return [identity.system_id, identity.started]  # as the journal keeps it (JSON)


def _said(identity: Identity) -> str:
    return f"system {identity.system_id or 'unreadable'}, running since {utc(identity.started)}"
