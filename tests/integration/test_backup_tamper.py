"""Tampered backups are refused before anything stops, against the rig's real PostgreSQL with the
local backup directory (and S3 through moto for one case): a `\\!` line planted in a plain
(format 2) dump, a changed artifact with its sha256 recomputed in the manifest, a manifest signed
with another key. Nothing is stopped, no file is created, the live database is unchanged. Plus the
new format's round trip through verify and drill, the working-dir marker rule, a backup without
a migrations folder, and pg_dump's lock wait."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import zstandard
from rig import config_builder as toml
from rig.helpers import scratch_databases

from services import factory
from services.backups.trust import sign
from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import ConfirmationNeeded, Event, LogLine, Outcome, StepFinished, StepStarted
from services.core.operations import Result

KEY = "the-real-signing-key"
ROWS = 300


def release_toml(tmp_path: Path, signed: bool = True, migrations: bool = True, lock_wait: float = 60,
                 s3: dict[str, Any] | None = None) -> Path:
    production = toml.environment(production=True, app_dir="app", stop=["touch", str(tmp_path / "STOPPED")],
                                  start=["touch", str(tmp_path / "STARTED")])
    store = toml.backup(signing_key=toml.secret("SIGNING_KEY") if signed else None, lock_wait_timeout_s=lock_wait,
                        s3=s3)
    folder = "app/prisma/migrations" if migrations else "nowhere/migrations"
    return toml.release({"production": production}, backup=store,
                        migrations={"dir": folder, "integrity_tables": ["Ingredient"]}).write(tmp_path / "release.toml")


class Env:
    def __init__(self, tmp_path: Path, dsn: str, pg_dsn: str) -> None:
        self.tmp_path, self.dsn, self.pg_dsn = tmp_path, dsn, pg_dsn
        app = tmp_path / "app"
        (app / "prisma" / "migrations").mkdir(parents=True)
        (app / "prisma" / "migrations" / "migration_lock.toml").write_text('provider = "postgresql"\n')
        (app / "package.json").write_text('{"name": "food-management"}\n')
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute('CREATE TABLE "Ingredient" (id int PRIMARY KEY, name text NOT NULL)')
            conn.execute(f"""INSERT INTO "Ingredient" SELECT g, 'row ' || g FROM generate_series(1, {ROWS}) g""")

    def services(self, key: str | None = KEY, **options: Any) -> factory.Services:
        env = {"TEST_DB": self.dsn, "SIGNING_KEY": key or "", "AWS_KEY": "testing", "AWS_SECRET": "testing"}
        config = config_module.load(release_toml(self.tmp_path, signed=key is not None, **options), env)
        return factory.build(config, state=self.tmp_path / "state")

    def live(self) -> tuple[int, str]:
        """(rows, the name of row 1): the marker a restore would change."""
        with psycopg.connect(self.dsn) as conn:
            count = conn.execute('SELECT count(*) FROM "Ingredient"').fetchone()
            name = conn.execute('SELECT name FROM "Ingredient" WHERE id = 1').fetchone()
        return int(count[0]) if count else 0, str(name[0]) if name else ""

    def files(self) -> dict[str, bytes]:
        """Everything on disk outside the backup store: the app dir, the state dir, the markers; not the
        journal, the audit and the operation's saved log, which the runner always writes."""
        found = {}
        for path in sorted(self.tmp_path.rglob("*")):
            relative = path.relative_to(self.tmp_path)
            written = (".sqlite3", "-wal", "-shm", ".jsonl", ".head")
            if relative.parts[0] == "backups" or relative.name.endswith(written) or "build-logs" in relative.parts:
                continue
            found[str(relative)] = path.read_bytes() if path.is_file() else b"<dir>"
        return found

    def scratch_databases(self) -> list[str]:
        return scratch_databases(self.pg_dsn, of=self.dsn)


class Run:
    def __init__(self, services: factory.Services, kind: str, reason: str | None = None, **params: Any) -> None:
        self.events: list[Event] = []
        self.asked: list[ConfirmationNeeded] = []

        def confirm(question: ConfirmationNeeded) -> str | None:
            self.asked.append(question)
            return reason if question.free_text else "production"

        op = build_operation(services, kind, "production", params)
        self.result: Result = services.runner.run(op, self.events.append, confirm)

    def started(self) -> list[str]:
        return [e.step_id for e in self.events if isinstance(e, StepStarted)]

    def detail(self, step: str) -> str:
        return next(e.detail for e in self.events if isinstance(e, StepFinished) and e.step_id == step)

    def lines(self) -> str:
        return "\n".join(e.text for e in self.events if isinstance(e, LogLine))


@pytest.fixture
def env(tmp_path: Path, pg_database: str, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Env:
    for name, value in {"TEST_DB": pg_database, "SIGNING_KEY": KEY, "AWS_KEY": "testing",
                        "AWS_SECRET": "testing"}.items():
        monkeypatch.setenv(name, value)  # the walkthrough's validate step loads the config again
    return Env(tmp_path, pg_database, pg_dsn)


def take(services: factory.Services) -> tuple[str, Path]:
    run = Run(services, "backup")
    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    backup_id = run.detail("backup").removeprefix("backup ").removesuffix(" complete")
    return backup_id, services.store.root / "production" / backup_id  # type: ignore[attr-defined]


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


def plant_meta_command(env: Env, folder: Path, marker: Path) -> None:
    """A format-2 (older) backup: plain SQL from the real pg_dump, gzip, with a `\\!` line planted in it;
    its manifest's checksums are right (recomputed), and it is unsigned, as older backups are."""
    plain = subprocess.run(["/usr/lib/postgresql/15/bin/pg_dump", "--format=plain", "--clean", "--if-exists",
                            "--no-owner", "--dbname", env.dsn], capture_output=True, check=True).stdout
    assert b'COPY public."Ingredient"' in plain
    plain = plain.replace(b"SET statement_timeout = 0;\n",
                          b"SET statement_timeout = 0;\n\\! touch " + str(marker).encode() + b"\n", 1)
    data = gzip.compress(plain)
    for old in folder.glob("db.pgdump.*"):
        old.unlink()
    (folder / "db.sql.gz").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    artifacts = {k: v for k, v in manifest["artifacts"].items() if not k.startswith("db.")}
    artifacts["db.sql.gz"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "compression": "gzip"}
    manifest = {k: v for k, v in manifest.items() if k != "signature"}
    write_manifest(folder, {**manifest, "format": 2, "compression": "gzip", "artifacts": artifacts})


def change_artifact(folder: Path) -> None:
    """The dump replaced (here: an extra zstd frame appended) and its size and sha256 recomputed."""
    dump = next(folder.glob("db.pgdump.*"))
    data = dump.read_bytes() + zstandard.ZstdCompressor().compress(b"tampered")
    dump.write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["artifacts"][dump.name].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    write_manifest(folder, manifest)


def sign_with_another_key(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    write_manifest(folder, sign(manifest, "an-attackers-key"))


TAMPER: dict[str, tuple[Callable[[Env, Path, Path], None], str, str | None]] = {
    # case: (how, what the refusal says, the override reason given)
    "a \\! line planted in a plain format-2 dump": (plant_meta_command, "holds a psql meta-command", "old backup"),
    "a changed artifact with a recomputed sha256": (lambda env, folder, marker: change_artifact(folder),
                                                    "signature does not match", None),
    "a manifest signed with another key": (lambda env, folder, marker: sign_with_another_key(folder),
                                           "signature does not match", None),
}


@pytest.mark.parametrize("kind", ["restore", "restore-drill", "verify", "migrate-rollback"])
@pytest.mark.parametrize("case", sorted(TAMPER))
def test_a_tampered_backup_is_refused_before_anything_stops(env: Env, case: str, kind: str) -> None:
    services = env.services()
    backup_id, folder = take(services)
    marker = env.tmp_path / "PWNED"
    tamper, refusal, reason = TAMPER[case]
    tamper(env, folder, marker)
    with psycopg.connect(env.dsn, autocommit=True) as conn:  # live data that differs from the backup
        conn.execute("""UPDATE "Ingredient" SET name = 'live marker' WHERE id = 1""")
    live, before = env.live(), env.files()

    run = Run(env.services(), kind, reason=reason, backup_id=backup_id)

    assert run.result.outcome is Outcome.FAILED, run.result.detail
    assert refusal in run.result.detail
    assert run.result.failed_step in ("download", "verify", "checksums")
    assert "stop" not in run.started() and "restore-db" not in run.started() and "restore" not in run.started()
    assert not (env.tmp_path / "STOPPED").exists() and not marker.exists()
    assert env.live() == live == (ROWS, "live marker")  # the live database is unchanged
    assert env.files() == before  # no file created: no working copy, the app dir as it was
    assert env.scratch_databases() == []
    if reason is None:  # refused, and nothing overridden: the audit says refused, with no reason
        assert any(q.free_text for q in run.asked)


def test_an_unsigned_backup_in_production_needs_an_audited_reason(env: Env) -> None:
    backup_id, _ = take(env.services(key=None))  # no key configured: an unsigned backup, with a warning
    services = env.services()
    refused = Run(services, "verify", reason=None, backup_id=backup_id)
    assert refused.result.outcome is Outcome.FAILED and "is not signed" in refused.result.detail
    assert "--reason" in " ".join(refused.events[-1].next_options)  # type: ignore[attr-defined]

    overridden = Run(services, "verify", reason="restored on purpose: key rotated", backup_id=backup_id)
    assert overridden.result.outcome is Outcome.SUCCEEDED, overridden.result.detail
    assert "overridden: restored on purpose: key rotated" in overridden.detail("checksums")
    last = [r for r in services.audit.records() if r["action"] == "verify"][-1]
    assert last["override_reason"] == "restored on purpose: key rotated"


def test_the_new_format_round_trips_through_verify_and_drill_signed(env: Env) -> None:
    services = env.services()
    backup_id, folder = take(services)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == 3 and manifest["signature"]["alg"] == "hmac-sha256"
    assert sorted(p.name for p in folder.iterdir()) == ["app.tar.gz", "db.pgdump.zst", "manifest.json"]

    verify = Run(services, "verify", backup_id=backup_id)
    assert verify.result.outcome is Outcome.SUCCEEDED, verify.result.detail
    assert [q.expected for q in verify.asked] == ["production"]  # it restores: production types the name
    assert verify.detail("checksums") == "2 artifacts match the manifest (signed)"
    assert "with pg_restore -j" in verify.lines()

    drill = Run(services, "restore-drill", backup_id=backup_id)
    assert drill.result.outcome is Outcome.SUCCEEDED, drill.result.detail
    assert drill.detail("restore-db") == "1 table restored and read; dropped"
    assert f"Ingredient {ROWS} rows" in drill.lines()
    assert not (env.tmp_path / "STOPPED").exists() and env.scratch_databases() == []
    assert not list((env.tmp_path / "state" / "recovery").iterdir())  # its working copy removed


def test_the_walkthrough_restores_the_new_format_in_one_transaction(env: Env) -> None:
    services = env.services()
    backup_id, _ = take(services)
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        conn.execute('DELETE FROM "Ingredient" WHERE id > 100')
    run = Run(services, "restore", backup_id=backup_id, health_tries="1", health_interval_s="0.1")
    assert run.started()[:8] == ["choose", "confirm", "download", "verify", "stop", "restore-db", "restore-files",
                                 "validate"]
    assert run.detail("restore-db") == f"restored {backup_id}"
    assert "with pg_restore in one transaction" in run.lines()
    assert env.live() == (ROWS, "row 1")


def test_a_work_dir_the_console_did_not_create_is_refused_and_kept(env: Env) -> None:
    services = env.services()
    backup_id, _ = take(services)
    precious = env.tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me\n")
    run = Run(services, "restore-drill", backup_id=backup_id, work_dir=str(precious))
    assert run.result.outcome is Outcome.FAILED and run.result.failed_step == "choose"
    assert "was not created by the console" in run.result.detail
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]

    fresh = env.tmp_path / "fresh-work"
    again = Run(services, "restore-drill", backup_id=backup_id, work_dir=str(fresh))
    assert again.result.outcome is Outcome.SUCCEEDED, again.result.detail
    assert not fresh.exists()  # made by the console (its marker), so removed by it


def test_a_backup_without_the_migrations_folder_records_the_head_as_unknown(env: Env) -> None:
    services = env.services(migrations=False)
    run = Run(services, "backup")
    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert "WARNING: migration head unknown, recorded as such" in run.lines()
    backup_id = run.detail("backup").removeprefix("backup ").removesuffix(" complete")
    manifest = json.loads((services.store.root / "production" / backup_id / "manifest.json").read_text())  # type: ignore[attr-defined]
    assert manifest["migration_head"] is None


def test_pg_dump_waits_for_a_table_lock_only_as_long_as_configured(env: Env) -> None:
    services = env.services(lock_wait=1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(env.dsn) as conn:
            conn.execute('LOCK TABLE "Ingredient" IN ACCESS EXCLUSIVE MODE')
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        began = time.monotonic()
        run = Run(services, "backup")
        took = time.monotonic() - began
    finally:
        release.set()
        holder.join()
    assert run.result.outcome is Outcome.FAILED and took < 30, run.lines()
    assert "could not get a table lock within 1s" in run.result.detail
    assert "removed the partial backup" in run.lines()
    assert not any((services.store.root / "production").rglob("manifest.json"))  # type: ignore[attr-defined]


def test_a_manifest_signed_with_another_key_in_s3_is_refused(env: Env, s3_endpoint: str, s3_client: Any,
                                                              bucket_name: str) -> None:
    s3_client.create_bucket(Bucket=bucket_name)
    s3 = toml.s3_store(bucket_name, prefix="t/", endpoint_url=s3_endpoint, access_key_id=toml.secret("AWS_KEY"),
                       secret_access_key=toml.secret("AWS_SECRET"))
    services = env.services(s3=s3)
    run = Run(services, "backup")
    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    backup_id = run.detail("backup").removeprefix("backup ").removesuffix(" complete")
    key = f"t/production/{backup_id}/manifest.json"
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    s3_client.put_object(Bucket=bucket_name, Key=key, Body=json.dumps(sign(manifest, "another-key")).encode())
    before = env.files()
    refused = Run(services, "restore", backup_id=backup_id)
    assert refused.result.outcome is Outcome.FAILED and refused.result.failed_step == "download"
    assert "signature does not match" in refused.result.detail
    assert env.files() == before and not (env.tmp_path / "STOPPED").exists()
    shutil.rmtree(env.tmp_path / "backups", ignore_errors=True)
