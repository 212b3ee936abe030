"""The backup catalog: what backups exist, which is chosen for a restore, which retention prunes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.operations import StepFailed

if TYPE_CHECKING:
    from services.factory import Services

DAY = 86_400


@dataclass(frozen=True)
class BackupEntry:
    id: str
    env: str
    created: float
    size: int
    store: str
    complete: bool  # only a backup with a manifest is complete
    version: str = ""
    migration_head: str = ""


def list_backups(services: Services, env: str | None = None) -> list[BackupEntry]:
    by_prefix: dict[str, list[Any]] = {}
    for obj in services.store.list(f"{env}/" if env else ""):
        prefix, _, _name = obj.key.rpartition("/")
        by_prefix.setdefault(prefix, []).append(obj)
    entries = []
    for prefix, objects in by_prefix.items():
        env_name, _, backup_id = prefix.partition("/")
        manifest = next((o for o in objects if o.key.endswith("/manifest.json")), None)
        meta: dict[str, Any] = {}
        if manifest:
            meta = json.loads(b"".join(services.store.get(manifest.key)))
        entries.append(BackupEntry(backup_id, env_name, min(o.modified for o in objects), sum(o.size for o in objects),
                                   services.store.name, manifest is not None, meta.get("version", ""),
                                   meta.get("migration_head", "")))
    return sorted(entries, key=lambda e: e.created, reverse=True)


def prune_candidates(services: Services, env: str, now: float | None = None) -> list[BackupEntry]:
    """Older than the retention, never the newest N."""
    policy = services.config.backup
    now = now if now is not None else (services.world.clock.now() if services.world else time.time())
    complete = [b for b in list_backups(services, env) if b.complete]
    keep = {b.id for b in complete[: policy.keep_newest]}
    return [b for b in list_backups(services, env)
            if b.id not in keep and now - b.created > policy.retention_days * DAY]


def choose_backup(services: Services, env: str, wanted: str | None) -> BackupEntry:
    """The wanted backup, or the newest complete one; an incomplete backup is never chosen."""
    complete = [b for b in list_backups(services, env) if b.complete]
    chosen = next((b for b in complete if b.id == wanted), None) if wanted else (complete[0] if complete else None)
    if chosen is None:
        raise StepFailed(f"no complete backup {wanted or ''} of {env} to restore".replace("  ", " "),
                         ("take a backup first", "pick another backup id"))
    return chosen
