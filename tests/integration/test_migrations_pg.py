"""Prisma-compatible migrations against the rig's real PostgreSQL: status, deploy with backup,
integrity and reindex, failure then resolve, edited migrations, the Prisma lock, rollback."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr
from rig import config_builder as toml
from rig.helpers import prisma_migrations, wait_until, write_migration

from services import factory
from services.adapters import prisma
from services.adapters.postgres import PostgresMigrations
from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import ConfirmationNeeded, Event, LogLine, Outcome, StepFinished
from services.core.operations import Result, StepFailed

INIT = """-- CreateTable
CREATE TABLE "Category" ("id" SERIAL NOT NULL, "name" TEXT NOT NULL, CONSTRAINT "Category_pkey" PRIMARY KEY ("id"));
-- CreateTable
CREATE TABLE "Ingredient" ("id" SERIAL NOT NULL, "name" TEXT NOT NULL, "categoryId" INTEGER NOT NULL,
    CONSTRAINT "Ingredient_pkey" PRIMARY KEY ("id"));
-- CreateTable
CREATE TABLE "User" ("id" SERIAL NOT NULL, "email" TEXT NOT NULL, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));
-- CreateIndex
CREATE UNIQUE INDEX "User_email_key" ON "User"("email");
"""
SEED = """INSERT INTO "Category" ("name") SELECT 'c' || g FROM generate_series(1, 5) g;
INSERT INTO "Ingredient" ("name", "categoryId") SELECT 'i' || g, 1 + g % 5 FROM generate_series(1, 200) g;
INSERT INTO "User" ("email") SELECT 'u' || g || '@example.com' FROM generate_series(1, 30) g;
"""
ADD_UNIT = """SET lock_timeout = '500ms';
-- AlterTable
ALTER TABLE "Ingredient" ADD COLUMN "unit" TEXT;
"""
BROKEN = """-- AlterTable
ALTER TABLE "Ingredient" ADD COLUMN "note" TEXT;
ALTER TABLE "NoSuchTable" ADD COLUMN "x" TEXT;
"""


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    return prisma_migrations(tmp_path / "app", **{"20240105093000_init": INIT, "20240106093000_seed": SEED,
                                                  "20240801120000_add_unit": ADD_UNIT})


def release_toml(tmp_path: Path, lock_wait_s: float = 3) -> Path:
    return toml.release(toml.staging_and_production(), backup=toml.backup(),
                        migrations={"dir": "prisma/migrations", "lock_wait_s": lock_wait_s},
                        ).write(tmp_path / "app" / "release.toml")


Build = Callable[..., factory.Services]


@pytest.fixture
def build(tmp_path: Path, pg_database: str, migrations_dir: Path) -> Build:
    def make(dsn: str = pg_database, lock_wait_s: float = 3) -> factory.Services:
        config = config_module.load(release_toml(tmp_path, lock_wait_s), {"TEST_DB": dsn})
        return factory.build(config, sandbox_mode=False, state=tmp_path / "state")

    return make


class Run:
    def __init__(self, services: factory.Services, kind: str, env: str, answers: dict[str, str | None],
                 on_event: Callable[[Event], object] = lambda event: None, **params: Any) -> None:
        """`on_event` sees each event as it is emitted, on the operation's thread."""
        self.events: list[Event] = []
        self.asked: list[ConfirmationNeeded] = []

        def confirm(question: ConfirmationNeeded) -> str | None:
            self.asked.append(question)
            return answers.get("reason" if question.free_text else "confirm")

        def emit(event: Event) -> None:
            self.events.append(event)
            on_event(event)

        op = build_operation(services, kind, env, params)
        self.result: Result = services.runner.run(op, emit, confirm)

    def lines(self, step: str | None = None) -> list[str]:
        return [e.text for e in self.events if isinstance(e, LogLine) and step in (None, e.step_id)]

    def detail(self, step: str) -> str:
        return next(e.detail for e in self.events if isinstance(e, StepFinished) and e.step_id == step)


def rows(dsn: str) -> list[tuple[Any, ...]]:
    """The `_prisma_migrations` rows, oldest first; none if the table does not exist yet."""
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('_prisma_migrations')").fetchone() == (None,):
            return []
        return conn.execute(
            'SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count'
            ' FROM "_prisma_migrations" ORDER BY started_at').fetchall()


def test_status_of_a_new_database_is_all_pending(build: Build) -> None:
    states = [(m.name, m.state) for m in build().database("staging").status()]
    assert states == [("20240105093000_init", "pending"), ("20240106093000_seed", "pending"),
                      ("20240801120000_add_unit", "pending")]


def test_deploy_backs_up_applies_checks_and_reindexes(build: Build, pg_database: str, tmp_path: Path,
                                                       migrations_dir: Path) -> None:
    services = build()
    run = Run(services, "migrate", "staging", {})

    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert run.detail("apply") == "3 applied"
    assert run.detail("reindex") == "REINDEX CONCURRENTLY + ANALYZE of 3 tables"
    # Rows exactly as prisma-engines writes them.
    recorded = rows(pg_database)
    assert [r[3] for r in recorded] == [p.name for p in sorted(migrations_dir.iterdir()) if p.is_dir()]
    for row, folder in zip(recorded, sorted(p for p in migrations_dir.iterdir() if p.is_dir()), strict=True):
        migration_id, checksum, finished_at, _, logs, rolled_back_at, started_at, steps = row
        assert str(uuid.UUID(migration_id)) == migration_id
        assert checksum == prisma.checksum((folder / "migration.sql").read_text())
        assert finished_at is not None and finished_at >= started_at
        assert (logs, rolled_back_at, steps) == (None, None, 1)
    # Integrity: the before/after table, nothing dropped (the tables did not exist before).
    integrity = run.lines("integrity")
    assert integrity[0].split() == ["table", "before", "after"]
    assert integrity[1:] == [f"{'Ingredient':<12} {0:>9} {200:>9}", f"{'Category':<12} {0:>9} {5:>9}",
                             f"{'User':<12} {0:>9} {30:>9}"]
    # The backup came first, streamed to the local backup dir, with its manifest.
    backup_id = run.detail("backup").removeprefix("backup ")
    backup = tmp_path / "app" / "backups" / "staging" / backup_id
    assert sorted(p.name for p in backup.iterdir()) == ["db.pgdump.zst", "manifest.json"]  # zstd: the default
    # A second deploy has nothing to do.
    again = Run(services, "migrate", "staging", {})
    assert again.result.outcome is Outcome.SUCCEEDED and again.detail("apply") == "nothing pending"
    # ... and takes no backup for it (minutes and storage for nothing on a large database), saying so.
    assert again.detail("backup") == "no backup: nothing pending"
    assert "nothing pending: no backup is taken" in " ".join(again.lines("backup"))
    assert sorted(p.name for p in backup.parent.iterdir()) == [backup_id]


def analyzed(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT relname, last_analyze FROM pg_stat_user_tables").fetchall())


def test_reindex_and_analyze_only_the_tables_the_deploy_touched(build: Build, pg_database: str,
                                                                migrations_dir: Path) -> None:
    services = build()
    for folder in ("20240106093000_seed", "20240801120000_add_unit"):
        (migrations_dir / folder / "migration.sql").unlink()
        (migrations_dir / folder).rmdir()
    # An empty database: the three tables are made by this deploy and stay empty.
    first = Run(services, "migrate", "staging", {})
    assert first.result.outcome is Outcome.SUCCEEDED, first.result.detail
    assert first.detail("reindex") == "REINDEX CONCURRENTLY + ANALYZE of 0 tables; 3 skipped (the log says why)"
    assert first.lines("reindex") == [f"{t}: no REINDEX or ANALYZE: created by this deploy and empty"
                                      for t in ("Ingredient", "Category", "User")]
    assert all(when is None for when in analyzed(pg_database).values())
    # Rows in all three: each is rebuilt and measured.
    write_migration(migrations_dir, "20240106093000_seed", SEED)
    second = Run(services, "migrate", "staging", {})
    assert second.detail("reindex") == "REINDEX CONCURRENTLY + ANALYZE of 3 tables"
    before = analyzed(pg_database)
    assert all(before[t] is not None for t in ("Ingredient", "Category", "User"))
    # A deploy that names only User: the others are left as they are.
    write_migration(migrations_dir, "20240901120000_user_name", 'ALTER TABLE "User" ADD COLUMN "name" TEXT;')
    third = Run(services, "migrate", "staging", {})
    assert third.detail("reindex") == "REINDEX CONCURRENTLY + ANALYZE of 1 tables; 2 skipped (the log says why)"
    assert third.lines("reindex") == [f"{t}: no REINDEX or ANALYZE: no migration of this deploy names it"
                                      for t in ("Ingredient", "Category")]
    after = analyzed(pg_database)
    assert after["User"] > before["User"]
    assert (after["Ingredient"], after["Category"]) == (before["Ingredient"], before["Category"])


def test_a_failing_migration_is_recorded_then_resolved(build: Build, pg_database: str, migrations_dir: Path) -> None:
    services = build()
    write_migration(migrations_dir, "20240901120000_broken", BROKEN)
    run = Run(services, "migrate", "staging", {})

    assert run.result.outcome is Outcome.FAILED and run.result.failed_step == "apply"
    assert 'relation "NoSuchTable" does not exist' in run.result.detail
    failed = [r for r in rows(pg_database) if r[3] == "20240901120000_broken"]
    assert len(failed) == 1 and failed[0][2] is None and failed[0][5] is None  # finished_at, rolled_back_at
    assert "NoSuchTable" in failed[0][4] and failed[0][7] == 0
    with psycopg.connect(pg_database) as conn:  # nothing of it half-applied: one implicit transaction
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'Ingredient'")]
    assert "note" not in columns
    status = {m.name: m for m in services.database("staging").status()}
    assert status["20240901120000_broken"].state == "failed" and "NoSuchTable" in status["20240901120000_broken"].logs

    blocked = Run(services, "migrate", "staging", {})  # refuses past an unresolved failure
    assert blocked.result.outcome is Outcome.FAILED and "failed earlier and is unresolved" in blocked.result.detail

    write_migration(migrations_dir, "20240901120000_broken", BROKEN.replace('"NoSuchTable"', '"User"'))
    resolved = Run(services, "resolve", "staging", {"confirm": "yes"}, rolled_back="20240901120000_broken")
    assert resolved.result.outcome is Outcome.SUCCEEDED, resolved.result.detail
    assert [r[5] is not None for r in rows(pg_database) if r[3] == "20240901120000_broken"] == [True]
    redo = Run(services, "migrate", "staging", {})
    assert redo.result.outcome is Outcome.SUCCEEDED, redo.result.detail
    attempts = [r for r in rows(pg_database) if r[3] == "20240901120000_broken"]
    assert [(r[2] is not None, r[5] is not None) for r in attempts] == [(False, True), (True, False)]
    assert services.database("staging").status()[-1].state == "applied"


def test_resolve_applied_marks_a_failed_migration_done(build: Build, pg_database: str, migrations_dir: Path) -> None:
    services = build()
    write_migration(migrations_dir, "20240901120000_broken", BROKEN)
    assert Run(services, "migrate", "staging", {}).result.outcome is Outcome.FAILED
    done = Run(services, "resolve", "staging", {"confirm": "yes"}, applied="20240901120000_broken")
    assert done.result.outcome is Outcome.SUCCEEDED, done.result.detail
    attempts = [r for r in rows(pg_database) if r[3] == "20240901120000_broken"]
    assert [(r[2] is not None, r[5] is not None, r[4], r[7]) for r in attempts][-1] == (True, False, "", 0)
    assert attempts[0][5] is not None  # the failed attempt is marked rolled back, as Prisma does
    twice = Run(services, "resolve", "staging", {"confirm": "yes"}, applied="20240901120000_broken")
    assert twice.result.outcome is Outcome.FAILED and "already recorded as applied" in twice.result.detail


def test_an_edited_applied_migration_is_detected_and_blocks_deploy(build: Build, migrations_dir: Path) -> None:
    services = build()
    assert Run(services, "migrate", "staging", {}).result.outcome is Outcome.SUCCEEDED
    script = migrations_dir / "20240801120000_add_unit" / "migration.sql"
    script.write_text(script.read_text().replace("TEXT", "VARCHAR(20)"))
    write_migration(migrations_dir, "20240902120000_more", 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n')

    states = {m.name: m.state for m in services.database("staging").status()}
    assert states["20240801120000_add_unit"] == "edited"
    run = Run(services, "migrate", "staging", {})
    assert run.result.outcome is Outcome.FAILED
    assert "20240801120000_add_unit was applied, but its migration.sql has changed" in run.result.detail
    assert states["20240902120000_more"] == "pending"  # and it was not applied


def test_windows_line_endings_are_not_an_edit(build: Build, migrations_dir: Path) -> None:
    services = build()
    assert Run(services, "migrate", "staging", {}).result.outcome is Outcome.SUCCEEDED
    script = migrations_dir / "20240801120000_add_unit" / "migration.sql"
    script.write_bytes(script.read_bytes().replace(b"\n", b"\r\n"))
    assert {m.state for m in services.database("staging").status()} == {"applied"}


def test_a_database_row_without_a_folder_is_reported(build: Build, migrations_dir: Path) -> None:
    services = build()
    assert Run(services, "migrate", "staging", {}).result.outcome is Outcome.SUCCEEDED
    (migrations_dir / "20240801120000_add_unit" / "migration.sql").unlink()
    (migrations_dir / "20240801120000_add_unit").rmdir()
    states = {m.name: m.state for m in services.database("staging").status()}
    assert states["20240801120000_add_unit"] == "missing_folder"


def test_a_folder_without_migration_sql_is_a_clear_error(build: Build, migrations_dir: Path) -> None:
    (migrations_dir / "20240903120000_empty").mkdir()
    with pytest.raises(prisma.MigrationsDirError, match="20240903120000_empty: no migration.sql"):
        build().database("staging").status()
    # A deploy is refused before it starts (the CLI exits 2): nothing is journaled, locked or backed up.
    with pytest.raises(prisma.MigrationsDirError, match="no migration.sql"):
        build_operation(build(), "migrate", "staging", {})


def test_another_provider_is_a_clear_error(build: Build, migrations_dir: Path) -> None:
    (migrations_dir / "migration_lock.toml").write_text('provider = "mysql"\n')
    with pytest.raises(prisma.MigrationsDirError, match="provider is 'mysql'"):
        build().database("staging").status()


def test_the_prisma_lock_held_elsewhere_means_a_countdown_then_a_clear_refusal(build: Build, pg_database: str,
                                                                               migrations_dir: Path) -> None:
    with psycopg.connect(pg_database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (prisma.ADVISORY_LOCK_ID,))
        pid = holder.info.backend_pid
        run = Run(build(lock_wait_s=2), "migrate", "staging", {})
    assert run.result.outcome is Outcome.FAILED and run.result.failed_step == "apply"
    assert f"Prisma's migration lock ({prisma.ADVISORY_LOCK_ID}) is held by pid {pid}" in run.result.detail
    countdown = [line for line in run.lines("apply") if line.startswith("waiting for Prisma's migration lock")]
    assert len(countdown) >= 2 and countdown[0].endswith("s left")
    assert rows(pg_database) == []  # nothing applied while someone else held it


def test_deploy_waits_for_a_lock_holder_that_finishes(build: Build, pg_database: str) -> None:
    """The holder lets go once the deploy says it waits for the lock: then the deploy goes on."""
    held, waited = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (prisma.ADVISORY_LOCK_ID,))
            held.set()
            waited.wait(60)
            conn.execute("SELECT pg_advisory_unlock(%s)", (prisma.ADVISORY_LOCK_ID,))

    def on_event(event: Event) -> None:
        if isinstance(event, LogLine) and event.text.startswith("waiting for Prisma's migration lock"):
            waited.set()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10), "could not take Prisma's lock"
    run = Run(build(lock_wait_s=60), "migrate", "staging", {}, on_event=on_event)
    waited.set()  # whatever happened, let the holder go
    thread.join()
    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert any(line.startswith("waiting for Prisma's migration lock") for line in run.lines("apply"))


def test_an_unreachable_database_and_wrong_credentials_are_clear(build: Build, pg_database: str) -> None:
    unreachable = build(dsn="postgresql://rc:hunter2@127.0.0.1:1/nowhere")
    with pytest.raises(StepFailed, match=r"cannot connect to postgresql://rc:\*+@127.0.0.1:1/nowhere") as caught:
        unreachable.database("staging").status()
    assert "hunter2" not in str(caught.value)
    run = Run(unreachable, "migrate", "staging", {})
    assert run.result.outcome is Outcome.FAILED and "cannot connect" in run.result.detail
    assert "hunter2" not in run.result.detail

    wrong = pg_database.replace("://", "://nobody:wrongpass@", 1) if "@" not in pg_database else \
        "postgresql://nobody:wrongpass@" + pg_database.split("@", 1)[1]
    with pytest.raises(StepFailed, match="cannot connect") as caught:
        PostgresMigrations(SecretStr(wrong), Path("/nonexistent")).row_counts(["User"])
    assert "wrongpass" not in str(caught.value)


def test_production_needs_a_reason_to_override_blocking_lint(build: Build, migrations_dir: Path) -> None:
    services = build()
    assert Run(services, "migrate", "production", {"confirm": "production"}).result.outcome is Outcome.SUCCEEDED
    write_migration(migrations_dir, "20240904120000_rename", 'ALTER TABLE "User" RENAME COLUMN "email" TO "mail";\n')

    refused = Run(services, "migrate", "production", {"confirm": "production"})
    assert refused.result.outcome is Outcome.DECLINED and refused.result.failed_step == "lint"
    assert [q.free_text for q in refused.asked] == [True]

    reason = "maintenance window INC-42, app already reads mail"
    allowed = Run(services, "migrate", "production", {"confirm": "production", "reason": reason})
    assert allowed.result.outcome is Outcome.SUCCEEDED, allowed.result.detail
    last = services.audit.tail(1)[0]
    assert (last["action"], last["override_reason"]) == ("migrate", reason)
    assert any("renaming-column" in line for line in allowed.lines("lint"))


def test_rollback_restores_the_backup_taken_before_the_deploy(build: Build, pg_database: str,
                                                               migrations_dir: Path) -> None:
    services = build()
    first = Run(services, "migrate", "staging", {})
    assert first.result.outcome is Outcome.SUCCEEDED
    write_migration(migrations_dir, "20240905120000_drop_users", 'DELETE FROM "User";\n')
    second = Run(services, "migrate", "staging", {})
    assert second.result.outcome is Outcome.FAILED and second.result.failed_step == "integrity"
    assert "row counts dropped in User" in second.result.detail
    assert any("migrate-rollback" in option for option in second.events[-1].next_options)  # type: ignore[attr-defined]

    rollback = Run(services, "migrate-rollback", "staging", {"confirm": "yes"})
    assert rollback.result.outcome is Outcome.SUCCEEDED, rollback.result.detail
    with psycopg.connect(pg_database) as conn:
        assert conn.execute('SELECT count(*) FROM "User"').fetchone() == (30,)
    assert rollback.detail("status") == "3 applied, 1 pending after restore"


def sessions(dsn: str) -> int:
    """Client sessions on the database besides the one asking."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                           " AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()
    return int(row[0]) if row else 0


RESTORE_SLOWLY = """
import sys, time
from pathlib import Path
from pydantic import SecretStr
from services.adapters.postgres import PostgresMigrations

dump = Path(sys.argv[2]).read_bytes()

class Slow:
    def __init__(self):
        self.at = 0
    def read(self, size=-1):
        if self.at >= len(dump) // 2:
            print("half", flush=True)
            time.sleep(60)  # killed here, with half the dump sent to psql
        chunk = dump[self.at:self.at + 65536]
        self.at += len(chunk)
        return chunk

PostgresMigrations(SecretStr(sys.argv[1]), Path("/nonexistent")).restore(Slow(), print)
"""


def test_a_restore_killed_midway_changes_nothing(pg_database: str, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Ingredient" (id serial PRIMARY KEY, name text)')
        conn.execute("""INSERT INTO "Ingredient" (name) SELECT md5(g::text) FROM generate_series(1, 100000) g""")
    database = PostgresMigrations(SecretStr(pg_database), Path("/nonexistent"))
    dump = tmp_path / "dump.sql"
    with dump.open("wb") as sink:
        database.dump(sink)
    database.close()  # its kept connection: the sessions counted below are the restore's only
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute('DELETE FROM "Ingredient" WHERE id > 10')

    worker = subprocess.Popen([sys.executable, "-c", RESTORE_SLOWLY, pg_database, str(dump)],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "half"
    worker.send_signal(signal.SIGKILL)  # the console dies (an SSH drop, kill -9) mid-restore
    worker.wait()
    wait_until(lambda: sessions(pg_database) == 0, timeout=30, interval=0.1,
               what="the restore's session to end (psql sees its input end)")  # nothing can commit after
    with psycopg.connect(pg_database) as conn:
        assert conn.execute('SELECT count(*) FROM "Ingredient"').fetchone() == (10,)  # untouched, not half-restored
