"""The backup catalog: what backups exist, which is chosen for a restore, which retention prunes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.backups.trust import BACKUP_ID, ENV_NAME, check_backup_id
from services.core.operations import StepFailed

if TYPE_CHECKING:
    from services.core.container import Services
    from services.core.ports import ObjectStore

DAY = 86_400


MANIFEST, VERIFIED, PIN = "manifest.json", "verified.json", "pin.json"


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
    verified_at: float | None = None  # when a trial restore last succeeded
    restore_s: float | None = None  # how long it took: the measured RTO of the database
    pinned: str = ""  # the release it is pinned to; retention never deletes it


def list_backups(services: Services, env: str | None = None) -> list[BackupEntry]:
    """Every backup in every store (S3 and the local directory together), newest first."""
    entries = []
    for store in services.stores:
        by_prefix: dict[str, list[Any]] = {}
        for obj in store.list(f"{env}/" if env else ""):
            prefix, _, _name = obj.key.rpartition("/")
            by_prefix.setdefault(prefix, []).append(obj)
        for prefix, objects in by_prefix.items():
            env_name, _, backup_id = prefix.partition("/")
            if not BACKUP_ID.fullmatch(backup_id) or not ENV_NAME.fullmatch(env_name):
                continue  # not a backup the console made (a stray key): never listed, never chosen
            names = {o.key.rpartition("/")[2] for o in objects}
            meta = _read_json(store, f"{prefix}/{MANIFEST}") if MANIFEST in names else {}
            verified = _read_json(store, f"{prefix}/{VERIFIED}") if VERIFIED in names else {}
            pin = _read_json(store, f"{prefix}/{PIN}") if PIN in names else {}
            entries.append(BackupEntry(
                backup_id, env_name, min(o.modified for o in objects), sum(o.size for o in objects), store.name,
                MANIFEST in names, meta.get("version") or "", meta.get("migration_head") or "",
                verified.get("when") if verified.get("ok") else None, verified.get("restore_s"),
                pin.get("release") or ""))
    return sorted(entries, key=lambda e: e.created, reverse=True)


def _read_json(store: ObjectStore, key: str) -> dict[str, Any]:
    try:
        value = json.loads(b"".join(store.get(key)))
    except (FileNotFoundError, ValueError):
        return {}  # unreadable metadata shows as missing, never as a crash of the list
    return value if isinstance(value, dict) else {}


def prune_candidates(services: Services, env: str, now: float | None = None) -> list[BackupEntry]:
    """Older than the retention, in any store; never one of the newest N, never a pinned one."""
    policy = services.config.backup
    now = now if now is not None else (services.clock.now())
    entries = list_backups(services, env)
    newest = sorted({b.id for b in entries if b.complete}, reverse=True)[: policy.keep_newest]
    pinned = {b.id for b in entries if b.pinned}
    return [b for b in entries
            if b.id not in newest and b.id not in pinned and now - b.created > policy.retention_days * DAY]


def choose_backup(services: Services, env: str, wanted: str | None) -> BackupEntry:
    """The wanted backup, or the newest complete one; an incomplete backup is never chosen."""
    if wanted:
        check_backup_id(wanted)
    complete = [b for b in list_backups(services, env) if b.complete]
    chosen = next((b for b in complete if b.id == wanted), None) if wanted else (complete[0] if complete else None)
    if chosen is None:
        raise StepFailed(f"no complete backup {wanted or ''} of {env} to restore".replace("  ", " "),
                         ("take a backup first", "pick another backup id"))
    return chosen
