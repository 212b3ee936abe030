"""The guided disaster-recovery walkthrough, and its drill.

A checklist of steps; each says what it will do, does it and shows the result, and a failure
says where things stand (are the services stopped? which data is live?) and what to do next.

Everything a later step or a resume needs is in ctx.state, which the runner journals after
each step: the backup and its store, the working copy and its digests, what was stopped and
restored. Each step can run again after an SSH drop or a crash: a download keeps finished
artifacts, a restore is one transaction, stopping or starting twice is harmless.

The backup is downloaded and verified before anything live is touched: a damaged backup is
refused while the services still run, and the outage lasts only from stop to healthy.

The manifest's signature is checked before the working copy is even created, and the working
copy is a directory the console made (a marker file): only such a directory is ever deleted.

A drill runs the same checklist against a scratch database (created on
backup.scratch_database_url, or the environment's own server, and dropped again) and a
scratch directory. It stops and starts nothing; it still asks before it restores (production:
the name typed), as it runs what the backup holds. It health-checks only a `health_url` given.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from services.backups import plain_sql
from services.backups.catalog import choose_backup
from services.backups.create import FILES_NAME, cancelled, compression_of, decompressor
from services.backups.loss import ago, say_loss
from services.backups.trust import check_backup_id, check_trusted, is_archive, manifest_format
from services.backups.verify import (
    TrialRestore,
    dump_artifact,
    open_dump,
    read_manifest,
    record_verification,
    restore_dump,
    store_of,
)
from services.backups.workdir import MARKER, make_work_dir, remove_work_dir
from services.core import notify_events
from services.core.actions import Param, action, confirm_step
from services.core.locks import LockUnknown, is_mine
from services.core.operations import Cancelled, Declined, Operation, Step, StepContext, StepFailed
from services.core.ports import AppFiles, MigrationDatabase, Readable, ScratchDatabase
from services.core.private import open_private
from services.core.units import byte_size
from services.environments.health import failing_dependencies, named

if TYPE_CHECKING:
    from services.core.config import ReleaseConfig
    from services.core.container import Services

CHUNK = 1 << 20
PROGRESS_EVERY_S = 0.25

BACKUP_ID = Param("backup_id", "the backup to restore", check=check_backup_id,
                  default_is="the newest complete backup")
WORK_DIR = Param("work_dir", "download into this directory, which the console creates (and removes at the end)",
                 form=False, default_is="under the state dir")
HEALTH_TRIES = Param("health_tries", "health-check tries", from_config="recovery.health_tries")
HEALTH_INTERVAL_S = Param("health_interval_s", "seconds between tries", from_config="recovery.health_interval_s")


@action("restore", "Disaster recovery: restore from a backup", destructive=True, params=(
    BACKUP_ID, WORK_DIR,
    HEALTH_TRIES, HEALTH_INTERVAL_S,
    Param("drill", "a drill instead: restore into scratch, touch nothing live (as restore-drill)", switch=True),
))
def restore(services: Services, env: str, params: dict[str, Any]) -> Operation:
    """The walkthrough; `drill=true` makes it the drill (the `restore-drill` action)."""
    return Walkthrough(services, env, params, drill=_flag(params.get("drill"))).operation("restore")


@action("restore-drill", "Recovery drill: restore a backup into scratch and measure the RTO", changes_env=False,
        params=(BACKUP_ID, WORK_DIR, Param("health_url", "also health-check this URL: an app on the scratch copy",
                                           example="http://10.0.0.5:3000/api/health")))
def restore_drill(services: Services, env: str, params: dict[str, Any]) -> Operation:
    return Walkthrough(services, env, params, drill=True).operation("restore-drill")


class Walkthrough:
    def __init__(self, services: Services, env: str, params: dict[str, Any], drill: bool) -> None:
        self.services, self.env, self.params, self.drill = services, env, params, drill
        self.settings = services.config.environment(env)
        self.tries = number(HEALTH_TRIES, params, services.config, int)
        self.interval_s = number(HEALTH_INTERVAL_S, params, services.config, float)
        self.health_url = str(params.get("health_url") or "") if drill else services.config.health_url(env)
        # Relative to release.toml, as the backup engine reads it.
        base = services.config.source.parent if services.config.source else Path.cwd()
        self.app_dir = base / self.settings.app_dir if self.settings.app_dir else None

    # --- the checklist ------------------------------------------------------------------------

    def operation(self, kind: str) -> Operation:
        health_title = (f"Health-check {urlsplit(self.health_url).path} ({self.tries} tries,"
                        f" {self.interval_s:g}s apart)" if self.health_url
                        else "Health check: skipped in a drill without health_url")
        steps = [
            self._step("choose", "Choose the backup", self.choose),
            confirm_step(self.services, self.env, self._drill_prompt, "Restore the backup into a scratch database")
            if self.drill else confirm_step(self.services, self.env, "Stop the services and restore the backup"),
            self._step("download", "Check the signature, download the backup to a working copy", self.download),
            self._step("verify", "Verify checksums against the manifest", self.verify),
            self._step("stop", "Stop the services: skipped in a drill" if self.drill else
                       "Stop the services", self.stop),
            self._step("restore-db", "Restore a scratch database, check it, drop it" if self.drill else
                       "Restore the database (one transaction)", self.restore_db),
            self._step("restore-files", "Restore the app files into a scratch directory" if self.drill else
                       "Restore the app files into app_dir", self.restore_files),
            self._step("validate", "Validate config, database and app dir", self.validate),
            self._step("start", "Start the services: skipped in a drill" if self.drill else
                       "Start the services", self.start),
            self._step("health", health_title, self.health),
            self._step("report", "Report the measured RTO", self.report),
        ]
        title = f"Recovery drill for {self.env}" if self.drill else f"Disaster recovery of {self.env}"
        # A drill touches nothing live, so it takes no release lock: it can rehearse beside a release.
        return Operation(kind, self.env, title, steps, self.params, takes_lock=not self.drill)

    def _step(self, step_id: str, title: str, run: Callable[[StepContext], str]) -> Step:
        """Each step timed into the state, and each failure told with where things stand."""

        def guarded(ctx: StepContext) -> str:
            began = self._now()
            try:
                detail = run(ctx)
            except (Declined, Cancelled):
                raise
            except StepFailed as err:
                raise StepFailed(f"{err}. {self._standing(ctx.state)}",
                                 _unique(err.next_options + self._options(step_id, ctx.state))) from None
            except Exception as err:  # noqa: BLE001 - an unexpected error still says where things stand
                raise StepFailed(f"{type(err).__name__}: {err}. {self._standing(ctx.state)}",
                                 self._options(step_id, ctx.state)) from err
            ctx.state.setdefault("timings", {})[step_id] = round(self._now() - began, 1)
            return detail

        return Step(step_id, title, guarded)

    # --- the steps ----------------------------------------------------------------------------

    def choose(self, ctx: StepContext) -> str:
        chosen = choose_backup(self.services, self.env, self.params.get("backup_id"))
        ctx.state.update(backup_id=chosen.id, work_dir=str(self._work_dir(chosen.id)))
        age = ago(self._now() - chosen.created)
        ctx.log(f"{'the newest complete backup' if not self.params.get('backup_id') else 'as asked'}: {chosen.id}"
                f" in {chosen.store}, version {chosen.version or 'unknown'}, migration head"
                f" {chosen.migration_head or 'unknown'}, {age} old")
        if not self.drill:  # what the restore loses, said here and in the confirmation that follows
            say_loss(self.services, self.env, chosen, ctx)
        return f"{chosen.id} ({chosen.version or 'version unknown'}, {age} old)"

    def _drill_prompt(self, ctx: StepContext) -> str:
        return (f"Restore backup {ctx.state['backup_id']} into a new scratch database and directory (the live"
                " services, database and files are not touched)")

    def download(self, ctx: StepContext) -> str:
        # The RTO clock starts once the restore is decided (confirmed), and a resume keeps it running.
        ctx.state.setdefault("started_at", self._now())
        backup_id, work = ctx.state["backup_id"], Path(ctx.state["work_dir"])
        store = store_of(self.services, self.env, backup_id)
        prefix = f"{self.env}/{backup_id}/"
        manifest = read_manifest(store, self.env, backup_id)
        # Before any byte is written here: an unsigned or tampered manifest is refused (or overridden).
        ctx.state["trusted"] = check_trusted(self.services, self.env, manifest, ctx)
        if not is_archive(manifest):  # an older plain dump: scanned as it streams from the store, first
            self._scan_in_store(ctx, backup_id)
        artifacts: dict[str, dict[str, Any]] = manifest["artifacts"]
        make_work_dir(work)
        total = sum(int(a["size"]) for a in artifacts.values())
        progress = _Progress(ctx, total)
        fetched = 0
        # Each artifact is hashed as it is written: the verify step then reads no byte a second time.
        hashed: dict[str, dict[str, Any]] = ctx.state.get("hashed", {})
        for name, meta in artifacts.items():
            path = work / name
            if path.is_file() and path.stat().st_size == int(meta["size"]):
                ctx.log(f"{name}: already in the working copy ({byte_size(path.stat().st_size)}), kept")
                progress.add(path.stat().st_size)
                continue
            partial = path.with_name(name + ".partial")
            # An interrupted download goes on from where it stopped (a ranged GET); the bytes
            # already there are hashed first, so the digest is still of the whole artifact.
            digest, have = _resumable(partial, int(meta["size"]))
            if have:
                ctx.log(f"{name}: {byte_size(have)} already downloaded, the rest follows")
                progress.add(have)
            with open_private(partial, "ab") as out:
                for chunk in store.get(prefix + name, start=have) if have < int(meta["size"]) else ():
                    out.write(chunk)
                    digest.update(chunk)
                    progress.add(len(chunk))
                    ctx.check_cancelled()
            partial.replace(path)  # only a whole artifact has its real name
            hashed[name] = {"sha256": digest.hexdigest(), **_identity(path)}
            fetched += 1
            ctx.log(f"{name}: {byte_size(path.stat().st_size)} from {store.name}")
        progress.done()
        ctx.state.update(manifest=manifest, store=store.name, hashed=hashed,
                         files={name: str(work / name) for name in artifacts})
        ctx.log(f"working copy: {work} ({fetched} fetched now, {len(artifacts) - fetched} kept from before)")
        return f"{len(artifacts)} artifacts, {byte_size(total)} from {store.name}"

    def verify(self, ctx: StepContext) -> str:
        artifacts: dict[str, dict[str, Any]] = ctx.state["manifest"]["artifacts"]
        progress = _Progress(ctx, sum(int(a["size"]) for a in artifacts.values()))
        digests = {}
        hashed: dict[str, dict[str, Any]] = ctx.state.get("hashed", {})
        for name, expected in artifacts.items():
            path = Path(ctx.state["files"][name])
            known = hashed.get(name)
            if known is not None and {k: v for k, v in known.items() if k != "sha256"} == _identity(path):
                found = str(known["sha256"])  # hashed as it was downloaded, and the file is untouched since
                progress.add(path.stat().st_size)
            else:  # kept from an earlier run, or changed since: read it again
                found = _sha256(path, progress, ctx)
            if found != expected["sha256"]:
                path.unlink()  # a run again downloads it afresh
                ctx.log(f"{name}: sha256 {found[:16]}… but the manifest says {expected['sha256'][:16]}…", "error")
                raise StepFailed(f"{name} does not match the manifest's sha256: the backup is damaged and will not"
                                 " be restored; the damaged copy was removed",
                                 ("restore an older backup (backup_id)",
                                  "or run the restore again, if the copy was damaged on the way"))
            digests[name] = found
            ctx.log(f"{name}: sha256 {found[:16]}… matches ({byte_size(path.stat().st_size)})")
        progress.done()
        manifest = ctx.state["manifest"]
        if not is_archive(manifest):  # before anything stops: a meta-command line is refused here
            with self._dump(ctx.state) as plain:
                lines = plain_sql.scan(plain, f"backup {ctx.state['backup_id']}")
            ctx.log(f"an older plain-SQL backup (format {manifest_format(manifest)}): {lines} lines scanned,"
                    " no psql meta-command")
        ctx.state["digests"] = digests
        return f"{len(digests)} of {len(digests)} sha256 match"

    def stop(self, ctx: StepContext) -> str:
        if self.drill:
            return "skipped"
        self.services.target(self.env).stop(ctx.log)
        ctx.state["stopped_at"] = self._now()
        return "stopped"

    def restore_db(self, ctx: StepContext) -> str:
        database = self.services.database(self.env)
        tables = self.services.config.migrations.integrity_tables
        if self.drill:
            with database.scratch() as scratch:
                ctx.log(f"created scratch database {scratch.name}")
                began = time.monotonic()
                self._restore_dump(ctx, scratch)
                ctx.state["db_restore_s"] = round(time.monotonic() - began, 2)
                counts = scratch.row_counts(tables)
                read = {table: scratch.sample(table) for table in counts}
                ctx.log(f"scratch database answers: {counts_text(counts)}; a row read from each non-empty table")
                if missing := [t for t in tables if t not in counts]:
                    ctx.log(f"tables not in this backup: {', '.join(missing)}", "warning")
                if any(counts[t] and not read[t] for t in counts):
                    raise StepFailed(f"rows counted but none could be read in {scratch.name}")
            ctx.state.update(db_counts=counts, scratch_db=scratch.name)
            ctx.log(f"dropped scratch database {scratch.name}")
            return f"{len(counts)} table{'' if len(counts) == 1 else 's'} restored and read; dropped"
        ctx.state["restore_began"] = time.time()  # a lock row older than this can only be the backup's
        self._restore_dump(ctx, database)
        ctx.state["db_restored"] = True
        retake_lock(self.services, self.env, ctx)
        return f"restored {ctx.state['backup_id']}"

    def restore_files(self, ctx: StepContext) -> str:
        if FILES_NAME not in ctx.state["manifest"]["artifacts"]:
            return "skipped: a database-only backup"
        into = Path(ctx.state["work_dir"]) / "scratch-app" if self.drill else self.app_dir
        files = self._app_files(into)
        if not files.configured:
            ctx.log(f"no app_dir is set for {self.env}: there is nowhere to restore its files")
            return "skipped: no app_dir"
        ctx.log(f"restoring into {into}" if into else "restoring the app files")
        with Path(ctx.state["files"][FILES_NAME]).open("rb") as archive:
            files.restore(archive, ctx.log)
        ctx.state["files_restored"] = str(into) if into else ""
        ctx.log("files in the archive replaced their namesakes; files it does not hold (excluded:"
                f" {', '.join(self.services.config.backup.excludes)}) were left as they were")
        return "restored"

    def validate(self, ctx: StepContext) -> str:
        source = self.services.config.source
        if source is not None:
            self.services.load_config(source).environment(self.env)
            ctx.log(f"{source} loads and defines {self.env}")
        checks, failing = ["config"], []
        if self.drill:
            ctx.log(f"the scratch copy answered: {counts_text(ctx.state.get('db_counts', {}))}")
            checks.append("scratch database")
        else:
            counts = self.services.database(self.env).row_counts(self.services.config.migrations.integrity_tables)
            ctx.log(f"database reachable: {counts_text(counts)}")
            checks.append("database")
            failing = failing_dependencies(self.services, self.env)  # the services start next
            if failing:
                ctx.log(f"failing dependency: {named(failing)}; the app may not start healthy")
        if files := ctx.state.get("files_restored"):
            if not self._app_files(Path(files)).restored():
                raise StepFailed(f"{files} is not a directory after the restore")
            checks.append("app dir")
        elif self.app_dir is not None and not self.drill:
            if not self.app_dir.is_dir():
                raise StepFailed(f"app_dir {self.app_dir} does not exist on this host",
                                 (f"fix app_dir under [environments.{self.env}] in release.toml",))
            checks.append("app dir")
        return ", ".join(checks) + " ok" + (f"; FAILING {', '.join(c.dependency for c in failing)}" if failing else "")

    def start(self, ctx: StepContext) -> str:
        if self.drill:
            return "skipped"
        self.services.target(self.env).start(ctx.log)
        ctx.state["started"] = True
        return "started"

    def health(self, ctx: StepContext) -> str:
        if not self.health_url:
            ctx.state["recovered_at"] = self._now()
            ctx.log("give health_url to health-check an app started on the scratch copy")
            return "skipped"
        return wait_healthy(self.services, self.env, self.health_url, self.tries, self.interval_s, ctx)

    def report(self, ctx: StepContext) -> str:
        state = ctx.state
        rto = max(0.0, state["recovered_at"] - state["started_at"])
        for step_id, took in state.get("timings", {}).items():
            ctx.log(f"{step_id:<14} {_duration(took)}")
        work = Path(state["work_dir"])
        if remove_work_dir(work):
            ctx.log(f"working copy {work} removed")
        else:
            ctx.log(f"{work} was not created by the console: left in place", "warning")
        if self.drill:
            # A drill is a verified restore: the backups list shows when, and how long the database took.
            trial = TrialRestore(state["scratch_db"], state["db_restore_s"], state["db_counts"],
                                 f"drill {ctx.op_id}: restored, counted and read back")
            record_verification(self.services, self.env, state["backup_id"], True, trial)
            ctx.log(f"measured from the start of the download to {'healthy' if self.health_url else 'validated'}")
            return f"drill RTO {_duration(rto)}"
        ctx.log("RTO: from the confirmed start to healthy; down: from stop to healthy")
        down = state["recovered_at"] - state.get("stopped_at", state["recovered_at"])
        return f"RTO {_duration(rto)}, services down {_duration(down)}"

    # --- helpers ------------------------------------------------------------------------------

    def _now(self) -> float:
        return self.services.clock.now()

    def _work_dir(self, backup_id: str) -> Path:
        if self.params.get("work_dir"):
            path = Path(self.params["work_dir"])
            if path.exists() and not (path / MARKER).is_file():  # refused before anything is written
                make_work_dir(path)
            return path
        kind = "drill" if self.drill else "restore"
        return self.services.journal.path.parent / "recovery" / f"{self.env}-{backup_id}-{kind}"

    @contextmanager
    def _dump(self, state: dict[str, Any]) -> Iterator[Readable]:
        """The verified dump in the working copy, decompressed."""
        name = dump_artifact(state["manifest"])
        with Path(state["files"][name]).open("rb") as raw, \
                decompressor(compression_of(name, state["manifest"]), raw) as plain:
            yield plain

    def _restore_dump(self, ctx: StepContext, target: MigrationDatabase | ScratchDatabase) -> None:
        """pg_restore of the verified archive in the working copy (checked SQL into psql for an older one)."""
        name = dump_artifact(ctx.state["manifest"])
        with Path(ctx.state["files"][name]).open("rb") as raw:
            restore_dump(target, ctx.state["manifest"], raw, f"backup {ctx.state['backup_id']}: {name}", ctx.log,
                         cancelled(ctx))

    def _scan_in_store(self, ctx: StepContext, backup_id: str) -> None:
        """Refuse a planted meta-command before a working copy exists. Damage is left to the checksums
        of the verify step, which say precisely what does not match."""
        try:
            with open_dump(self.services, self.env, backup_id) as plain:
                plain_sql.scan(plain, f"backup {backup_id}")
        except plain_sql.MetaCommandRefused:
            raise
        except StepFailed as damaged:
            ctx.log(f"the plain dump does not read back whole ({damaged}); the checksums will say more", "warning")

    def _app_files(self, into: Path | None) -> AppFiles:
        """The environment's own app files; in a real drill, a scratch directory instead."""
        if not self.drill or into is None:
            return self.services.files(self.env)
        return self.services.files_in(into, self.env)

    def _standing(self, state: dict[str, Any]) -> str:
        if self.drill:
            return "A drill: nothing live was touched"
        if state.get("started"):
            return "Now: the services were started on the restored data"
        if state.get("db_restored"):
            return f"Now: the services are STOPPED and the database holds backup {state['backup_id']}"
        if state.get("stopped_at"):
            return "Now: the services are STOPPED; the database is unchanged"
        return "Now: nothing live was changed; the services still run"

    def _options(self, step_id: str, state: dict[str, Any]) -> tuple[str, ...]:
        if self.drill:
            return ("retry this step", "run the drill again")
        if state.get("db_restored"):
            return ("retry this step: the restore is done, it goes on from here",
                    "abandon, and finish by hand: start the services, check /api/health")
        if state.get("stopped_at"):
            return ("retry this step", "or start the services again on the unchanged data, and abandon")
        return ("retry this step", "abandon: nothing live was changed")


def wait_healthy(services: Services, env: str, url: str, tries: int, interval_s: float, ctx: StepContext) -> str:
    """`url` polled until healthy, at most `tries` times `interval_s` apart; ctx.state["recovered_at"] set then."""
    checker = services.health(env)
    for attempt in range(1, tries + 1):
        result = checker.check(url)
        ctx.progress(attempt, tries, "tries")
        ctx.log(f"try {attempt}/{tries}: {result.status or 'no answer'} {result.detail}")
        if result.ok:
            ctx.state["recovered_at"] = services.clock.now()
            return f"healthy after {attempt} {'try' if attempt == 1 else 'tries'}"
        if attempt < tries:
            ctx.sleep(services.real_seconds(interval_s))
    raise StepFailed(f"{url} not healthy after {tries} tries {interval_s:g}s apart",
                     ("look at the app's logs and start it by hand if needed, then retry this step",
                      "retry with more health_tries or a longer health_interval_s"))


def retake_lock(services: Services, env: str, ctx: StepContext, kind: str = "restore") -> None:
    """The release lock is a row in the database just restored: the backup's rows replaced ours.

    Only a row that came from the backup is replaced: one older than the restore and not ours.
    A row newer than the restore is another console's, taken while ours was gone: left alone.
    """
    locks = services.locks
    try:
        held = locks.holder(env)
    except LockUnknown as err:
        raise StepFailed(f"cannot read {env}'s release lock after the restore: {err}",
                         ("retry this step: the restore is done, it goes on from here",)) from None
    if held is not None and is_mine(held):
        return
    if held is not None:
        if held.since >= ctx.state.get("restore_began", 0):
            raise StepFailed(f"{held.describe()} took {env}'s release lock while the restore ran; it did not"
                             " come from the backup, so it is left alone",
                             ("ask them to release it, then retry this step", "or `release-console lock break`"))
        ctx.log(f"the restore brought back a lock row from the backup ({held.describe()}): replaced by ours",
                "warning")
        services.audit.append(env, "lock-replace", {"op_id": ctx.op_id, "from": held.fields()},
                              "the backup's lock row replaced by the restore's own")
        if not locks.force_release(env, held):
            raise StepFailed("the lock row changed while it was being replaced", ("retry this step",))
        notify_events.tell(services.notifier, [notify_events.broken(
            kind, env, ctx.op_id, f"the restore replaced the lock row its backup brought back:"
            f" {held.describe()}")])
    locks.acquire(env, f"{kind} {ctx.op_id}")
    ctx.log(f"release lock taken again for this {kind}")


def _identity(path: Path) -> dict[str, int]:
    """What tells a file hashed at download from one changed since: size, mtime, inode."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}


def _resumable(partial: Path, size: int) -> tuple[Any, int]:
    """The digest of a partial download's bytes so far, and their count; one longer than the
    artifact is not ours to trust, and starts again."""
    digest = hashlib.sha256()
    if not partial.is_file():
        return digest, 0
    if partial.stat().st_size > size:
        partial.unlink()
        return digest, 0
    with partial.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest, partial.stat().st_size


def _sha256(path: Path, progress: _Progress, ctx: StepContext) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            progress.add(len(chunk))
            ctx.check_cancelled()
    return digest.hexdigest()


class _Progress:
    """Byte progress in MB (kB for small backups), at most a few events a second."""

    def __init__(self, ctx: StepContext, total: int) -> None:
        self.ctx, self.total, self.seen, self.last = ctx, total, 0, 0.0
        self.unit, self.scale = ("MB", 1e6) if total >= 1e6 else ("kB", 1e3)

    def add(self, count: int) -> None:
        self.seen += count
        if time.monotonic() - self.last >= PROGRESS_EVERY_S:
            self.last = time.monotonic()
            self.ctx.progress(round(self.seen / self.scale, 1), round(self.total / self.scale, 1), self.unit)

    def done(self) -> None:
        self.ctx.progress(round(self.total / self.scale, 1), round(self.total / self.scale, 1), self.unit)


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def number(param: Param, params: dict[str, Any], config: ReleaseConfig, kind: Callable[[str], Any]) -> Any:
    """As given, else the config's value that its form field and --help show."""
    raw = param.value(params, config)
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{param.name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{param.name} must be more than 0")
    return value


def _unique(options: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(options))


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {rows} rows" for table, rows in counts.items()) or "no integrity tables found"
