"""The backup actions: take a backup, and prune the ones past retention."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from services.backups.catalog import DAY, prune_candidates
from services.backups.create import take_backup
from services.catalog import action, confirm_step
from services.operations import Operation, Step, StepContext

if TYPE_CHECKING:
    from services.factory import Services


@action("backup", "Take a backup (database + app files)", changes_env=False)
def backup(services: Services, env: str, params: dict[str, Any]) -> Operation:
    def run(ctx: StepContext) -> str:
        ctx.state["backup_id"] = take_backup(services, env, ctx)
        return f"backup {ctx.state['backup_id']} complete"

    return Operation("backup", env, f"Back up {env}", [Step("backup", "Dump database and archive files", run)],
                     params, takes_lock=False)


@action("prune", "Delete backups past retention", destructive=True)
def prune(services: Services, env: str, params: dict[str, Any]) -> Operation:
    def plan(ctx: StepContext) -> str:
        now = services.world.clock.now() if services.world else time.time()
        doomed = prune_candidates(services, env, now)
        for entry in doomed:
            ctx.log(f"would delete {entry.env}/{entry.id} ({(now - entry.created) / DAY:.0f} days old)")
        ctx.state["doomed"] = [e.id for e in doomed]
        return f"{len(doomed)} past {services.config.backup.retention_days} days"

    def delete(ctx: StepContext) -> str:
        for backup_id in ctx.state["doomed"]:
            for obj in services.store.list(f"{env}/{backup_id}/"):
                services.store.delete(obj.key)
            ctx.log(f"deleted {env}/{backup_id}")
        return f"{len(ctx.state['doomed'])} deleted"

    return Operation("prune", env, f"Prune backups of {env}", [
        Step("plan", "Dry run: list backups past retention", plan),
        confirm_step(services, env, "Delete the listed backups"),
        Step("delete", "Delete", delete),
    ], params, takes_lock=False)
