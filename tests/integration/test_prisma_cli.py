"""Our Prisma migrations against the real Prisma CLI, on the rig's PostgreSQL.

Proves that either tool continues the other's history: `prisma migrate deploy`'s database reads
right through PostgresMigrations.status(), a database migrated by PostgresMigrations.apply() is
continued by `prisma migrate deploy` (only the remaining migrations, same schema, no failure) and
`prisma migrate status` agrees with ours, failed/rolled-back rows cross over both ways, and our
advisory lock holds Prisma off.

The CLI is `tests/rig/run`'s install (RC_PRISMA_CLI): prisma 6 with its WASM schema engine
over @prisma/adapter-pg (tests/fixtures/prisma/prisma.config.ts), the same prisma-engines code
as the native engine, which cannot be downloaded here. Known gaps of that path, not ours:
adapter-pg runs a migration statement by statement (split on ';'), so a failing Prisma
migration is not atomic, and `migrate diff`/`db pull` against a database are unsupported, so
drift is checked by comparing pg_dump schemas instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr
from rig.helpers import wait_until, write_migration

from services.adapters import prisma
from services.adapters.postgres import PostgresMigrations
from services.core.operations import StepFailed

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "prisma"
MIGRATIONS = sorted(p.name for p in (FIXTURE / "migrations").iterdir() if p.is_dir())
PG_DUMP = Path("/usr/lib/postgresql/15/bin/pg_dump")
CLI_TIMEOUT_S = 90  # `migrate deploy` lingers ~10 s after its work: a lock-timeout timer of the WASM engine
PENDING = r"Following migrations? ha(ve|s) not yet been applied"
LOCK_MESSAGE = "Timed out trying to acquire a postgres advisory lock"


def test_fixture_has_four_migrations() -> None:
    assert MIGRATIONS == ["20240115093000_init", "20240122141500_add_ingredients",
                          "20240205110000_add_users", "20240219160000_ingredient_stock"]


# ----------------------------------------------------------------- helpers --


@pytest.fixture(scope="module")
def prisma_cli() -> Path:
    cli = os.environ.get("RC_PRISMA_CLI")
    if not cli:
        pytest.fail("RC_PRISMA_CLI is not set: run via `bash tests/rig/run`, which installs the Prisma CLI"
                    " with npm into /tmp/release-console-rig-shared/prisma (see its npm.log if that failed)",
                    pytrace=False)
    path = Path(cli)
    if not os.access(path, os.X_OK):
        pytest.fail(f"RC_PRISMA_CLI={cli} is not an executable; delete /tmp/release-console-rig-shared/prisma"
                    " and run `bash tests/rig/run` again", pytrace=False)
    return path


@pytest.fixture
def project(tmp_path: Path, prisma_cli: Path) -> Path:
    """The fixture Prisma project, copied, beside the CLI's node_modules (prisma.config.ts imports from it)."""
    app = tmp_path / "app"
    shutil.copytree(FIXTURE, app)
    (app / "node_modules").symlink_to(prisma_cli.parent.parent, target_is_directory=True)  # node_modules/.bin/prisma
    return app


@pytest.fixture
def other_database(pg_dsn: str) -> Iterator[str]:
    """A second fresh database (the pg_database fixture gives one per test)."""
    name = f"rc_prisma_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield urllib.parse.urlsplit(pg_dsn)._replace(path=f"/{name}").geturl()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run_prisma(cli: Path, app: Path, dsn: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": dsn, "CHECKPOINT_DISABLE": "1", "PRISMA_HIDE_UPDATE_MESSAGE": "1",
           "NO_COLOR": "1", "FORCE_COLOR": "0"}
    done = subprocess.run([str(cli), *args], cwd=app, env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"prisma {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return done


def output(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


def names_after(text: str, header: str) -> list[str]:
    """The migration names Prisma lists under a header line (a regex), up to the next blank line."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(header, line.strip())), None)
    assert start is not None, f"no {header!r} in Prisma's output:\n{text}"
    names = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        names.append(line.strip())
    return names


def applied_by_prisma(text: str) -> list[str]:
    """The folders `prisma migrate deploy` says it applied (its tree of `<name>/` lines)."""
    return re.findall(r"└─ (\d{14}_\w+)/", text)


def rows(dsn: str) -> list[prisma.MigrationRow]:
    with psycopg.connect(dsn) as conn:
        cursor = conn.execute(
            "SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at,"
            ' applied_steps_count FROM "_prisma_migrations" ORDER BY started_at')
        return [prisma.MigrationRow(*row) for row in cursor.fetchall()]


def schema_dump(dsn: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    env = {**os.environ, "PGHOST": str(params["host"]), "PGPORT": str(params["port"]),
           "PGUSER": str(params["user"]), "PGPASSWORD": str(params.get("password", "")),
           "PGDATABASE": str(params["dbname"])}
    done = subprocess.run([str(PG_DUMP), "--schema-only", "--no-owner", "--no-privileges"],
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    noise = ("--", "\\restrict", "\\unrestrict")  # comments, pg_dump's per-run \restrict key
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith(noise))


# ------------------------------------------------------------------- tests --


def test_database_deployed_by_prisma_reads_as_applied(prisma_cli: Path, project: Path, pg_database: str) -> None:
    deployed = run_prisma(prisma_cli, project, pg_database, "migrate", "deploy")
    assert applied_by_prisma(output(deployed)) == MIGRATIONS
    assert "All migrations have been successfully applied" in output(deployed)

    records = PostgresMigrations(SecretStr(pg_database), project / "migrations").status()

    assert [(r.name, r.state) for r in records] == [(name, "applied") for name in MIGRATIONS]
    files = {f.name: f for f in prisma.read_dir(project / "migrations")}
    for record in records:
        assert record.checksum == files[record.name].checksum  # our sha256 is Prisma's
        assert record.started_at is not None and record.finished_at is not None
        assert record.started_at <= record.finished_at
        assert record.logs == ""
    assert [r.started_at for r in records] == sorted(r.started_at for r in records)  # type: ignore[type-var]


def test_prisma_continues_a_database_we_migrated(
        prisma_cli: Path, project: Path, pg_database: str, other_database: str) -> None:
    ours = PostgresMigrations(SecretStr(pg_database), project / "migrations")
    for name in MIGRATIONS[:2]:
        assert ours.apply(name, print).state == "applied"

    # Prisma's status agrees with ours: two applied, the other two pending.
    status = run_prisma(prisma_cli, project, pg_database, "migrate", "status", check=False)
    assert status.returncode == 1, output(status)
    assert names_after(output(status), PENDING) == MIGRATIONS[2:]
    assert [(r.name, r.state) for r in ours.status()] == [
        (MIGRATIONS[0], "applied"), (MIGRATIONS[1], "applied"), (MIGRATIONS[2], "pending"), (MIGRATIONS[3], "pending")]

    # Prisma applies only the remaining two, and then sees nothing to do and nothing failed.
    deployed = run_prisma(prisma_cli, project, pg_database, "migrate", "deploy")
    assert applied_by_prisma(output(deployed)) == MIGRATIONS[2:], output(deployed)
    status = run_prisma(prisma_cli, project, pg_database, "migrate", "status")
    assert "Database schema is up to date!" in output(status)
    assert [(r.name, r.state) for r in ours.status()] == [(name, "applied") for name in MIGRATIONS]

    # One row per migration, ours and Prisma's alike: the same as a database Prisma alone migrated.
    run_prisma(prisma_cli, project, other_database, "migrate", "deploy")
    mixed, prisma_only = rows(pg_database), rows(other_database)
    assert [r.migration_name for r in mixed] == MIGRATIONS

    def shape(row: prisma.MigrationRow) -> tuple[object, ...]:
        return (row.migration_name, row.checksum, row.logs, row.rolled_back_at, row.applied_steps_count,
                row.finished_at is not None and row.started_at <= row.finished_at,
                bool(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", row.id)))

    assert [shape(r) for r in mixed] == [shape(r) for r in prisma_only]
    # No drift: the same schema (tables, types, indexes, keys, and _prisma_migrations itself).
    dump = schema_dump(pg_database)
    assert 'CREATE TABLE public."Ingredient"' in dump and '"Ingredient_createdById_fkey"' in dump
    assert dump == schema_dump(other_database)


def test_failed_and_rolled_back_rows_cross_over(prisma_cli: Path, project: Path, pg_database: str) -> None:
    ours = PostgresMigrations(SecretStr(pg_database), project / "migrations")
    for name in MIGRATIONS:
        ours.apply(name, print)

    # Our failure, seen by Prisma: status names it as failed, deploy refuses to go on (P3009).
    menus = "20240301080000_add_menus"
    write_migration(project / "migrations", menus, 'ALTER TABLE "Menu" ADD COLUMN "servings" INTEGER;\n')
    with pytest.raises(StepFailed, match='relation "Menu" does not exist'):
        ours.apply(menus, print)
    status = run_prisma(prisma_cli, project, pg_database, "migrate", "status", check=False)
    assert status.returncode == 1 and menus in output(status) and "failed" in output(status), output(status)
    refused = run_prisma(prisma_cli, project, pg_database, "migrate", "deploy", check=False)
    assert refused.returncode != 0 and "P3009" in output(refused) and menus in output(refused), output(refused)

    # Our --rolled-back, honoured by Prisma: no failure left for it, and deploy applies the fixed script.
    # (Prisma's status does not list a rolled-back migration as pending: only deploy looks past it.)
    ours.resolve(menus, applied=False)
    assert ours.status()[-1].state == "rolled_back"
    write_migration(project / "migrations", menus,
                    'CREATE TABLE "Menu" (\n    "id" SERIAL NOT NULL,\n    "title" TEXT NOT NULL,\n\n'
                    '    CONSTRAINT "Menu_pkey" PRIMARY KEY ("id")\n);\n')
    status = run_prisma(prisma_cli, project, pg_database, "migrate", "status", check=False)
    assert status.returncode == 0 and "failed" not in output(status), output(status)
    deployed = run_prisma(prisma_cli, project, pg_database, "migrate", "deploy")
    assert applied_by_prisma(output(deployed)) == [menus]
    assert ours.status()[-1].name == menus and ours.status()[-1].state == "applied"

    # Prisma's failure, seen by us: failed, with Prisma's error in the logs; our fix, accepted by Prisma.
    stock = "20240310120000_stock_moves"
    write_migration(project / "migrations", stock, 'ALTER TABLE "StockMove" ADD COLUMN "note" TEXT;\n')
    failed = run_prisma(prisma_cli, project, pg_database, "migrate", "deploy", check=False)
    assert failed.returncode != 0, output(failed)
    record = ours.status()[-1]
    assert (record.name, record.state) == (stock, "failed")
    assert "StockMove" in record.logs
    ours.resolve(stock, applied=False)
    write_migration(project / "migrations", stock,
                    'CREATE TABLE "StockMove" (\n    "id" SERIAL NOT NULL,\n'
                    '    "grams" INTEGER NOT NULL,\n\n'
                    '    CONSTRAINT "StockMove_pkey" PRIMARY KEY ("id")\n);\n')
    assert ours.apply(stock, print).state == "applied"
    status = run_prisma(prisma_cli, project, pg_database, "migrate", "status")
    assert "Database schema is up to date!" in output(status)
    assert [r.state for r in ours.status()] == ["applied"] * 6


def test_our_advisory_lock_holds_prisma_off(prisma_cli: Path, project: Path, pg_database: str) -> None:
    ours = PostgresMigrations(SecretStr(pg_database), project / "migrations")
    with ours.lock(print):
        # Prisma waits for the lock (10 s), then gives up having applied nothing.
        started = time.monotonic()
        blocked = run_prisma(prisma_cli, project, pg_database, "migrate", "deploy", check=False)
        assert blocked.returncode != 0 and LOCK_MESSAGE in output(blocked), output(blocked)
        assert f"pg_advisory_lock({prisma.ADVISORY_LOCK_ID})" in output(blocked)
        assert time.monotonic() - started >= 9
        assert [r.state for r in ours.status()] == ["pending"] * 4

        # A deploy that starts while we hold the lock waits on it, and goes on once we let go.
        env = {**os.environ, "DATABASE_URL": pg_database, "CHECKPOINT_DISABLE": "1", "NO_COLOR": "1"}
        waiting = subprocess.Popen([str(prisma_cli), "migrate", "deploy"], cwd=project, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        def on_the_lock() -> bool:
            if waiting.poll() is not None:
                pytest.fail(f"prisma migrate deploy ended instead of waiting: {waiting.communicate()[0]}")
            return _waiting_on_advisory_lock(pg_database)

        try:
            wait_until(on_the_lock, timeout=8, interval=0.1, what="prisma migrate deploy waiting on the advisory lock")
        except BaseException:
            waiting.kill()
            raise
    text, _ = waiting.communicate(timeout=CLI_TIMEOUT_S)
    assert waiting.returncode == 0, text
    assert applied_by_prisma(text) == MIGRATIONS
    assert [r.state for r in ours.status()] == ["applied"] * 4


def _waiting_on_advisory_lock(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND NOT granted",
            (prisma.ADVISORY_LOCK_ID,)).fetchone()
    return bool(row and row[0])
