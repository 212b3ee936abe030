"""Taking a backup: the database dump and the app files streamed into the store, the manifest last."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import time
from typing import TYPE_CHECKING, Any, BinaryIO

from services.operations import StepContext, StepFailed

if TYPE_CHECKING:
    from services.factory import Services


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
