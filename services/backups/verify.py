"""Verifying a backup: every artifact's sha256 against the manifest, then a trial restore into a
scratch database, timed (the measured RTO of the database), with the integrity tables counted.

The functions serve the `verify` action, the migration rollback and the recovery walkthrough:
`check_backup` (signature, streamed checksums, and a scan of an older plain-SQL dump: all before
anything is restored), `restore_dump` / `restore_from_store` (pg_restore of an archive, or checked
SQL into psql for an older backup), `trial_restore` and `record_verification`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import zstandard

from services.backups import plain_sql
from services.backups.catalog import MANIFEST, VERIFIED, choose_backup
from services.backups.create import cancelled, compression_of, decompressor
from services.backups.trust import (
    check_backup_id,
    check_env_name,
    check_trusted,
    is_archive,
    manifest_format,
)
from services.core.actions import Param, action, confirm_step
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.ports import OnLine, Readable

if TYPE_CHECKING:
    from services.core.container import Services
    from services.core.ports import MigrationDatabase, ObjectStore, ScratchDatabase

MB = 1e6
READ_BUFFER = 1 << 20
ARTIFACT_NAME = re.compile(r"(db\.pgdump|db\.sql|app\.tar)\.(zst|gz)")


def never() -> bool:
    return False


@dataclass(frozen=True)
class TrialRestore:
    database: str  # the scratch database, dropped since
    restore_s: float
    counts: dict[str, int]
    sample: str  # the sample query and what it read
    missing: tuple[str, ...] = field(default=())  # integrity tables not in the restored database


def store_of(services: Services, env: str, backup_id: str) -> ObjectStore:
    """The store that holds the backup's manifest (the first, if several do)."""
    check_env_name(env)
    check_backup_id(backup_id)
    for store in services.stores:
        if any(o.key == f"{env}/{backup_id}/{MANIFEST}" for o in store.list(f"{env}/{backup_id}/")):
            return store
    raise StepFailed(f"no complete backup {backup_id} of {env} in any store (no manifest)",
                     ("backup list --env " + env, "pick another backup id"))


def read_manifest(store: ObjectStore, env: str, backup_id: str) -> dict[str, Any]:
    try:
        manifest = json.loads(b"".join(store.get(f"{env}/{backup_id}/{MANIFEST}")))
    except (FileNotFoundError, ValueError) as err:
        raise StepFailed(f"backup {backup_id} of {env}: unreadable manifest ({err})",
                         ("pick another backup",)) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), dict):
        raise StepFailed(f"backup {backup_id} of {env}: the manifest lists no artifacts", ("pick another backup",))
    for name, meta in manifest["artifacts"].items():  # names become store keys and working-copy paths
        if not ARTIFACT_NAME.fullmatch(name) or not isinstance(meta, dict):
            raise StepFailed(f"backup {backup_id} of {env}: the manifest lists an artifact named {name[:60]!r},"
                             " which no backup of the console has: refusing it", ("pick another backup",))
    return manifest


def dump_artifact(manifest: dict[str, Any]) -> str:
    """The database dump's name in a manifest: db.pgdump.zst or .gz (format 3), db.sql.zst or .gz before."""
    name = next((n for n in manifest["artifacts"] if n.startswith(("db.pgdump", "db.sql"))), None)
    if name is None:
        raise StepFailed(f"backup {manifest.get('id', '?')} has no database dump", ("pick another backup",))
    return str(name)


def _mismatch(backup_id: str, name: str, digest: str, size: int, expected: dict[str, Any]) -> StepFailed:
    return StepFailed(
        f"checksum mismatch: {name} of backup {backup_id} is {size} bytes with sha256 {digest[:16]}…, its manifest"
        f" says {expected.get('size')} bytes with sha256 {str(expected.get('sha256'))[:16]}…: refusing to restore it",
        ("choose an older backup", "take a new backup"))


def check_artifacts(services: Services, env: str, backup_id: str, on_line: OnLine) -> dict[str, Any]:
    """Recompute each artifact's sha256 and size as it streams from the store; the manifest if all match."""
    store = store_of(services, env, backup_id)
    manifest = read_manifest(store, env, backup_id)
    for name, expected in manifest["artifacts"].items():
        digest, size = hashlib.sha256(), 0
        try:
            for chunk in store.get(f"{env}/{backup_id}/{name}"):
                digest.update(chunk)
                size += len(chunk)
        except FileNotFoundError:
            raise StepFailed(f"backup {backup_id}: {name} is listed in the manifest but missing from {store.name}",
                             ("choose an older backup",)) from None
        if digest.hexdigest() != expected.get("sha256") or size != expected.get("size", size):
            raise _mismatch(backup_id, name, digest.hexdigest(), size, expected)
        on_line(f"{name}: sha256 {digest.hexdigest()[:16]}… matches the manifest ({size / MB:.1f} MB)")
    return manifest


def check_backup(services: Services, env: str, backup_id: str, ctx: StepContext) -> dict[str, Any]:
    """Everything checked before anything is stopped, overwritten or restored: the manifest's signature
    (services.backups.trust's policy), every artifact's sha256, and for an older plain-SQL dump a scan
    of every line for psql meta-commands."""
    store = store_of(services, env, backup_id)
    trusted = check_trusted(services, env, read_manifest(store, env, backup_id), ctx)
    manifest = check_artifacts(services, env, backup_id, ctx.log)
    if not is_archive(manifest):
        with open_dump(services, env, backup_id) as plain:
            lines = plain_sql.scan(plain, f"backup {backup_id}")
        ctx.log(f"an older plain-SQL backup (format {manifest_format(manifest)}): {lines} lines scanned, no psql"
                " meta-command")
    ctx.state["trusted"] = trusted
    return manifest


def restore_dump(target: ScratchDatabase | MigrationDatabase, manifest: dict[str, Any], raw: Readable, what: str,
                 on_line: OnLine, cancelled: Callable[[], bool]) -> None:
    """Restore a backup's dump (compressed, as stored) into `target`: pg_restore for an archive; for an
    older plain-SQL dump, psql fed only lines checked for meta-commands."""
    name = dump_artifact(manifest)
    with decompressor(compression_of(name, manifest), raw) as plain:
        source = _Damaged(plain, what)
        if is_archive(manifest):
            target.restore(source, on_line, cancelled)
        else:
            on_line(f"{what} is an older plain-SQL dump: every line is checked on its way to psql")
            target.restore_plain(plain_sql.CheckedSql(source, what), on_line, cancelled)


class _CheckedChunks(io.RawIOBase):
    """A raw stream over a store's chunks that checks size and sha256 when it reaches the end: a
    mismatch raises instead of the end of input, so a restore fed from it never commits."""

    def __init__(self, chunks: Iterable[bytes], backup_id: str, name: str, expected: dict[str, Any]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self._digest, self._size = hashlib.sha256(), 0
        self._where, self._expected = (backup_id, name), expected

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                digest = self._digest.hexdigest()
                if digest != self._expected.get("sha256") or self._size != self._expected.get("size", self._size):
                    raise _mismatch(*self._where, digest, self._size, self._expected)
                return 0
            self._digest.update(chunk)
            self._size += len(chunk)
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


@contextmanager
def open_dump(services: Services, env: str, backup_id: str) -> Iterator[Readable]:
    """The backup's database dump as plain SQL, decompressed as the manifest says (zstd or gzip),
    streamed from whichever store holds it and re-checked against the manifest's sha256 on the way."""
    store = store_of(services, env, backup_id)
    manifest = read_manifest(store, env, backup_id)
    name = dump_artifact(manifest)
    raw = _CheckedChunks(store.get(f"{env}/{backup_id}/{name}"), backup_id, name, manifest["artifacts"][name])
    with decompressor(compression_of(name, manifest), io.BufferedReader(raw, READ_BUFFER)) as plain:
        yield _Damaged(plain, f"backup {backup_id}: {name}")


class _Damaged:
    """Reads through; a decompressor's error becomes a StepFailed that says which artifact is damaged."""

    def __init__(self, reader: Readable, what: str) -> None:
        self._reader, self._what = reader, what

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._reader.read(size)
        except (OSError, EOFError, zstandard.ZstdError) as err:
            raise StepFailed(f"{self._what} cannot be decompressed ({err}): it is damaged",
                             ("choose an older backup",)) from None


def restore_from_store(services: Services, env: str, backup_id: str, target: ScratchDatabase | MigrationDatabase,
                       on_line: OnLine, cancelled: Callable[[], bool] = never) -> None:
    """Stream the backup's dump from its store into `target`, re-checked against the manifest's sha256."""
    store = store_of(services, env, backup_id)
    manifest = read_manifest(store, env, backup_id)
    name = dump_artifact(manifest)
    raw = _CheckedChunks(store.get(f"{env}/{backup_id}/{name}"), backup_id, name, manifest["artifacts"][name])
    restore_dump(target, manifest, io.BufferedReader(raw, READ_BUFFER), f"backup {backup_id}: {name}", on_line,
                 cancelled)


def trial_restore(services: Services, env: str, backup_id: str, on_line: OnLine,
                  cancelled: Callable[[], bool] = never) -> TrialRestore:
    """Restore the backup into a new scratch database (dropped afterwards, even on failure), timed;
    count the integrity tables and read a row of the first."""
    tables = services.config.migrations.integrity_tables
    with services.database(env).scratch() as scratch:
        on_line(f"created scratch database {scratch.name}")
        began = time.monotonic()
        try:
            restore_from_store(services, env, backup_id, scratch, on_line, cancelled)
        except BaseException:
            on_line(f"the restore stopped; dropping scratch database {scratch.name}")
            raise
        restore_s = time.monotonic() - began
        counts = scratch.row_counts(tables)
        missing = tuple(t for t in tables if t not in counts)
        if not counts:
            raise StepFailed(f"the restored database has none of the integrity tables ({', '.join(tables)})",
                             ("check [migrations] integrity_tables", "choose another backup"))
        first = next(t for t in tables if t in counts)
        read = scratch.sample(first)
        sample = f'SELECT * FROM "{first}" LIMIT 1 read {read} row{"" if read == 1 else "s"}'
        on_line(f"{sample}; dropping scratch database {scratch.name}")
    return TrialRestore(scratch.name, round(restore_s, 2), counts, sample, missing)


def record_verification(services: Services, env: str, backup_id: str, ok: bool, trial: TrialRestore | None = None,
                        error: str = "") -> dict[str, Any]:
    """verified.json next to the manifest: when, ok, restore_s (the RTO of the database), counts."""
    when = services.clock.now()
    record: dict[str, Any] = {"when": when, "ok": ok, "restore_s": trial.restore_s if trial else None,
                              "counts": trial.counts if trial else {}, "sample": trial.sample if trial else "",
                              "error": error}
    store = store_of(services, env, backup_id)
    store.put(f"{env}/{backup_id}/{VERIFIED}", [json.dumps(record, indent=1).encode()])
    return record


def read_verification(services: Services, env: str, backup_id: str) -> dict[str, Any] | None:
    for store in services.stores:
        try:
            record = json.loads(b"".join(store.get(f"{env}/{backup_id}/{VERIFIED}")))
        except (FileNotFoundError, ValueError):
            continue
        if isinstance(record, dict):
            return record
    return None


@action("verify", "Verify a backup: checksums, then a trial restore into a scratch database", changes_env=False,
        params=(Param("backup_id", "the backup to verify", check=check_backup_id,
                      default_is="the newest complete backup"),))
def verify(services: Services, env: str, params: dict[str, Any]) -> Operation:
    def choose(ctx: StepContext) -> str:
        chosen = choose_backup(services, env, params.get("backup_id"))
        ctx.state["backup_id"] = chosen.id
        return f"{chosen.id} in {chosen.store}"

    def what(ctx: StepContext) -> str:
        return f"Restore backup {ctx.state['backup_id']} into a new scratch database (dropped afterwards)"

    def failed(ctx: StepContext, err: StepFailed) -> StepFailed:
        try:
            record_verification(services, env, ctx.state["backup_id"], False, error=str(err))
        except Exception as unrecorded:  # noqa: BLE001 - the verification's own failure matters more
            ctx.log(f"could not record the failed verification: {unrecorded}", "warning")
        return err

    def checksums(ctx: StepContext) -> str:
        try:
            manifest = check_backup(services, env, ctx.state["backup_id"], ctx)
        except StepFailed as err:
            raise failed(ctx, err) from None
        return f"{len(manifest['artifacts'])} artifacts match the manifest ({ctx.state['trusted']})"

    def trial(ctx: StepContext) -> str:
        try:
            result = trial_restore(services, env, ctx.state["backup_id"], ctx.log, cancelled(ctx))
        except StepFailed as err:
            raise failed(ctx, err) from None
        for table, count in result.counts.items():
            ctx.log(f"{table:<12} {count:>9} rows")
        if result.missing:
            ctx.log(f"integrity tables not in the backup: {', '.join(result.missing)}", "warning")
        ctx.state["trial"] = {"restore_s": result.restore_s, "counts": result.counts, "sample": result.sample,
                              "database": result.database}
        return f"restored in {result.restore_s:.1f}s into a scratch database (dropped); {result.sample}"

    def record(ctx: StepContext) -> str:
        trial = TrialRestore(**ctx.state["trial"])
        record_verification(services, env, ctx.state["backup_id"], True, trial)
        return f"verified; RTO (database) {trial.restore_s:.1f}s"

    return Operation("verify", env, f"Verify a backup of {env}", [
        Step("choose", "Choose the backup", choose),
        confirm_step(services, env, what, "Restore into a scratch database"),
        Step("checksums", "Check the signature and checksums against the manifest", checksums),
        Step("trial", "Trial restore into a scratch database", trial),
        Step("record", "Record the verification (verified.json)", record),
    ], params, takes_lock=False)
