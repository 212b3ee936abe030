"""Backups: database dump and app archive with a manifest written last; retention."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from services.catalog import action, confirm_step
from services.operations import Operation, Step, StepContext, StepFailed

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


class HashingWriter(io.RawIOBase):
    """Passes bytes through to a sink, counting them and hashing them on the way."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink, self.size, self.sha256 = sink, 0, hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.sink.write(chunk)
        self.sha256.update(chunk)
        self.size += len(chunk)
        return len(chunk)

    def summary(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256.hexdigest()}


def choose_backup(services: Services, env: str, wanted: str | None) -> BackupEntry:
    """The wanted backup, or the newest complete one; an incomplete backup is never chosen."""
    complete = [b for b in list_backups(services, env) if b.complete]
    chosen = next((b for b in complete if b.id == wanted), None) if wanted else (complete[0] if complete else None)
    if chosen is None:
        raise StepFailed(f"no complete backup {wanted or ''} of {env} to restore".replace("  ", " "),
                         ("take a backup first", "pick another backup id"))
    return chosen


def take_backup(services: Services, env: str, ctx: StepContext, include_files: bool = True) -> str:
    """Dump (streamed through gzip into the store, never held in memory), archive, then write
    the manifest last, so a half backup is never listed complete."""
    now = services.world.clock.now() if services.world else time.time()
    backup_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    prefix = f"{env}/{backup_id}/"
    artifacts: dict[str, dict[str, Any]] = {}
    database = services.database(env)
    with services.store.open_write(prefix + "db.sql.gz") as sink:
        hashing = HashingWriter(sink)
        with gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0) as compressed:
            server_version = database.dump(compressed)
    artifacts["db.sql.gz"] = hashing.summary()
    ctx.log(f"stored {prefix}db.sql.gz ({hashing.size / 1e6:.2f} MB) in {services.store.name}")
    if include_files:
        with services.store.open_write(prefix + "app.tar.gz") as sink:
            hashing = HashingWriter(sink)
            count = services.app_files.archive(hashing, services.config.backup.excludes)
        artifacts["app.tar.gz"] = hashing.summary()
        ctx.log(f"archived {count} app files, excluding {', '.join(services.config.backup.excludes)}")
    migrations = [m.name for m in database.status() if m.state == "applied"]
    manifest = {"id": backup_id, "env": env, "artifacts": artifacts, "server_version": server_version,
                "version": _deployed_version(services, env), "migration_head": migrations[-1] if migrations else None}
    services.store.put(prefix + "manifest.json", [json.dumps(manifest).encode()])
    return backup_id


def _deployed_version(services: Services, env: str) -> str | None:
    try:
        return services.target(env).status().version
    except StepFailed:
        return None  # no deploy target yet: the manifest says unknown rather than failing the backup


@action("backup", "Take a backup (database + app files)", changes_env=False)
def backup(services: Services, env: str, params: dict[str, Any]) -> Operation:
    def run(ctx: StepContext) -> str:
        ctx.state["backup_id"] = take_backup(services, env, ctx)
        return f"backup {ctx.state['backup_id']} complete"

    return Operation("backup", env, f"Back up {env}", [Step("backup", "Dump database and archive files", run)],
                     params, takes_lock=False)


def prune_candidates(services: Services, env: str, now: float | None = None) -> list[BackupEntry]:
    """Older than the retention, never the newest N."""
    policy = services.config.backup
    now = now if now is not None else (services.world.clock.now() if services.world else time.time())
    complete = [b for b in list_backups(services, env) if b.complete]
    keep = {b.id for b in complete[: policy.keep_newest]}
    return [b for b in list_backups(services, env)
            if b.id not in keep and now - b.created > policy.retention_days * DAY]


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
