"""The migration lint against the rig's real PostgreSQL (issue 16, part 3): a Prisma history applied to
an empty database has no BLOCKING finding; the same risky statements on populated, ANALYZEd tables
are BLOCKING and carry the catalog's estimates; offline, the lint is the parser's, saying why."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr
from rig import config_builder as toml

from console import cli
from services import factory
from services.adapters.postgres import PostgresMigrations
from services.core import config as config_module
from services.migrations.deploy import lint_pending
from services.migrations.lint import lint_migrations
from services.migrations.lint_live import against

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("prisma_history", ROOT / "bench" / "prisma_history.py")
assert _spec and _spec.loader
prisma_history = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prisma_history)

RISKY = """-- CreateIndex
CREATE INDEX "Ingredient_name_idx" ON "Ingredient"("name");
-- AlterTable
ALTER TABLE "Ingredient" ALTER COLUMN "name" SET NOT NULL;
-- AlterTable
ALTER TABLE "Ingredient" ALTER COLUMN "rank" SET DATA TYPE BIGINT;
-- CreateIndex
CREATE INDEX "Category_name_idx" ON "Category"("name");
-- CreateIndex
CREATE INDEX "Tag_name_idx" ON "Tag"("name");
-- CreateIndex
CREATE INDEX "Event_kind_idx" ON "Event"("kind");
-- CreateIndex
CREATE INDEX "Ghost_name_idx" ON "Ghost"("name");
"""
TABLES = """CREATE TABLE "Ingredient" ("id" SERIAL PRIMARY KEY, "name" TEXT, "rank" INTEGER NOT NULL DEFAULT 0);
CREATE TABLE "Category" ("id" SERIAL PRIMARY KEY, "name" TEXT);
CREATE TABLE "Tag" ("id" SERIAL PRIMARY KEY, "name" TEXT);
CREATE TABLE "Event" ("id" SERIAL, "kind" TEXT, "month" INTEGER NOT NULL) PARTITION BY RANGE ("month");
CREATE TABLE "Event_h1" PARTITION OF "Event" FOR VALUES FROM (1) TO (7);
CREATE TABLE "Event_h2" PARTITION OF "Event" FOR VALUES FROM (7) TO (13);
INSERT INTO "Ingredient" ("name", "rank") SELECT 'ingredient number ' || g, g FROM generate_series(1, 60000) g;
INSERT INTO "Category" ("name") SELECT 'category ' || g FROM generate_series(1, 50) g;
INSERT INTO "Event" ("kind", "month") SELECT 'kind ' || g % 7, 1 + g % 12 FROM generate_series(1, 30000) g;
ANALYZE;
"""


def services_for(tmp_path: Path, dsn: str, migrations: Path, blocking_mb: float = 1) -> factory.Services:
    path = toml.release(toml.staging_and_production(),
                        migrations={"dir": str(migrations), "lint_blocking_mb": blocking_mb},
                        ).write(tmp_path / "release.toml")
    return factory.build(config_module.load(path, {"TEST_DB": dsn}), sandbox_mode=False, state=tmp_path / "state")


def empty_dir(tmp_path: Path) -> Path:
    root = tmp_path / "migrations"
    root.mkdir()
    (root / "migration_lock.toml").write_text('provider = "postgresql"\n')
    return root


def pending_one(root: Path, name: str, sql: str) -> None:
    (root / name).mkdir()
    (root / name / "migration.sql").write_text(sql)


def test_a_prisma_history_on_an_empty_database_has_no_blocking_finding(tmp_path: Path, pg_database: str) -> None:
    history = tmp_path / "history"
    files = prisma_history.write_history(history, 48)
    offline = lint_migrations([(f.parent.name, f.read_text()) for f in files[1:]])
    assert any(f.blocking for f in offline)  # migration by migration, the parser alone flags the history

    # The whole history pending at once: every table is created earlier in the batch.
    root = empty_dir(tmp_path)
    services = services_for(tmp_path, pg_database, root)
    for file in files:
        shutil.copytree(file.parent, root / file.parent.name)
    assert [f for f in lint_pending(services, "staging") if f.blocking] == []

    # Then one migration at a time, as a project deploys it: each lints against the tables the earlier ones
    # made, which exist and are empty.
    shutil.rmtree(root)
    root = empty_dir(tmp_path)
    database = services.database("staging")
    downgraded = []
    seen = []
    for file in files:
        shutil.copytree(file.parent, root / file.parent.name)
        findings = lint_pending(services, "staging")
        assert [f for f in findings if f.blocking] == [], file.parent.name
        downgraded += [f for f in findings if f.info]
        seen.append((file.parent.name, [(f.rule, f.table, f.level, f.note) for f in findings]))
        record = database.apply(file.parent.name, lambda line: None)
        assert record.state == "applied", record
    assert {f.rule for f in downgraded} >= {"create-index-non-concurrently"}, seen
    # New tables are never analyzed (reltuples -1): empty because their heap has no page.
    assert all(f.note.startswith("empty table") and f.size_bytes is not None for f in downgraded), seen


def test_risky_statements_on_populated_tables_are_blocking_with_estimates(
        tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        for statement in TABLES.strip().split(";\n"):
            conn.execute(statement)  # type: ignore[call-overload]
    root = empty_dir(tmp_path)
    pending_one(root, "20240901120000_risky", RISKY)
    services = services_for(tmp_path, pg_database, root, blocking_mb=1)
    findings = {(f.rule, f.table): f for f in lint_pending(services, "staging")}

    for rule in ("create-index-non-concurrently", "setting-not-null", "changing-column-type"):
        live = findings[(rule, "Ingredient")]
        assert live.level == "blocking", live
        assert live.estimated_rows is not None and 54000 <= live.estimated_rows <= 66000
        assert live.size_bytes is not None and live.size_bytes > 1_000_000
        assert live.estimated_lock_s is not None and live.estimated_lock_s > 0
        assert "(estimate)" in live.note
    small = findings[("create-index-non-concurrently", "Category")]  # 50 rows: under the 1 MB threshold
    assert small.level == "warning" and small.estimated_rows == 50 and "below the blocking size" in small.note
    empty = findings[("create-index-non-concurrently", "Tag")]
    assert empty.level == "info" and empty.estimated_rows == 0 and empty.note.startswith("empty table")
    partitioned = findings[("create-index-non-concurrently", "Event")]  # its partitions, summed
    assert partitioned.estimated_rows is not None and 27000 <= partitioned.estimated_rows <= 33000
    ghost = findings[("create-index-non-concurrently", "Ghost")]
    assert ghost.level == "blocking" and ghost.size_bytes is None and "does not exist in the database" in ghost.note

    # `migrate lint --json` carries the same, and exits FAILED for the blocking ones.
    monkeypatch.setenv("TEST_DB", pg_database)
    code, shown = run_cli(capsys, tmp_path, "--json", "migrate", "lint", "--env", "staging")
    assert code == cli.EXIT_FAILED
    by_key = {(f["rule"], f["table"]): f for f in json.loads(shown)}
    assert by_key[("setting-not-null", "Ingredient")]["level"] == "blocking"
    assert by_key[("setting-not-null", "Ingredient")]["estimated_rows"] == findings[
        ("setting-not-null", "Ingredient")].estimated_rows
    assert by_key[("create-index-non-concurrently", "Tag")]["level"] == "info"
    code, text = run_cli(capsys, tmp_path, "migrate", "lint", "--env", "staging")
    assert "database: ~" in text and "(estimate)" in text and "info     20240901120000_risky" in text


def run_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["--config", str(tmp_path / "release.toml"), *args])
    return code, capsys.readouterr().out


def test_offline_the_lint_is_the_parsers_saying_why(pg_database: str) -> None:
    scripts = [RISKY]
    parsed = lint_migrations([("20240901120000_risky", RISKY)])
    wrong = "postgresql://nobody:wrongpass@" + pg_database.split("@", 1)[1]
    database = PostgresMigrations(SecretStr(wrong), Path("/nonexistent"))
    offline = against(database, parsed, scripts, 1)
    assert [(f.rule, f.line, f.level, f.message) for f in offline] == \
        [(f.rule, f.line, f.level, f.message) for f in parsed]
    assert all(f.estimated_rows is None and f.size_bytes is None and f.estimated_lock_s is None for f in offline)
    tabled = [f for f in offline if f.table]
    assert tabled and all(f.note.startswith("no estimates: cannot connect") for f in tabled)
    assert not any("wrongpass" in f.note for f in offline)


def test_a_zero_threshold_keeps_every_live_table_blocking(tmp_path: Path, pg_database: str) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Category" ("id" SERIAL PRIMARY KEY, "name" TEXT)')
        conn.execute('INSERT INTO "Category" ("name") VALUES (\'one\'), (\'two\')')
        conn.execute('ANALYZE "Category"')
    root = empty_dir(tmp_path)
    pending_one(root, "20240901120000_index", 'CREATE INDEX "c_idx" ON "Category"("name");\n')
    findings = lint_pending(services_for(tmp_path, pg_database, root, blocking_mb=0), "staging")
    assert [(f.rule, f.level, f.estimated_rows) for f in findings if f.table] == \
        [("create-index-non-concurrently", "blocking", 2)]
