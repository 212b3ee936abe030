"""`[migrations] backup = "pitr"` on the rig's PITR cluster (tests/rig/pitr_cluster.py): `migrate` takes a
real pgBackRest backup before it applies anything, and refuses to start while WAL archiving is broken.
Each test migrates a database of its own on the module's cluster; pgBackRest is asked directly what it
holds (`pgbackrest info`), not through the console's adapter."""

from __future__ import annotations

import calendar
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from rig import config_builder as toml

from services import factory
from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import ConfirmationNeeded, Event, Finished, LogLine, Outcome, StepFinished, StepStarted
from services.core.operations import Result

INIT = """CREATE TABLE "Ingredient" ("id" SERIAL NOT NULL, "name" TEXT NOT NULL,
    CONSTRAINT "Ingredient_pkey" PRIMARY KEY ("id"));
INSERT INTO "Ingredient" ("name") SELECT 'i' || g FROM generate_series(1, 50) g;
"""
ADD_UNIT = 'ALTER TABLE "Ingredient" ADD COLUMN "unit" TEXT;\n'
BROKEN = 'ALTER TABLE "NoSuchTable" ADD COLUMN "x" TEXT;\n'


def write_migration(root: Path, name: str, text: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "migration.sql").write_text(text)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    root = tmp_path / "app" / "prisma" / "migrations"
    root.mkdir(parents=True)
    (root / "migration_lock.toml").write_text('provider = "postgresql"\n')
    write_migration(root, "20240105093000_init", INIT)
    return tmp_path / "app"


@pytest.fixture
def database(pitr_cluster: Any) -> Iterator[str]:
    """A database of this test's own on the PITR cluster (pgBackRest backs up the whole cluster)."""
    name = f"deploy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pitr_cluster.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield pitr_cluster.dsn(name)
    with psycopg.connect(pitr_cluster.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def build(app_dir: Path, cluster: Any, dsn: str) -> factory.Services:
    production = toml.environment(database_url=toml.secret("PITR_DB"), production=True)
    path = toml.release({"production": production}, backup=toml.backup(str(app_dir / "dumps"),
                                                                       pitr=cluster.pitr_section()),
                        migrations={"dir": "prisma/migrations", "backup": "pitr", "integrity_tables": ["Ingredient"],
                                    "reindex_tables": []}).write(app_dir / "release.toml")
    return factory.build(config_module.load(path, {"PITR_DB": dsn}), state=app_dir / "state")


def migrate(services: factory.Services) -> tuple[Result, list[Event]]:
    events: list[Event] = []

    def confirm(question: ConfirmationNeeded) -> str | None:
        return "pitr deploy test" if question.free_text else "production"

    result = services.runner.run(build_operation(services, "migrate", "production", {}), events.append, confirm)
    return result, events


def pgbackrest_backups(cluster: Any) -> list[dict[str, Any]]:
    """The stanza's backups as pgBackRest itself lists them."""
    info = json.loads(cluster.pgbackrest("--output=json", "info").stdout)
    return [b for entry in info if entry["name"] == cluster.stanza for b in entry.get("backup", [])]


def applied(dsn: str) -> list[tuple[str, float]]:
    """(migration_name, started_at as epoch seconds) of `_prisma_migrations`; none without the table."""
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('_prisma_migrations')").fetchone() == (None,):
            return []
        rows = conn.execute('SELECT migration_name, extract(epoch FROM started_at) FROM "_prisma_migrations"'
                            " ORDER BY started_at").fetchall()
    return [(str(name), float(started)) for name, started in rows]


def test_a_pitr_deploy_takes_a_pgbackrest_backup_then_applies(app_dir: Path, pitr_cluster: Any,
                                                               database: str) -> None:
    write_migration(app_dir / "prisma" / "migrations", "20240801120000_add_unit", ADD_UNIT)
    before = pgbackrest_backups(pitr_cluster)
    services = build(app_dir, pitr_cluster, database)
    try:
        result, events = migrate(services)
    finally:
        services.close()
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    started = [e.step_id for e in events if isinstance(e, StepStarted)]
    assert started[:3] == ["archiving", "lint", "backup"] and started.index("backup") < started.index("apply")
    after = pgbackrest_backups(pitr_cluster)
    made = [b for b in after if b["label"] not in {o["label"] for o in before}]
    assert [b["type"] for b in made] == ["incr"], made
    said = {e.step_id: e.detail for e in events if isinstance(e, StepFinished)}
    assert said["backup"] == f"pgBackRest incr backup {made[0]['label']}"
    # Applied after the backup was complete: each migration started once pgBackRest had stopped.
    names = [name for name, _ in applied(database)]
    assert names == ["20240105093000_init", "20240801120000_add_unit"]
    assert all(started_at >= made[0]["timestamp"]["stop"] for _, started_at in applied(database))
    # No pg_dump was taken, and the recovery point (before the first migration) was said.
    assert not (app_dir / "dumps").exists() or not any((app_dir / "dumps").rglob("*.dump*"))
    assert any(isinstance(e, LogLine) and e.text.startswith("recovery point: ") for e in events)


def test_a_pitr_deploy_refuses_to_start_while_archiving_is_broken(app_dir: Path, pitr_cluster: Any,
                                                                   database: str) -> None:
    services = build(app_dir, pitr_cluster, database)
    try:
        # The first migration is in, through the same deploy path, while archiving works.
        first, _ = migrate(services)
        assert first.outcome is Outcome.SUCCEEDED, first.detail
        write_migration(app_dir / "prisma" / "migrations", "20240801120000_add_unit", ADD_UNIT)
        recorded, backups = applied(database), pgbackrest_backups(pitr_cluster)
        pitr_cluster.break_repo()
        try:
            result, events = migrate(services)
        finally:
            pitr_cluster.mend_repo()
    finally:
        services.close()
    assert result.outcome is Outcome.FAILED, result.detail
    started = [e.step_id for e in events if isinstance(e, StepStarted)]
    assert started == ["archiving"], started  # nothing linted, locked, backed up or applied
    assert "point-in-time recovery of production is not working" in result.detail
    assert "archiving does not work" in result.detail
    told = next(e for e in events if isinstance(e, Finished))  # what to do, with the refusal
    assert any("pitr check --env production" in option for option in told.next_options), told.next_options
    assert applied(database) == recorded  # _prisma_migrations unchanged: add_unit not applied
    assert [b["label"] for b in pgbackrest_backups(pitr_cluster)] == [b["label"] for b in backups]
    with psycopg.connect(database) as conn:
        columns = conn.execute("SELECT column_name FROM information_schema.columns"
                               " WHERE table_name = 'Ingredient'").fetchall()
    assert ("unit",) not in columns


def test_a_failed_pitr_deploy_names_the_recovery_point_and_the_restore_to_run(app_dir: Path, pitr_cluster: Any,
                                                                              database: str) -> None:
    """No automatic restore: the failure says the point just before the deploy and the command."""
    migrations = app_dir / "prisma" / "migrations"
    write_migration(migrations, "20240801120000_add_unit", ADD_UNIT)
    write_migration(migrations, "20240901120000_broken", BROKEN)
    before = {b["label"] for b in pgbackrest_backups(pitr_cluster)}
    services = build(app_dir, pitr_cluster, database)
    try:
        result, events = migrate(services)
    finally:
        services.close()
    assert result.outcome is Outcome.FAILED, result.detail
    assert "20240901120000_broken failed" in result.detail
    made = [b for b in pgbackrest_backups(pitr_cluster) if b["label"] not in before]
    assert len(made) == 1
    told = next(e for e in events if isinstance(e, Finished))
    undo = next(option for option in told.next_options if option.startswith("undo: point-in-time restore"))
    assert made[0]["label"] in undo
    found = re.search(r"release-console pitr restore --env production --target '([\d-]+ [\d:]+)'", undo)
    assert found, undo
    target = calendar.timegm(time.strptime(found[1], "%Y-%m-%d %H:%M:%S"))
    # The point is after the backup and before the first migration of this deploy (init) started.
    started = dict(applied(database))
    assert list(started)[:2] == ["20240105093000_init", "20240801120000_add_unit"]
    assert made[0]["timestamp"]["stop"] - 1 <= target <= min(started.values())
    assert any("migrate resolve" in option for option in told.next_options)
