"""Backups against the rig's real PostgreSQL, into a LocalStore in tmp_path: zstd and gzip dumps,
the app files archive, verify (checksums and a trial restore), a corrupted or truncated artifact,
a full disk, a pg_dump older than the server, kill -9 mid-backup, and the memory a backup takes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import zstandard
from rig import config_builder as toml
from rig.helpers import scratch_databases, wait_until
from rig.old_backups import plant_history

from services import factory
from services.adapters.app_files import DirectoryAppFiles
from services.adapters.postgres import PG_DUMP_ENV
from services.backups.catalog import list_backups
from services.backups.verify import trial_restore
from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import ConfirmationNeeded, Event, LogLine, Outcome, Progress, StepFinished, StepStatus
from services.core.operations import Result, StepFailed

REPO = Path(__file__).resolve().parents[2]
SCHEMA = """
CREATE TABLE "Category" ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL);
CREATE TABLE "Ingredient" ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL, "categoryId" INTEGER NOT NULL);
CREATE TABLE "User" ("id" SERIAL PRIMARY KEY, "email" TEXT NOT NULL UNIQUE);
INSERT INTO "Category" ("name") SELECT 'c' || g FROM generate_series(1, 5) g;
INSERT INTO "Ingredient" ("name", "categoryId") SELECT 'i' || g, 1 + g % 5 FROM generate_series(1, 200) g;
INSERT INTO "User" ("email") SELECT 'u' || g || '@example.com' FROM generate_series(1, 30) g;
"""
COUNTS = {"Ingredient": 200, "Category": 5, "User": 30}
INIT = 'CREATE TABLE "Note" ("id" SERIAL PRIMARY KEY, "text" TEXT);\n'


def bulk(dsn: str, rows: int, table: str = "Bulk") -> None:
    """Rows that do not compress trivially: two random md5s each (~70 bytes of SQL a row)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, a text, b text)')
        conn.execute(f'INSERT INTO "{table}" SELECT g, md5(random()::text), md5(random()::text)'
                     f" FROM generate_series(1, {rows}) g")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    files = {
        "package.json": '{"name": "food-management"}\n', "src/app/page.tsx": "export default 1\n",
        "public/logo.svg": "<svg/>\n", "prisma/schema.prisma": "// schema\n",
        "node_modules/react/index.js": "x", ".next/cache/a": "x", ".git/HEAD": "ref: main\n",
        "packages/ui/node_modules/left-pad/index.js": "x", "packages/ui/.next/b": "x", "packages/ui/.git/c": "x",
        "packages/ui/index.ts": "export {}\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    migrations = root / "prisma" / "migrations"
    (migrations / "20240105093000_init").mkdir(parents=True)
    (migrations / "migration_lock.toml").write_text('provider = "postgresql"\n')
    (migrations / "20240105093000_init" / "migration.sql").write_text(INIT)
    return root


def release_toml(tmp_path: Path, compression: str = "zstd", local_dir: str = "backups", app_dir: bool = True,
                 scratch: bool = False, prune_after: bool | None = None) -> Path:
    staging = toml.environment(app_dir="app" if app_dir else None)
    store = toml.backup(local_dir, compression=compression, prune_after=prune_after,
                        scratch_database_url=toml.secret("SCRATCH_DB") if scratch else None)
    return toml.release({"staging": staging}, backup=store, migrations={"dir": "app/prisma/migrations"},
                        ).write(tmp_path / "release.toml")


Build = Callable[..., factory.Services]


@pytest.fixture
def build(tmp_path: Path, pg_database: str, pg_dsn: str, app_dir: Path) -> Build:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(SCHEMA)

    def make(**options: Any) -> factory.Services:
        config = config_module.load(release_toml(tmp_path, **options), {"TEST_DB": pg_database, "SCRATCH_DB": pg_dsn})
        return factory.build(config, sandbox_mode=False, state=tmp_path / "state")

    return make


class Run:
    def __init__(self, services: factory.Services, kind: str, answer: str | None = "yes", **params: Any) -> None:
        self.events: list[Event] = []
        self.asked: list[ConfirmationNeeded] = []

        def confirm(question: ConfirmationNeeded) -> str | None:
            self.asked.append(question)
            return answer

        op = build_operation(services, kind, "staging", params)
        self.result: Result = services.runner.run(op, self.events.append, confirm)

    def lines(self, step: str | None = None) -> list[str]:
        return [e.text for e in self.events if isinstance(e, LogLine) and step in (None, e.step_id)]

    def detail(self, step: str) -> str:
        return next(e.detail for e in self.events if isinstance(e, StepFinished) and e.step_id == step)


def backup(services: factory.Services) -> tuple[str, Path, dict[str, Any]]:
    run = Run(services, "backup")
    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    backup_id = run.detail("backup").removeprefix("backup ").removesuffix(" complete")
    folder = backup_dir(services) / "staging" / backup_id
    return backup_id, folder, json.loads((folder / "manifest.json").read_text())


def backup_dir(services: factory.Services) -> Path:
    return services.store.root  # type: ignore[attr-defined, no-any-return]


# --- the dump: zstd and gzip ----------------------------------------------------------------


@pytest.mark.parametrize(("compression", "name"), [("zstd", "db.pgdump.zst"), ("gzip", "db.pgdump.gz")])
def test_backup_streams_a_compressed_dump_and_writes_the_manifest_last(
        build: Build, compression: str, name: str) -> None:
    services = build(compression=compression)
    run = Run(services, "backup")
    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    backup_id = run.detail("backup").removeprefix("backup ").removesuffix(" complete")
    folder = backup_dir(services) / "staging" / backup_id
    assert sorted(p.name for p in folder.iterdir()) == sorted([name, "app.tar.gz", "manifest.json"])

    data = (folder / name).read_bytes()
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read() if compression == "zstd" \
        else gzip.decompress(data)
    # A custom-format archive (pg_dump -Fc -Z0): pg_restore reads it, psql never sees it.
    assert plain.startswith(b"PGDMP")
    assert b'CREATE TABLE public."Ingredient"' in plain and b"u30@example.com" in plain

    manifest = json.loads((folder / "manifest.json").read_text())
    artifact = manifest["artifacts"][name]
    assert artifact == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "compression": compression,
                        "dump_size": len(plain), "dump_format": "custom"}
    assert manifest["format"] == 3 and "signature" not in manifest  # no signing_key in this config
    assert any("this backup is UNSIGNED" in line for line in run.lines("backup"))
    assert manifest["compression"] == compression and manifest["id"] == backup_id and manifest["env"] == "staging"
    assert manifest["server_version"].startswith("15.") and manifest["pg_dump_version"].startswith("pg_dump")
    assert manifest["version"] is None  # no deploy target: the deployed version is unknown
    assert manifest["migration_head"] is None  # nothing applied through Prisma in this database
    assert manifest["created_at"].endswith("Z") and 0 < manifest["duration_s"] < 60
    # Progress in MB, and the rate in the log.
    progress = [e for e in run.events if isinstance(e, Progress)]
    assert progress and progress[-1].unit == "MB" and progress[-1].done == progress[-1].total > 0
    assert any("MB/s" in line for line in run.lines("backup"))
    entry = list_backups(services, "staging")[0]
    assert entry.id == backup_id and entry.complete


def test_migrate_backs_up_the_database_only_and_records_the_head(build: Build) -> None:
    services = build()
    run = Run(services, "migrate")
    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    backup_id = run.detail("backup").removeprefix("backup ")
    manifest = json.loads((backup_dir(services) / "staging" / backup_id / "manifest.json").read_text())
    assert list(manifest["artifacts"]) == ["db.pgdump.zst"]
    assert manifest["migration_head"] is None  # taken before the apply
    _, _, after = backup(services)
    assert after["migration_head"] == "20240105093000_init"


# --- retention after each backup ------------------------------------------------------------


@pytest.mark.parametrize("prune_after", [None, False])  # None: the default, on
def test_a_backup_then_deletes_those_past_retention_keeping_pinned_and_newest(
        build: Build, prune_after: bool | None) -> None:
    services = build(prune_after=prune_after)
    assert services.config.backup.prune_after is (prune_after is None)
    planted = plant_history(services.store, "staging", time.time())
    # A backup whose files were copied since (new mtimes): its manifest's time still ages it.
    for path in (backup_dir(services) / "staging" / planted["gone-60"]).iterdir():
        os.utime(path)

    run = Run(services, "backup")

    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    new = run.detail("backup").removeprefix("backup ").removesuffix(" complete")
    left = {b.id for b in list_backups(services, "staging")}
    if prune_after is False:
        assert run.asked == []
        assert left == {new, *planted.values()}
        assert run.detail("retention").startswith("skipped: [backup] prune_after = false")
        return
    # Deleting backups is destructive: asked (staging: a yes) once the dry run lists them.
    [question] = run.asked
    assert question.step_id == "retention" and question.expected is None
    assert question.prompt.startswith("Delete 2 backups past 30 days from local in staging?")
    assert f"staging/{planted['gone-50']}, staging/{planted['gone-60']}" in question.prompt
    assert left == {new, planted["pinned-45"], planted["newest-40"], planted["recent-10"]}
    assert not (backup_dir(services) / "staging" / planted["gone-60"]).exists()  # its folder is gone too
    lines = run.lines("retention")
    assert lines[:6] == [
        f"keep staging/{new} in local (0 days old): one of the newest 3",
        f"keep staging/{planted['recent-10']} in local (10 days old): one of the newest 3",
        f"keep staging/{planted['newest-40']} in local (40 days old): one of the newest 3",
        f"keep staging/{planted['pinned-45']} in local (45 days old): pinned to v1.3.9",
        f"would delete staging/{planted['gone-50']} in local (50 days old)",
        f"would delete staging/{planted['gone-60']} in local (60 days old)",
    ]
    assert sorted(lines[6:]) == sorted(f"deleted staging/{planted[k]} from local" for k in ("gone-50", "gone-60"))
    assert run.detail("retention") == "2 of 2 past 30 days deleted from local"
    [audited] = [r for r in services.audit.records() if r["action"] == "backup-delete"]
    assert sorted(audited["params"]["backups"]) == sorted(f"local:{planted[k]}" for k in ("gone-50", "gone-60"))


def test_a_declined_retention_after_a_backup_keeps_every_backup(build: Build) -> None:
    services = build()
    planted = plant_history(services.store, "staging", time.time())

    run = Run(services, "backup", answer=None)

    assert run.result.outcome is Outcome.DECLINED, run.result.detail
    assert len(run.asked) == 1
    new = run.detail("backup").removeprefix("backup ").removesuffix(" complete")
    assert run.result.detail.startswith(f"backup {new} is complete and kept; nothing deleted: not confirmed")
    assert {b.id for b in list_backups(services, "staging")} == {new, *planted.values()}
    assert next(b for b in list_backups(services, "staging") if b.id == new).complete
    assert not [r for r in services.audit.records() if r["action"] == "backup-delete"]


# --- app files ------------------------------------------------------------------------------


def test_app_files_archive_skips_node_modules_next_and_git_at_any_depth(build: Build, tmp_path: Path) -> None:
    services = build()
    _, folder, manifest = backup(services)
    with tarfile.open(folder / "app.tar.gz") as tar:
        files = sorted(m.name for m in tar.getmembers() if m.isfile())
    assert files == ["package.json", "packages/ui/index.ts", "prisma/migrations/20240105093000_init/migration.sql",
                     "prisma/migrations/migration_lock.toml", "prisma/schema.prisma", "public/logo.svg",
                     "src/app/page.tsx"]
    assert manifest["artifacts"]["app.tar.gz"]["files"] == len(files)

    into = tmp_path / "restored"
    lines: list[str] = []
    with (folder / "app.tar.gz").open("rb") as source:
        DirectoryAppFiles(into, ["."]).restore(source, lines.append)
    assert (into / "src/app/page.tsx").read_text() == "export default 1\n"
    assert not (into / "node_modules").exists() and lines == [f"restored 7 app files into {into}"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".restored")] == []  # no staging dir left


@pytest.mark.parametrize("evil", ["../escaped.txt", "link-out"])
def test_app_files_restore_refuses_paths_out_of_the_app_dir(tmp_path: Path, evil: str) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo(evil)
        if evil == "link-out":
            info.type, info.linkname = tarfile.SYMTYPE, "../../escaped.txt"
        else:
            info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    archive.seek(0)
    with pytest.raises(StepFailed, match="refused to restore the app files archive"):
        DirectoryAppFiles(tmp_path / "into", ["."]).restore(archive, print)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "into" / "link-out").exists()


def test_app_files_restore_refuses_absolute_names(tmp_path: Path) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("/etc/escaped.conf")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    archive.seek(0)
    with pytest.raises(StepFailed, match="absolute"):  # the console's own checks: never stripped and kept
        DirectoryAppFiles(tmp_path / "into", ["."]).restore(archive, print)
    assert not (tmp_path / "into").exists() and os.listdir(tmp_path) == []


def test_without_app_dir_the_backup_is_database_only(build: Build) -> None:
    services = build(app_dir=False)
    run = Run(services, "backup")
    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert "no app_dir configured: database only" in run.lines("backup")
    with pytest.raises(StepFailed, match="no app_dir configured for staging"):
        services.files("staging").archive(io.BytesIO(), [])


# --- verify ---------------------------------------------------------------------------------


def test_verify_checks_restores_into_a_scratch_database_and_records_it(build: Build, pg_dsn: str,
                                                                       pg_database: str) -> None:
    services = build(scratch=True)
    backup_id, folder, _ = backup(services)
    run = Run(services, "verify")
    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert any(line.startswith("db.pgdump.zst: sha256 ") and "matches" in line for line in run.lines("checksums"))
    for table, count in COUNTS.items():
        assert f"{table:<12} {count:>9} rows" in run.lines("trial")
    assert 'SELECT * FROM "Ingredient" LIMIT 1 read 1 row' in run.detail("trial")
    verified = json.loads((folder / "verified.json").read_text())
    assert verified["ok"] is True and verified["counts"] == COUNTS and verified["error"] == ""
    assert 0 < verified["restore_s"] < 60 and abs(verified["when"] - time.time()) < 120
    entry = list_backups(services, "staging")[0]
    assert entry.id == backup_id and entry.verified_at == verified["when"] and entry.restore_s == verified["restore_s"]
    assert scratch_databases(pg_dsn, of=pg_database) == []  # dropped


@pytest.mark.parametrize("damage", ["flip a byte", "truncate"])
def test_verify_refuses_a_corrupted_or_truncated_artifact(build: Build, pg_dsn: str, pg_database: str,
                                                          damage: str) -> None:
    services = build()
    bulk(services.config.environment("staging").database_url.get_secret_value(), 20_000)
    backup_id, folder, _ = backup(services)
    dump = folder / "db.pgdump.zst"
    data = bytearray(dump.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0x01
    else:
        del data[len(data) * 3 // 4:]
    dump.write_bytes(bytes(data))

    run = Run(services, "verify")
    assert run.result.outcome is Outcome.FAILED and run.result.failed_step == "checksums"
    assert "checksum mismatch: db.pgdump.zst" in run.result.detail and "refusing to restore it" in run.result.detail
    verified = json.loads((folder / "verified.json").read_text())
    assert verified["ok"] is False and "checksum mismatch" in verified["error"]
    assert list_backups(services, "staging")[0].verified_at is None
    # Restores re-check as they stream: even past the checksum step, nothing is committed.
    with pytest.raises(StepFailed, match="checksum mismatch|damaged"):
        trial_restore(services, "staging", backup_id, print)
    assert scratch_databases(pg_dsn, of=pg_database) == []
    rollback = Run(services, "migrate-rollback")
    assert rollback.result.outcome is Outcome.FAILED and rollback.result.failed_step == "verify"
    assert "checksum mismatch" in rollback.result.detail


# --- failures: a full disk, an old pg_dump, kill -9 -----------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (needs root, as CI runs), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_fails_clearly_and_leaves_nothing(build: Build, small_disk: Path, pg_database: str) -> None:
    services = build(local_dir=str(small_disk))
    bulk(pg_database, 100_000)  # ~7 MB of SQL, ~3.7 MB in zstd: more than the disk holds
    run = Run(services, "backup")
    assert run.result.outcome is Outcome.FAILED
    assert f"disk full at {small_disk}: " in run.result.detail
    assert "MB written; free space or choose another backup dir" in run.result.detail
    assert [p for p in small_disk.rglob("*") if p.is_file()] == []  # the partial file is gone, no manifest
    assert [b for b in list_backups(services, "staging") if b.complete] == []
    # pg_dump was stopped, not left streaming into nothing: its session on this database ends (the
    # server sees the closed socket a moment after the kill; other tests' dumps are of other databases).
    with psycopg.connect(pg_database, autocommit=True) as conn:
        wait_until(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'"
                                        " AND datname = current_database()").fetchone() == (0,),
                   timeout=30, interval=0.1, what="pg_dump's session on this database gone")


def test_a_pg_dump_older_than_the_server_is_refused_before_dumping(
        build: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only PostgreSQL 15 is installable on this machine kind, so the "older pg_dump" is a stand-in
    # script that answers --version as pg_dump 13 would, and records it if it is ever asked to dump.
    fake = tmp_path / "pg_dump13"
    fake.write_text(f"#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) 13.14'; exit 0; fi\n"
                    f"touch {tmp_path / 'dumped'}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv(PG_DUMP_ENV, str(fake))
    services = build()
    run = Run(services, "backup")
    assert run.result.outcome is Outcome.FAILED
    assert "version 13.14 but the server runs PostgreSQL 15." in run.result.detail
    assert "pg_dump 13 cannot dump a newer server; nothing was dumped" in run.result.detail
    assert not (tmp_path / "dumped").exists()
    assert not backup_dir(services).exists() or not any(backup_dir(services).rglob("*"))


CHILD = """
import json, sys
from pathlib import Path
from services import factory
from services.core import config
from services.catalog import build_operation
from services.core.events import LogLine, Progress

services = factory.build(config.load(Path(sys.argv[1]), {"TEST_DB": sys.argv[2]}), state=Path(sys.argv[3]))

def emit(event):
    if isinstance(event, (LogLine, Progress)):
        print(json.dumps({"type": type(event).__name__, **{k: v for k, v in vars(event).items()}}), flush=True)

services.runner.run(build_operation(services, "backup", "staging", {}), emit, lambda q: "yes")
"""

# A real pg_dump, throttled to ~4 MB/s so the kill lands while the dump streams.
THROTTLED = """#!{python}
import os, subprocess, sys, time
real = "/usr/lib/postgresql/15/bin/pg_dump"
if sys.argv[1:] == ["--version"]:
    os.execv(real, [real, "--version"])
dump = subprocess.Popen([real, *sys.argv[1:]], stdout=subprocess.PIPE)
for chunk in iter(lambda: dump.stdout.read(1 << 16), b""):
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    time.sleep(0.016)
sys.exit(dump.wait())
"""


def test_kill_9_mid_backup_leaves_no_complete_backup_and_the_journal_shows_it(
        build: Build, tmp_path: Path, pg_database: str) -> None:
    services = build()
    bulk(pg_database, 200_000)  # ~14 MB of SQL: over 3 s at the throttled rate
    throttled = tmp_path / "pg_dump_throttled"
    throttled.write_text(THROTTLED.format(python=sys.executable))
    throttled.chmod(0o755)
    env = {**os.environ, PG_DUMP_ENV: str(throttled), "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "release.toml"), pg_database, str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO, start_new_session=True)
    assert child.stdout is not None
    try:
        reports: list[dict[str, Any]] = []
        for line in child.stdout:  # two progress reports: the dump is well under way
            event = json.loads(line)
            if event["type"] == "Progress":
                reports.append(event)
            if len(reports) == 2:
                break
        assert len(reports) == 2, child.stderr.read().decode() if child.stderr else ""
        assert 0 < reports[-1]["done"] < reports[-1]["total"]  # MB dumped of the estimate: mid-dump
        # The artifact is being written under its temporary name (zstd may still hold its first block).
        assert list((backup_dir(services) / "staging").glob("*/db.pgdump.zst.partial"))
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        try:
            os.killpg(child.pid, signal.SIGKILL)  # the orphaned throttle and pg_dump
        except ProcessLookupError:
            pass
        child.wait(timeout=10)

    assert list((backup_dir(services) / "staging").glob("*/manifest.json")) == []
    assert [b for b in list_backups(services, "staging") if b.complete] == []
    restarted = build()  # the next start
    interrupted = restarted.journal.interrupted()
    assert [(r.kind, r.env, r.pid) for r in interrupted] == [("backup", "staging", child.pid)]
    assert interrupted[0].steps[0].status is StepStatus.RUNNING
    # A new backup works beside the leftover .partial, which the catalog ignores.
    backup_id, _, _ = backup(restarted)
    assert [b.id for b in list_backups(restarted, "staging") if b.complete] == [backup_id]


# --- memory ---------------------------------------------------------------------------------

MEASURE = """
import json, resource, sys
from pathlib import Path
from services import factory
from services.core import config
from services.catalog import build_operation

services = factory.build(config.load(Path(sys.argv[1]), {"TEST_DB": sys.argv[2]}), state=Path(sys.argv[3]))
services.database("staging").status()  # connections and imports warmed up before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = services.runner.run(build_operation(services, "backup", "staging", {}), lambda e: None, lambda q: "yes")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": result.outcome.value, "detail": result.detail, "growth_kb": after - before,
                  "peak_kb": after}))
"""


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_a_50_mb_backup_keeps_memory_flat(build: Build, tmp_path: Path, pg_database: str, compression: str) -> None:
    services = build(compression=compression, app_dir=False)
    bulk(pg_database, 700_000)  # ~50 MB of SQL
    answer = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "release.toml"), pg_database, str(tmp_path / "state")],
        capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, timeout=240, check=False)
    assert answer.returncode == 0, answer.stderr.decode()
    measured = json.loads(answer.stdout)
    assert measured["outcome"] == "succeeded", measured["detail"]
    manifest = json.loads(next((backup_dir(services) / "staging").glob("*/manifest.json")).read_text())
    assert manifest["artifacts"][f"db.pgdump.{'zst' if compression == 'zstd' else 'gz'}"]["dump_size"] > 45e6
    assert measured["growth_kb"] < 60 * 1024, textwrap.shorten(str(measured), 200)
