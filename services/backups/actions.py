"""The backup actions: take a backup (then apply retention), and prune the ones past retention."""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from services.backups.catalog import MANIFEST, PIN, BackupEntry, list_backups, retention
from services.backups.create import take_backup
from services.backups.loss import ago
from services.backups.trust import check_backup_id
from services.core.actions import Param, action, confirm_now, confirm_step
from services.core.operations import Cancelled, Declined, Operation, Step, StepContext, StepFailed

if TYPE_CHECKING:
    from services.core.container import Services
    from services.core.ports import ObjectStore


@action("backup", "Take a backup (database + app files)", changes_env=False)
def backup(services: Services, env: str, params: dict[str, Any]) -> Operation:
    def run(ctx: StepContext) -> str:
        for store in services.stores:  # what a killed backup left half-written goes first
            for leftover in getattr(store, "clean_partials", lambda: [])():
                ctx.log(f"removed {leftover}, left half-written by an interrupted backup")
        ctx.state["backup_id"] = take_backup(services, env, ctx)
        return f"backup {ctx.state['backup_id']} complete"

    return Operation("backup", env, f"Back up {env}", [
        Step("backup", "Dump database and archive files", run),
        retention_step(services, env),
    ], params, takes_lock=False)


def retention_step(services: Services, env: str) -> Step:
    """After a backup, as the strategy does: the dry-run list logged, then the backups past retention
    deleted from the store the backup went to ([backup] prune_after, on by default).

    Deleting backups is destructive: when the dry run lists some, it asks first, as `prune` does
    (production: the name typed; the CLI's --confirm-env / --yes answer it for cron). Nothing to
    delete asks nothing. Declined, the backup is complete and kept, nothing is deleted, and the
    operation ends declined (exit 3), as any declined action does.

    A retention that fails keeps the backup and fails this step, saying both: the operation ends
    failed (exit 1), because a backup job's exit status is what cron and CI watch, and a retention
    failing unseen fills the disk or the bucket until the backups themselves fail. Retrying the
    step runs only the retention again.
    """
    policy = services.config.backup
    if not policy.prune_after:
        return Step("retention", "Retention after the backup: off ([backup] prune_after = false)",
                    lambda ctx: "skipped: [backup] prune_after = false; `backup prune` deletes by hand")

    def run(ctx: StepContext) -> str:
        backup_id, store = ctx.state["backup_id"], services.store.name
        try:
            doomed = plan_deletions(services, env, ctx, stores={store})
            if doomed:
                _confirm_retention(services, env, ctx, backup_id, doomed)
            deleted = delete_planned(services, env, ctx)
        except Declined as declined:
            ctx.log(f"nothing deleted: backup {backup_id} is complete and kept; `backup prune --env {env}`"
                    " deletes the old ones later", "warning")
            raise Declined(f"backup {backup_id} is complete and kept; nothing deleted: {declined}") from None
        except Cancelled:
            raise
        except Exception as err:  # noqa: BLE001 - any failure keeps the backup and is said as such
            ctx.log(f"WARNING: retention failed, backup {backup_id} is complete and kept: {err}", "warning")
            raise StepFailed(f"backup {backup_id} is complete and kept, but retention failed: {err}",
                             ("retry this step: only the retention runs again", f"backup prune --env {env}",
                              "or set [backup] prune_after = false")) from None
        return f"{deleted} of {len(doomed)} past {policy.retention_days} days deleted from {store}" if doomed \
            else f"none past {policy.retention_days} days in {store}"

    return Step("retention", f"Retention: delete backups past {policy.retention_days} days", run)


def _confirm_retention(services: Services, env: str, ctx: StepContext, backup_id: str,
                       doomed: list[BackupEntry]) -> None:
    """Deleting backups is destructive: asked as `prune` asks (production: the name typed), only when
    the dry run lists some; declined, the new backup stays and nothing is deleted."""
    count = f"{len(doomed)} backup{'s' if len(doomed) > 1 else ''}"
    confirm_now(services, env, ctx, f"Delete {count} past {services.config.backup.retention_days} days"
                f" from {doomed[0].store}",
                f"\nBackup {backup_id} is complete and kept whatever the answer. To delete:"
                f" {', '.join(f'{env}/{entry.id}' for entry in doomed)}")


@action("prune", "Delete backups past retention", destructive=True)
def prune(services: Services, env: str, params: dict[str, Any]) -> Operation:
    def plan(ctx: StepContext) -> str:
        doomed = plan_deletions(services, env, ctx)
        kept = f"; the newest {services.config.backup.keep_newest} and pinned ones are kept"
        return f"{len(doomed)} past {services.config.backup.retention_days} days{kept}"

    def delete(ctx: StepContext) -> str:
        return f"{delete_planned(services, env, ctx)} deleted"

    return Operation("prune", env, f"Prune backups of {env}", [
        Step("plan", "Dry run: list backups past retention", plan),
        confirm_step(services, env, "Delete the listed backups"),
        Step("delete", "Delete", delete),
    ], params, takes_lock=False)


def plan_deletions(services: Services, env: str, ctx: StepContext, stores: Collection[str] | None = None,
                   ) -> list[BackupEntry]:
    """Retention's dry run, logged: what it would delete, and what it keeps though old enough (pinned,
    or one of the newest); the rest is counted. Only in `stores` when given. The list is kept in
    ctx.state["doomed"] for delete_planned (and a resume)."""
    verdicts = [v for v in retention(services, env) if stores is None or v.entry.store in stores]
    for verdict in verdicts:
        where = f"{env}/{verdict.entry.id} in {verdict.entry.store} ({verdict.age_days:.0f} days old)"
        if verdict.delete:
            ctx.log(f"would delete {where}")
        elif verdict.kind != "recent":
            ctx.log(f"keep {where}: {verdict.why}")
    if recent := sum(v.kind == "recent" for v in verdicts):
        ctx.log(f"keep {recent} more within {services.config.backup.retention_days} days")
    doomed = [v.entry for v in verdicts if v.delete]
    ctx.state["doomed"] = [[e.store, e.id] for e in doomed]
    return doomed


def delete_planned(services: Services, env: str, ctx: StepContext) -> int:
    """Delete what plan_deletions listed, each in its store, and audit it; a backup that cannot be
    deleted does not stop the others, and fails the step at the end, naming it."""
    stores = {store.name: store for store in services.stores}
    deleted, failed = [], []
    for store_name, backup_id in ctx.state["doomed"]:
        try:
            if store_name not in stores:  # a resume after the config changed
                raise StepFailed("that store is no longer configured")
            _delete_backup(stores[store_name], env, backup_id)
        except Exception as err:  # noqa: BLE001 - said below, after the others are tried
            problem = f"{env}/{backup_id} in {store_name}: {err}"
            ctx.log(f"could not delete {problem}", "warning")
            failed.append(problem)
            continue
        ctx.log(f"deleted {env}/{backup_id} from {store_name}")
        deleted.append(f"{store_name}:{backup_id}")
    if deleted:
        services.audit.append(env, "backup-delete", {"op_id": ctx.op_id, "backups": deleted},
                              f"deleted {len(deleted)} past retention")
    if failed:
        raise StepFailed(f"{len(failed)} of {len(failed) + len(deleted)} backups past retention not deleted:"
                         f" {'; '.join(failed)}", ("retry this step", "check the store's permissions"))
    return len(deleted)


def _delete_backup(store: ObjectStore, env: str, backup_id: str) -> None:
    # The manifest goes first: a backup half deleted must never still look complete.
    keys = sorted((o.key for o in store.list(f"{env}/{backup_id}/")), key=lambda k: not k.endswith(MANIFEST))
    for key in keys:
        store.delete(key)


@action("backup-pin", "Pin a backup to a release, so retention keeps it", changes_env=False, params=(
    Param("backup_id", "the backup to pin", required=True, check=check_backup_id, example="20260101T090000Z"),
    Param("release", "the release it belongs to; empty unpins it", example="v1.5.0"),
))
def pin(services: Services, env: str, params: dict[str, Any]) -> Operation:
    backup_id, release = str(params.get("backup_id", "")), str(params.get("release", ""))

    def run(ctx: StepContext) -> str:
        check_backup_id(backup_id)
        holders = [s for s in services.stores if s.list(f"{env}/{backup_id}/")]
        if not holders:
            raise StepFailed(f"no backup {backup_id} of {env} in any store", ("backup list --env " + env,))
        if not release:
            pinned = [b for b in list_backups(services, env) if b.id == backup_id and b.pinned]
            if not pinned:
                return f"{backup_id} is not pinned: nothing to unpin"
            _confirm_unpin(services, env, ctx, pinned[0])
        for store in holders:
            if release:
                store.put(f"{env}/{backup_id}/{PIN}", [json.dumps({"release": release, "when": time.time()}).encode()])
            else:
                store.delete(f"{env}/{backup_id}/{PIN}")
        return f"{backup_id} pinned to {release}" if release else f"{backup_id} unpinned"

    return Operation("backup-pin", env, f"{'Pin' if release else 'Unpin'} backup {backup_id} of {env}",
                     [Step("pin", "Pin" if release else "Unpin", run)], params, takes_lock=False)


def _confirm_unpin(services: Services, env: str, ctx: StepContext, entry: BackupEntry) -> None:
    """Unpinning exposes a backup to retention: asked as a destructive action is (production: the
    name typed); declined, the pin stays."""
    policy = services.config.backup
    confirm_now(services, env, ctx, f"Unpin backup {entry.id} (pinned to {entry.pinned},"
                f" taken {ago(services.clock.now() - entry.created)} ago)",
                f"\nRetention may then delete it: the next backup's retention or `backup prune` deletes it once it"
                f" is older than {policy.retention_days} days and not one of the newest {policy.keep_newest}.")
