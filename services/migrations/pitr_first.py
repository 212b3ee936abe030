"""`[migrations] backup = "pitr"`: a migration deploy backed by point-in-time recovery instead of a dump.

Before anything is linted, locked or applied, the deploy checks that WAL archiving works
(services/backups/pitr.py `archiving_works`: `pgbackrest check` and pg_stat_archiver) and refuses
while it does not: a deploy that believed it could be undone to any second, with WAL missing,
could not be. Then it takes a pgBackRest backup of type DEPLOY_BACKUP_TYPE.

Why incremental: the undo is a restore to the instant before the deploy, which pgBackRest reaches from
any earlier backup by replaying the archived WAL. The backup taken here only shortens that replay
(the RTO) and proves the repository takes writes right now; an incremental copies only the files
changed since the last backup, so it costs the deploy the least. (With no backup yet, pgBackRest
makes it a full one by itself.)

A failed deploy is NOT restored automatically, with a dump or with PITR: a restore replaces every
write since, and only the operator can weigh that. With PITR, the failure names the recovery point
(the server's time read just before the first migration ran) and the `pitr restore` to run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.backups.pitr import archiving_works, take_physical_backup, target_time
from services.core.operations import StepContext

if TYPE_CHECKING:
    from services.core.container import Services

DEPLOY_BACKUP_TYPE = "incr"


def check_archiving(services: Services, env: str, ctx: StepContext, anything_pending: bool) -> str:
    """StepFailed, with pgBackRest's reason and what to do, while archiving is broken."""
    if not anything_pending:
        return "nothing pending: no backup will be taken, archiving not checked"
    archiving_works(services, env, ctx)
    return "archiving works"


def take_deploy_backup(services: Services, env: str, ctx: StepContext) -> str:
    # pgBackRest waits for the backup's own WAL to be archived (archive-check), so archiving that broke
    # since the first step fails this backup too, still before anything is applied.
    ctx.state["pitr_backup"] = take_physical_backup(services, env, DEPLOY_BACKUP_TYPE, ctx)
    return f"pgBackRest {DEPLOY_BACKUP_TYPE} backup {ctx.state['pitr_backup']}"


def mark_recovery_point(services: Services, env: str, ctx: StepContext) -> None:
    """The server's time now, before the first migration runs: the point an undo restores to. Kept
    from a first attempt: a retry after a partial deploy must still undo the whole of it."""
    if "recovery_point" not in ctx.state:
        ctx.state["recovery_point"] = services.pitr(env).live().archiver().server_now
        ctx.checkpoint()
        ctx.log(f"recovery point: {target_time(ctx.state['recovery_point'])} UTC (before this deploy)")


def undo_options(env: str, state: dict[str, object]) -> tuple[str, ...]:
    """What a failed PITR-backed deploy offers: never an automatic restore, the exact one to run."""
    point = state.get("recovery_point")
    if not isinstance(point, int | float):
        return (f"nothing was applied before the failure: no restore needed (pgBackRest backup"
                f" {state.get('pitr_backup', '?')} was taken)",)
    target = target_time(point)
    return (f"undo: point-in-time restore to {target} UTC, just before this deploy (base: pgBackRest backup"
            f" {state.get('pitr_backup', '?')}); every write since is lost: release-console pitr restore"
            f" --env {env} --target '{target}'",)
