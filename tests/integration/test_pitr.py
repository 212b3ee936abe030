"""Point-in-time recovery through pgBackRest, on the rig's PITR cluster (tests/rig/pitr_cluster.py):
`pitr check` for real (archiving works, the stanza, the newest backups, the recovery point), its exit 1
with pgBackRest's reason when the repository cannot be written, `pitr backup` as an operation, and the
point-in-time restore walkthrough, which stops, restores and starts this cluster for real.

The cluster is the module's: each restore test works in a database of its own, made before its target,
and leaves the cluster running (on a new timeline), so the tests pass in any order."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rig import config_builder as toml
from rig.helpers import SampleApp, unique_bucket_name, wait_until
from rig.walk import Walk

from services import factory
from services.backups import pitr
from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import (
    Event,
    Finished,
    Outcome,
    Progress,
)
from services.core.operations import StepFailed
from services.core.pitr_port import RecoveryTarget

ROOT = Path(__file__).resolve().parents[2]


def release_toml(tmp_path: Path, cluster: Any, tables: tuple[str, ...] = ("Ingredient",),
                 pitr: dict[str, Any] | None = None, **production: Any) -> Path:
    environment = toml.environment(database_url=toml.secret("PITR_DB"), production=True, **production)
    return toml.release({"production": environment},
                        backup=toml.backup(str(tmp_path / "backups"), pitr={**cluster.pitr_section(), **(pitr or {})}),
                        recovery={"health_tries": 40, "health_interval_s": 0.5},
                        migrations={"dir": "app/prisma/migrations", "integrity_tables": list(tables)},
                        ).write(tmp_path / "release.toml")


def cli(tmp_path: Path, cluster: Any, *words: str, database: str = "postgres") -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "PITR_DB": cluster.dsn(database),
           "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    return subprocess.run([sys.executable, "-m", "console.cli", "--config", str(release_toml(tmp_path, cluster)),
                           *words], capture_output=True, text=True, timeout=240, cwd=ROOT, env=env, check=False)


def test_check_reports_archiving_the_stanza_newest_backups_and_the_recovery_point(tmp_path: Path,
                                                                                  pitr_cluster: Any) -> None:
    done = cli(tmp_path, pitr_cluster, "pitr", "check", "--env", "production", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["problems"] == []
    assert report["stanza"]["stanza"] == pitr_cluster.stanza and report["stanza"]["ok"]
    system_id = int(pitr_cluster.execute("SELECT system_identifier FROM pg_control_system()")[0][0])
    assert report["stanza"]["system_id"] == system_id
    assert report["newest"]["full"]["label"].endswith("F")
    # `pgbackrest check` archived a segment just now: the recovery point is that segment's age.
    assert report["archiver"]["last_archived_wal"] and report["recovery_point_age_s"] is not None
    assert report["recovery_point_age_s"] < 120
    text = cli(tmp_path, pitr_cluster, "pitr", "check", "--env", "production")
    assert text.returncode == 0 and "recovery point: the last WAL segment" in text.stdout


def test_broken_archiving_is_reported_with_exit_1_and_the_reason(tmp_path: Path, pitr_cluster: Any) -> None:
    pitr_cluster.break_repo()
    try:
        done = cli(tmp_path, pitr_cluster, "pitr", "check", "--env", "production", "--json")
    finally:
        pitr_cluster.mend_repo()
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert not report["ok"]
    assert any("archiving does not work" in p for p in report["problems"]), report["problems"]
    # pgBackRest's own reason is said: the repository cannot be written (permission denied).
    assert any("permission denied" in p.lower() or "unable to" in p.lower() for p in report["problems"])
    healed = cli(tmp_path, pitr_cluster, "pitr", "check", "--env", "production", "--json")
    assert healed.returncode == 0, healed.stdout


@pytest.mark.parametrize("backup_type", ["incr", "diff"])
def test_pitr_backup_is_an_operation_with_progress_and_audit(tmp_path: Path, pitr_cluster: Any,
                                                             backup_type: str) -> None:
    path = release_toml(tmp_path, pitr_cluster)
    services = factory.build(config_module.load(path, {"PITR_DB": pitr_cluster.dsn()}), state=tmp_path / "state")
    try:
        before = {b.label for b in services.pitr("production").info().backups}
        events: list[Event] = []
        op = build_operation(services, "pitr-backup", "production", {"type": backup_type})
        result = services.runner.run(op, events.append, lambda question: None)
        assert result.outcome is Outcome.SUCCEEDED, result.detail
        after = services.pitr("production").info().backups
        made = [b for b in after if b.label not in before]
        assert [b.type for b in made] == [backup_type]
        assert any(isinstance(e, Progress) and e.total == 100 for e in events)
        assert isinstance(events[-1], Finished)
        audited = [json.loads(line) for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
        assert any(r.get("action") == "pitr-backup" for r in audited), audited[-1]
        report = pitr.check(services, "production", run_check=False)
        assert report.newest(backup_type) is not None and report.newest(backup_type).label == made[0].label
    finally:
        services.close()


# --- the point-in-time restore walkthrough -------------------------------------------------------------

RESTORE = ["target", "confirm", "stop-app", "stop-db", "restore", "start-db", "recovery", "validate", "start-app",
           "health", "report"]


def build(tmp_path: Path, cluster: Any, database: str, **options: Any) -> Any:
    path = release_toml(tmp_path, cluster, **options)
    return factory.build(config_module.load(path, {"PITR_DB": cluster.dsn(database)}), state=tmp_path / "state")


def walk_on_notes(tmp_path: Path, cluster: Any, database: str, kind: str, target: str) -> Walk:
    """`kind` to `target` on a database whose integrity table is "Note"; its services closed after."""
    services = build(tmp_path, cluster, database, tables=("Note",))
    try:
        return Walk(services, kind, target=target)
    finally:
        services.close()


def server_now(cluster: Any, database: str) -> float:
    return float(cluster.execute("SELECT extract(epoch FROM clock_timestamp())", database)[0][0])


def written_around_a_target(cluster: Any) -> tuple[str, str]:
    """A database whose "Note" has A before a whole-second target and B after it, archived: (db, target)."""
    database = cluster.new_database()
    cluster.execute('CREATE TABLE "Note" (id int PRIMARY KEY, body text NOT NULL)', database)
    cluster.execute("""INSERT INTO "Note" VALUES (1, 'A')""", database)
    # The operator gives whole seconds: the target is the next one after A's commit, and B commits after it.
    target = int(server_now(cluster, database)) + 1
    wait_until(lambda: server_now(cluster, database) > target, timeout=10, what="the clock past it")
    cluster.execute("""INSERT INTO "Note" VALUES (2, 'B')""", database)
    return database, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(target))


def test_stop_and_start_say_when_there_is_nothing_to_do(tmp_path: Path, pitr_cluster: Any) -> None:
    """What a resumed walkthrough meets: PostgreSQL stopped already, or running already."""
    services = build(tmp_path, pitr_cluster, "postgres")
    engine, said = services.pitr("production"), []
    try:
        engine.start_database(said.append)
        assert said == [f"PostgreSQL already runs in {pitr_cluster.data}"]
        engine.stop_database(said.append)
        engine.stop_database(said.append)
        assert said[-1] == f"PostgreSQL is not running in {pitr_cluster.data}: nothing to stop"
        engine.start_database(said.append)
        wait_until(lambda: not engine.live().in_recovery(), timeout=60, what="the cluster answering")
    finally:
        if not (pitr_cluster.data / "postmaster.pid").exists():
            pitr_cluster.start()
        services.close()


def test_restore_to_a_time_keeps_the_write_before_it_and_not_the_one_after(tmp_path: Path,
                                                                           pitr_cluster: Any) -> None:
    database, shown = written_around_a_target(pitr_cluster)
    # The target's WAL archived before the walkthrough starts (it also archives, as it resolves the target).
    switched = pitr_cluster.execute("SELECT pg_walfile_name(pg_switch_wal())", database)[0][0]
    wait_until(lambda: str(pitr_cluster.execute("SELECT last_archived_wal FROM pg_stat_archiver")[0][0]) >= switched,
               timeout=120, what=f"{switched} archived")
    started_before = pitr_cluster.postmaster_started()
    run = walk_on_notes(tmp_path, pitr_cluster, database, "pitr-restore", shown)

    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert run.started() == RESTORE
    assert [q.expected for q in run.asked] == ["production"]
    assert run.detail("target") == f"{shown} UTC; undoes 0 migrations"
    # No deploy target and no service commands here: it says so, and starts and checks no app.
    assert run.detail("stop-app") == "skipped: no app configured"
    assert any("cannot stop an app" in line for line in run.lines("stop-app"))
    assert run.detail("health") == "skipped: the console started no app"
    assert any("pg_ctl" in line and " stop" in line for line in run.lines("stop-db"))
    restore_line = run.lines("restore")[0]
    assert "--type=time" in restore_line and f"--target={shown}.000000+00" in restore_line
    assert run.detail("recovery").startswith("recovery ended")
    assert pitr_cluster.postmaster_started() > started_before  # stopped and started for real
    assert pitr_cluster.execute('SELECT id, body FROM "Note" ORDER BY id', database) == [(1, "A")]
    assert run.detail("report").startswith("RTO ") and "rows lost: Note 1" in run.detail("report")
    # The shared audit trail in this database was rolled back too, its table with it (made by this
    # operation's start record, after the target): made again and sent this bastion's records again.
    resent = next(line for line in run.lines("report") if line.startswith("the shared audit trail: "))
    assert int(resent.split()[4]) >= 1, resent
    services = build(tmp_path, pitr_cluster, database)
    try:
        assert services.audit.verify(["production"]).ok, services.audit.verify(["production"]).problem
    finally:
        services.close()
    assert pitr_cluster.execute("SELECT pg_is_in_recovery()") == [(False,)]  # promoted: it takes writes again
    pitr_cluster.execute("""INSERT INTO "Note" VALUES (3, 'after')""", database)


def test_a_target_outside_the_recovery_window_is_refused_before_anything_stops(tmp_path: Path,
                                                                               pitr_cluster: Any) -> None:
    started = pitr_cluster.postmaster_started()
    for target, reason in (("2001-01-01 00:00:00", "is before the oldest backup's end"),
                           ("2099-01-01 00:00:00", "is after the last archived WAL")):
        done = cli(tmp_path, pitr_cluster, "pitr", "restore", "--env", "production", "--target", target,
                   "--confirm-env", "production")
        assert done.returncode == 1, done.stdout + done.stderr
        said = done.stdout + done.stderr
        assert reason in said and "the recovery window is" in said and "Now: nothing was stopped or changed" in said
    assert pitr_cluster.postmaster_started() == started  # never stopped
    assert pitr_cluster.execute("SELECT pg_is_in_recovery()") == [(False,)]


INIT = """-- CreateTable
CREATE TABLE "Dish" ("id" INTEGER NOT NULL, "name" TEXT NOT NULL, "notes" TEXT NOT NULL,
    CONSTRAINT "Dish_pkey" PRIMARY KEY ("id"));
"""
DROP_NOTES = """-- AlterTable
ALTER TABLE "Dish" DROP COLUMN "notes";
"""


def write_migration(tmp_path: Path, name: str, text: str) -> None:
    folder = tmp_path / "app" / "prisma" / "migrations" / name
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text(text)


def test_undo_a_migration_restores_the_dropped_column_and_reports_what_was_lost(
        tmp_path: Path, pitr_cluster: Any, run_sample_app: Callable[..., SampleApp], docker_cli: list[str]) -> None:
    database = pitr_cluster.new_database()
    (tmp_path / "app" / "prisma" / "migrations").mkdir(parents=True)
    (tmp_path / "app" / "prisma" / "migrations" / "migration_lock.toml").write_text('provider = "postgresql"\n')
    app = run_sample_app(VERSION="1.4.1")
    options: dict[str, Any] = {
        "tables": ("Dish",), "api_url": f"{app.url}/api",
        "stop": [*docker_cli, "stop", app.container.name], "start": [*docker_cli, "start", app.container.name],
        # The cluster stopped and started by commands of the operator's (here pg_ctl, as argument lists).
        "pitr": {"stop": pitr_cluster.pg_ctl("-m", "fast", "-w", "stop"),
                 "start": pitr_cluster.pg_ctl("-l", str(pitr_cluster.log), "-w", "start")}}

    write_migration(tmp_path, "20261206120000_init", INIT)
    services = build(tmp_path, pitr_cluster, database, **options)
    try:
        first = Walk(services, "migrate")
        assert first.result.outcome is Outcome.SUCCEEDED, first.result.detail
        pitr_cluster.execute("""INSERT INTO "Dish" SELECT g, 'dish ' || g, 'note ' || g"""
                             " FROM generate_series(1, 40) g", database)
        # Deploys are minutes apart, not milliseconds: the migration starts more than margin_s (2s) after
        # the rows, so "before" it still holds them all.
        written = server_now(pitr_cluster, database)
        wait_until(lambda: server_now(pitr_cluster, database) > written + 3, timeout=10, what="3s past the rows")
        write_migration(tmp_path, "20261206130000_drop_dish_notes", DROP_NOTES)
        dropped = Walk(services, "migrate")  # `migrate deploy`: lint (an override in production), backup, apply
        assert dropped.result.outcome is Outcome.SUCCEEDED, dropped.result.detail
    finally:
        services.close()
    pitr_cluster.execute("""INSERT INTO "Dish" SELECT g, 'late ' || g FROM generate_series(41, 46) g""", database)
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'Dish' ORDER BY ordinal_position"
    assert pitr_cluster.execute(columns, database) == [("id",), ("name",)]
    app_started = app.container.attrs["State"]["StartedAt"]

    services = build(tmp_path, pitr_cluster, database, **options)
    try:
        run = Walk(services, "pitr-restore", target="before:20261206130000_drop_dish_notes")
    finally:
        services.close()

    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert run.started() == RESTORE
    assert "20261206130000_drop_dish_notes" in run.asked[0].prompt and run.asked[0].expected == "production"
    assert any("the target is 2s before" in line for line in run.lines("target"))
    assert run.lines("stop-app")[0] == f"$ {' '.join(docker_cli)} stop {app.container.name}"
    assert run.lines("stop-db")[0].startswith("$ runuser -u postgres -- ") and run.lines("stop-db")[0].endswith(" stop")
    assert run.detail("health").startswith("healthy after")
    app.container.reload()
    assert app.container.attrs["State"]["StartedAt"] != app_started  # the app was stopped and started
    # The column and its data are back; every row written before the migration is there, none after.
    assert pitr_cluster.execute(columns, database) == [("id",), ("name",), ("notes",)]
    rows = pitr_cluster.execute("SELECT count(*), count(*) FILTER (WHERE notes = 'note ' || id)"
                                ' FROM "Dish"', database)
    assert rows == [(40, 40)]
    heads = pitr_cluster.execute('SELECT migration_name FROM "_prisma_migrations" ORDER BY started_at', database)
    assert heads == [("20261206120000_init",)]
    assert run.detail("validate").startswith("head 20261206120000_init;")
    report = run.detail("report")
    assert "migrations undone: 20261206130000_drop_dish_notes; rows lost: Dish 6" in report, report
    assert any(line == "Dish: 46 rows before the restore, 40 after: 6 lost" for line in run.lines("report"))



# --- the drill: the same restore into a scratch copy ------------------------------------------------------

def test_a_drill_restores_a_copy_to_the_target_and_leaves_the_live_cluster_untouched(tmp_path: Path,
                                                                                     pitr_cluster: Any) -> None:
    database, shown = written_around_a_target(pitr_cluster)
    started, system_id = pitr_cluster.postmaster_started(), pitr_cluster.system_id()
    labels = [b.label for b in build(tmp_path, pitr_cluster, database).pitr("production").info().backups]
    timelines = pitr_cluster.timelines()
    run = walk_on_notes(tmp_path, pitr_cluster, database, "pitr-drill", shown)
    after = [b.label for b in build(tmp_path, pitr_cluster, database).pitr("production").info().backups]

    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert run.started() == ["target", "confirm", "drill", "report"]
    assert [q.expected for q in run.asked] == ["production"]
    restore_line = next(line for line in run.lines("drill") if "pgbackrest" in line and " restore" in line)
    assert f"--pg1-path={pitr_cluster.drills}/drill-" in restore_line and "--archive-mode=off" in restore_line
    assert f"--target={shown}.000000+00" in restore_line and "--recovery-option=port=" in restore_line
    assert "--recovery-option=shared_buffers=128MB" in restore_line  # not the live cluster's memory
    # The copy held A and not B: read from the copy, against the live cluster's two rows.
    assert "Note: 2 rows live, 1 at the target: a restore to it would lose 1" in run.lines("report")
    assert "lose rows: Note 1" in run.detail("report")
    assert any(line.startswith("the live cluster is untouched: system ") for line in run.lines("report"))
    # The live cluster: never restarted, the same cluster, both rows, taking writes; the stanza gained no
    # timeline (the promoted copy archived nothing) and no backup; the copy and its log are gone.
    assert pitr_cluster.postmaster_started() == started and pitr_cluster.system_id() == system_id
    assert pitr_cluster.execute('SELECT id, body FROM "Note" ORDER BY id', database) == [(1, "A"), (2, "B")]
    assert pitr_cluster.execute("SELECT pg_is_in_recovery()") == [(False,)]
    assert pitr_cluster.timelines() == timelines and after == labels
    assert list(pitr_cluster.drills.iterdir()) == []


def test_a_drill_to_a_backup_label_from_the_cli(tmp_path: Path, pitr_cluster: Any) -> None:
    newest = json.loads(cli(tmp_path, pitr_cluster, "pitr", "check", "--env", "production", "--json").stdout)
    label = newest["newest"]["full"]["label"]
    done = cli(tmp_path, pitr_cluster, "pitr", "drill", "--env", "production", "--target", label,
               "--confirm-env", "production")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"--set={label}" in done.stdout and "--type=immediate" in done.stdout
    assert f"backup {label} (full) ended at" in done.stdout and "restorable to " in done.stdout
    assert list(pitr_cluster.drills.iterdir()) == []


def test_a_drill_without_room_for_the_copy_is_refused_before_anything_is_made(tmp_path: Path,
                                                                             pitr_cluster: Any) -> None:
    services = build(tmp_path, pitr_cluster, "postgres")
    engine = services.pitr("production")
    label = engine.info().backups[-1].label
    try:
        with pytest.raises(StepFailed, match=r"has [\d.]+ GB free; the copy needs about 1000000\.0 GB"), \
                engine.scratch(RecoveryTarget(backup=label), "drill-room", 10**15, print):
            pass
    finally:
        services.close()
    assert list(pitr_cluster.drills.iterdir()) == []


# --- a repository in S3 ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3_pitr_cluster(rig_dir: Path, s3_endpoint: str, s3_client: Any) -> Iterator[Any]:
    """A second PITR cluster of this module, its repository in the rig's S3 (moto) behind TLS."""
    from rig.pitr_cluster import PitrCluster, S3Repo
    from rig.tls_proxy import tls_proxy

    bucket = unique_bucket_name("rc-pitr")
    s3_client.create_bucket(Bucket=bucket)
    where = rig_dir / f"tls-{bucket}"
    where.mkdir(mode=0o755)  # pgBackRest reads the certificate as postgres
    with tls_proxy(s3_endpoint, where) as tls:
        cluster = PitrCluster(rig_dir, S3Repo(tls.host, tls.port, tls.ca_file, bucket))
        cluster.bucket = bucket
        try:
            yield cluster
        finally:
            cluster.remove()


def test_a_repository_in_s3_is_checked_and_a_drill_restores_from_it(tmp_path: Path, s3_pitr_cluster: Any,
                                                                      s3_client: Any) -> None:
    cluster = s3_pitr_cluster
    done = cli(tmp_path, cluster, "pitr", "check", "--env", "production", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["newest"]["full"]["label"].endswith("F")
    listed = s3_client.list_objects_v2(Bucket=cluster.bucket, Prefix="pitr/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert any(key.startswith(f"pitr/archive/{cluster.stanza}/") for key in keys), keys[:5]
    label = report["newest"]["full"]["label"]
    assert any(key.startswith(f"pitr/backup/{cluster.stanza}/{label}/") for key in keys), keys[:5]

    database, shown = written_around_a_target(cluster)
    run = walk_on_notes(tmp_path, cluster, database, "pitr-drill", shown)
    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert "Note: 2 rows live, 1 at the target: a restore to it would lose 1" in run.lines("report")
    assert list(cluster.drills.iterdir()) == []


# --- Debian's layout: the config outside the data directory --------------------------------------------

@pytest.fixture(scope="module")
def debian_pitr_cluster(rig_dir: Path) -> Iterator[Any]:
    from rig.pitr_cluster import PitrCluster

    cluster = PitrCluster(rig_dir, config_outside=True)
    try:
        yield cluster
    finally:
        cluster.remove()


def test_a_drill_of_a_cluster_whose_config_lives_elsewhere_gives_the_copy_its_own(
        tmp_path: Path, debian_pitr_cluster: Any) -> None:
    """pgBackRest restores the data directory only: the copy gets a minimal config, never the live
    one (whose data_directory names the live cluster's directory)."""
    cluster = debian_pitr_cluster
    assert not (cluster.data / "postgresql.conf").exists()
    database, shown = written_around_a_target(cluster)
    started = cluster.postmaster_started()
    run = walk_on_notes(tmp_path, cluster, database, "pitr-drill", shown)
    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert any("has no postgresql.conf" in line and "a minimal one of its own" in line for line in run.lines("drill"))
    assert "Note: 2 rows live, 1 at the target: a restore to it would lose 1" in run.lines("report")
    assert cluster.postmaster_started() == started
    assert cluster.execute('SELECT id, body FROM "Note" ORDER BY id', database) == [(1, "A"), (2, "B")]
    assert list(cluster.drills.iterdir()) == []
