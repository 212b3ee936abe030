"""The backup actions: take a backup, and prune the ones past retention."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from services.backups.catalog import DAY, MANIFEST, PIN, prune_candidates
from services.backups.create import take_backup
from services.backups.trust import check_backup_id
from services.core.actions import Param, action, confirm_step
from services.core.operations import Operation, Step, StepContext, StepFailed

if TYPE_CHECKING:
    from services.core.container import Services


@action("backup", "Take a backup (database + app files)", changes_env=False)
def backup(services: Services, env: str, params: dict[str, Any]) -> Operation:
    def run(ctx: StepContext) -> str:
        for store in services.stores:  # what a killed backup left half-written goes first
            for leftover in getattr(store, "clean_partials", lambda: [])():
                ctx.log(f"removed {leftover}, left half-written by an interrupted backup")
        ctx.state["backup_id"] = take_backup(services, env, ctx)
        return f"backup {ctx.state['backup_id']} complete"

    return Operation("backup", env, f"Back up {env}", [Step("backup", "Dump database and archive files", run)],
                     params, takes_lock=False)


@action("prune", "Delete backups past retention", destructive=True)
def prune(services: Services, env: str, params: dict[str, Any]) -> Operation:
    def plan(ctx: StepContext) -> str:
        now = services.clock.now()
        doomed = prune_candidates(services, env, now)
        for entry in doomed:
            age_days = (now - entry.created) / DAY
            ctx.log(f"would delete {entry.env}/{entry.id} in {entry.store} ({age_days:.0f} days old)")
        ctx.state["doomed"] = [[e.store, e.id] for e in doomed]
        kept = f"; the newest {services.config.backup.keep_newest} and pinned ones are kept"
        return f"{len(doomed)} past {services.config.backup.retention_days} days{kept}"

    def delete(ctx: StepContext) -> str:
        stores = {store.name: store for store in services.stores}
        for store_name, backup_id in ctx.state["doomed"]:
            store = stores[store_name]
            # The manifest goes first: a backup half deleted must never still look complete.
            keys = sorted((o.key for o in store.list(f"{env}/{backup_id}/")), key=lambda k: not k.endswith(MANIFEST))
            for key in keys:
                store.delete(key)
            ctx.log(f"deleted {env}/{backup_id} from {store_name}")
        return f"{len(ctx.state['doomed'])} deleted"

    return Operation("prune", env, f"Prune backups of {env}", [
        Step("plan", "Dry run: list backups past retention", plan),
        confirm_step(services, env, "Delete the listed backups"),
        Step("delete", "Delete", delete),
    ], params, takes_lock=False)


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
        for store in holders:
            if release:
                store.put(f"{env}/{backup_id}/{PIN}", [json.dumps({"release": release, "when": time.time()}).encode()])
            else:
                store.delete(f"{env}/{backup_id}/{PIN}")
        return f"{backup_id} pinned to {release}" if release else f"{backup_id} unpinned"

    return Operation("backup-pin", env, f"Pin backup {backup_id} of {env}", [Step("pin", "Pin", run)], params,
                     takes_lock=False)
