"""The backup catalog: what backups exist, which is chosen for a restore, which retention prunes."""

from __future__ import annotations

import calendar
import json
import time
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
            stored = min(o.modified for o in objects)
            entries.append(BackupEntry(
                backup_id, env_name, taken_at(meta, stored), sum(o.size for o in objects), store.name,
                MANIFEST in names, meta.get("version") or "", meta.get("migration_head") or "",
                verified.get("when") if verified.get("ok") else None, verified.get("restore_s"),
                pin.get("release") or ""))
    # A manifest's time is to the second: two backups within one second are told apart by the id's -N.
    return sorted(entries, key=lambda e: (e.created, id_order(e.id)), reverse=True)


def id_order(backup_id: str) -> tuple[str, int]:
    """Ids in the order they were taken: 20250101T120000Z, then -2, -3 ... -10."""
    base, _, n = backup_id.partition("-")
    return base, int(n) if n.isdigit() else 1


def taken_at(manifest: dict[str, Any], stored: float) -> float:
    """When the backup was taken: its manifest's created_at (format 2 on), else when its objects were
    stored. The manifest's time, not the store's: a bucket copied or synced elsewhere gets new object
    times, and its old backups must still age out."""
    created = manifest.get("created_at")
    try:
        return float(calendar.timegm(time.strptime(str(created), "%Y-%m-%dT%H:%M:%SZ"))) if created else stored
    except ValueError:
        return stored


def _read_json(store: ObjectStore, key: str) -> dict[str, Any]:
    try:
        value = json.loads(b"".join(store.get(key)))
    except (FileNotFoundError, ValueError):
        return {}  # unreadable metadata shows as missing, never as a crash of the list
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Verdict:
    """What retention does to one backup in one store, and why."""

    entry: BackupEntry
    kind: str  # "delete", or why it is kept: "pinned", "newest", "recent"
    why: str
    age_days: float

    @property
    def delete(self) -> bool:
        return self.kind == "delete"


def retention(services: Services, env: str, now: float | None = None) -> list[Verdict]:
    """Every backup of `env` in every store, newest first, with retention's verdict: deleted when older
    than retention_days, unless pinned or one of the newest keep_newest complete ones."""
    policy = services.config.backup
    now = now if now is not None else services.clock.now()
    entries = list_backups(services, env)
    newest = sorted({b.id for b in entries if b.complete}, key=id_order, reverse=True)[: policy.keep_newest]
    pins = {b.id: b.pinned for b in entries if b.pinned}  # pinned in one store: kept in every store
    verdicts = []
    for entry in entries:
        age_days = (now - entry.created) / DAY
        if entry.id in pins:
            verdicts.append(Verdict(entry, "pinned", f"pinned to {pins[entry.id]}", age_days))
        elif entry.id in newest:
            verdicts.append(Verdict(entry, "newest", f"one of the newest {policy.keep_newest}", age_days))
        elif age_days > policy.retention_days:
            verdicts.append(Verdict(entry, "delete", f"past {policy.retention_days} days", age_days))
        else:
            verdicts.append(Verdict(entry, "recent", f"within {policy.retention_days} days", age_days))
    return verdicts


def prune_candidates(services: Services, env: str, now: float | None = None) -> list[BackupEntry]:
    """Older than the retention, in any store; never one of the newest N, never a pinned one."""
    return [v.entry for v in retention(services, env, now) if v.delete]


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
