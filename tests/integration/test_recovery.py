"""The disaster-recovery walkthrough for real: PostgreSQL of the rig, backups in a local
directory, the sample app in Docker stopped and started by the `docker` CLI through
[environments.production.services], and its /api/health checked over HTTP."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from rig import config_builder as toml
from rig.helpers import SampleApp, scratch_databases, wait_until
from rig.walk import Walk

from services import factory
from services.adapters.postgres_locks import PostgresLocks
from services.backups.catalog import list_backups
from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import (
    Event,
    LogLine,
    Outcome,
    StepFinished,
    StepStarted,
    StepStatus,
)

ROOT = Path(__file__).resolve().parents[2]
ENV = {"SIGNING_KEY": "recovery-test-key", "AWS_KEY": "testing", "AWS_SECRET": "testing"}
Command = Callable[[str], list[str]]  # the container's name -> a stop or start command
ORDER = ["choose", "confirm", "download", "verify", "stop", "restore-db", "restore-files", "validate", "start",
         "health", "report"]


def release_toml(tmp_path: Path, dsn: str, app: SampleApp, stop: list[str], start: list[str],
                 s3: dict[str, Any] | None = None) -> Path:
    production = toml.environment(api_url=f"http://127.0.0.1:{app.port}/api", database_url=dsn, production=True,
                                  app_dir="app", stop=stop, start=start)
    return toml.release(
        {"production": production},
        backup=toml.backup(app_paths=["."], signing_key=toml.secret("SIGNING_KEY"), s3=s3),
        recovery={"health_tries": 20, "health_interval_s": 0.5},
        migrations={"dir": "app/prisma/migrations", "integrity_tables": ["Ingredient"]},
    ).write(tmp_path / "release.toml")


class Rig:
    """One production environment: its database, app dir, container and config."""

    def __init__(self, tmp_path: Path, dsn: str, app: SampleApp, docker: list[str],
                 start: Command | None = None, stop: Command | None = None, s3: dict[str, Any] | None = None) -> None:
        self.tmp_path, self.dsn, self.app = tmp_path, dsn, app
        self.name = app.container.name
        migrations = tmp_path / "app" / "prisma" / "migrations"
        migrations.mkdir(parents=True)
        (migrations / "migration_lock.toml").write_text('provider = "postgresql"\n')
        (tmp_path / "app" / "package.json").write_text('{"name": "food-management", "version": "1.4.1"}\n')
        (tmp_path / "app" / "src").mkdir()
        (tmp_path / "app" / "src" / "page.tsx").write_text("export default function Page() {}\n")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute('CREATE TABLE "Ingredient" (id int PRIMARY KEY, name text NOT NULL)')
            conn.execute("""INSERT INTO "Ingredient" SELECT g, 'fresh ' || g FROM generate_series(1, 500) g""")
        self.config_path = release_toml(tmp_path, dsn, app, (stop or (lambda name: [*docker, "stop", name]))(self.name),
                                        (start or (lambda name: [*docker, "start", name]))(self.name), s3)

    def services(self) -> factory.Services:
        return factory.build(config_module.load(self.config_path, ENV), state=self.tmp_path / "state")

    def backup(self) -> str:
        run = Walk(self.services(), "backup")
        assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
        return run.detail("backup").removeprefix("backup ").removesuffix(" complete")

    def spoil(self) -> None:
        """What the restore must undo: rows changed and deleted, a file edited, one removed."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("""UPDATE "Ingredient" SET name = 'spoiled'""")
            conn.execute('DELETE FROM "Ingredient" WHERE id > 250')
        (self.tmp_path / "app" / "package.json").write_text("{}\n")
        (self.tmp_path / "app" / "src" / "page.tsx").unlink()
        (self.tmp_path / "app" / "node_modules").mkdir()
        (self.tmp_path / "app" / "node_modules" / "kept.js").write_text("1\n")

    def rows(self) -> tuple[int, int]:
        """(rows, rows named 'spoiled')"""
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute("""SELECT count(*), count(*) FILTER (WHERE name = 'spoiled') FROM "Ingredient" """)
            count, spoiled = row.fetchone() or (0, 0)
        return int(count), int(spoiled)

    def container_state(self) -> dict[str, Any]:
        self.app.container.reload()
        return dict(self.app.container.attrs["State"])


@pytest.fixture
def rig(tmp_path: Path, pg_database: str, run_sample_app: Callable[..., SampleApp],
        docker_cli: list[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Rig]:
    monkeypatch.setenv("SIGNING_KEY", "recovery-test-key")  # the validate step loads the config again
    def make(start: Command | None = None, stop: Command | None = None, s3: dict[str, Any] | None = None) -> Rig:
        return Rig(tmp_path, pg_database, run_sample_app(VERSION="1.4.1"), docker_cli, start, stop, s3)

    return make


def container_events(docker_client: Any, name: str, since: float) -> list[str]:
    found = docker_client.events(since=int(since), until=int(time.time()) + 1, decode=True,
                                 filters={"type": "container", "container": name})
    return [e["Action"] for e in found if e["Action"] in ("stop", "die", "start") and e["timeNano"] / 1e9 >= since]


def test_walkthrough_restores_data_and_files_and_brings_the_app_back(rig: Callable[..., Rig],
                                                                   docker_client: Any) -> None:
    env = rig()
    # A lock row at backup time, as when a migrate deploy takes its backup holding the release lock:
    # the console's own tables are left out of the dump, so the restore neither brings the ghost
    # back nor rolls the shared audit trail back to backup time.
    ghost = PostgresLocks(env.dsn)
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO release_console_lock VALUES ('production', 'ghost@elsewhere', '', 4242, 0, 'x')")
    backup_id = env.backup()
    ghost.force_release("production", ghost.holder("production"))  # type: ignore[arg-type]
    env.spoil()
    assert env.rows() == (250, 250)
    began = time.time()

    services = env.services()
    run = Walk(services, "restore")

    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert run.started() == ORDER
    assert [q.expected for q in run.asked] == ["production"]
    assert run.detail("choose").startswith(f"{backup_id} (")
    assert run.detail("verify") == "2 of 2 sha256 match"
    assert run.lines("stop")[0] == f"$ docker -H {os.environ['RC_DOCKER_URL']} stop {env.name}"
    assert run.detail("stop") == "stopped"
    assert run.detail("restore-db") == f"restored {backup_id}"
    assert not any("lock row from the backup" in line for line in run.lines("restore-db"))
    assert run.detail("restore-files") == "restored"
    assert run.lines("restore-files")[0] == f"restoring into {env.tmp_path / 'app'}"
    assert run.detail("validate") == "config, database, app dir ok; FAILING redis"  # no Redis serves its redis_url
    assert run.detail("health").startswith("healthy after ")
    assert '"status":"ok"' in run.lines("health")[-1]
    assert re.fullmatch(r"RTO \S+, services down \S+", run.detail("report"))

    assert env.rows() == (500, 0)  # the data is back
    app = env.tmp_path / "app"
    assert json.loads((app / "package.json").read_text())["version"] == "1.4.1"
    assert (app / "src" / "page.tsx").is_file()
    assert (app / "node_modules" / "kept.js").is_file()  # excluded from backups: left alone
    happened = container_events(docker_client, env.name, began)
    assert happened.index("stop") < happened.index("start"), happened
    assert env.container_state()["Running"]
    assert services.locks.holder("production") is None  # neither ours nor the ghost's
    with psycopg.connect(env.dsn) as conn:  # records made after the backup survive the restore
        shared = [row[0] for row in conn.execute("SELECT outcome FROM release_console_audit WHERE action = 'restore'")]
    assert shared[0] == "started" and shared[-1].startswith("succeeded"), shared
    record = services.journal.get(run.result.op_id)
    assert [s.status for s in record.steps] == [StepStatus.DONE] * len(ORDER)


def ingredient(prompt: list[str]) -> list[str]:
    """The confirmation's line for the Ingredient table: rows now, in the backup, the change."""
    [line] = [line.split()[1:] for line in prompt if line.startswith("  Ingredient ")]
    return line


def test_the_confirmation_names_what_is_lost_and_an_unreachable_database_does_not_fail_it(
        rig: Callable[..., Rig]) -> None:
    env = rig()
    backup_id = env.backup()
    manifest = json.loads((env.tmp_path / "backups" / "production" / backup_id / "manifest.json").read_text())
    assert manifest["row_counts"] == {"Ingredient": 500} and "signature" in manifest  # counted, then signed
    env.spoil()  # 250 rows deleted since the backup

    run = Walk(env.services(), "restore", answer=None)  # declined: the prompt is all this test wants

    assert run.result.outcome is Outcome.DECLINED and run.started() == ORDER[:2]
    prompt = run.asked[0].prompt.splitlines()
    assert prompt[1] == f"Plan: restore backup {backup_id},"
    assert re.fullmatch(r"taken \d{4}-\d\d-\d\d \d\d:\d\d UTC, \d+ min ago\.", prompt[2]), prompt[2]
    assert prompt[3] == "Every write to production since then will be LOST."
    assert ingredient(prompt) == ["250", "500", "-250"]  # now, in the backup, the change since
    assert "Backup counts: from its signed manifest" in prompt
    assert env.rows() == (250, 250) and env.container_state()["Running"]

    # The live rows cannot be read (here a session stuck holding the table's lock, past the console's
    # lock_timeout): the confirmation says so, and still asks. (A database server that is down stops a
    # restore earlier: the release lock lives in that database.)
    stuck = env.tmp_path / "stuck.toml"
    stuck.write_text(env.config_path.read_text() + "\n[database]\nlock_timeout_s = 0.5\n")
    services = factory.build(config_module.load(stuck, {"SIGNING_KEY": "recovery-test-key"}),
                             state=env.tmp_path / "state")
    with psycopg.connect(env.dsn) as holder:
        holder.execute('LOCK TABLE "Ingredient" IN ACCESS EXCLUSIVE MODE')
        run = Walk(services, "restore", answer=None)

    assert run.result.outcome is Outcome.DECLINED and [q.expected for q in run.asked] == ["production"]
    text = run.asked[0].prompt
    assert "The live database cannot be read now: " in text and "lock_timeout_s" in text
    assert ingredient(text.splitlines()) == ["?", "500", "?"]
    assert "Every write to production since then will be LOST." in text
    loss = services.journal.get(run.result.op_id).state["loss"]
    assert loss["rows"] == {"Ingredient": {"now": None, "backup": 500}} and "lock_timeout_s" in loss["now_problem"]
    assert env.rows() == (250, 250)


def test_health_that_never_comes_up_fails_at_its_step_with_next_options(rig: Callable[..., Rig]) -> None:
    env = rig(start=lambda name: ["true"])  # the stop works; the start command starts nothing
    env.backup()
    env.spoil()

    services = env.services()
    run = Walk(services, "restore", health_tries="3", health_interval_s="0.2")

    assert run.result.outcome is Outcome.FAILED and run.result.failed_step == "health"
    assert "not healthy after 3 tries 0.2s apart" in run.result.detail
    assert "the services were started on the restored data" in run.result.detail
    assert [line.split(":")[0] for line in run.lines("health")] == ["try 1/3", "try 2/3", "try 3/3"]
    assert "ConnectError" in run.lines("health")[0]
    assert run.finished().next_options[0].startswith("look at the app's logs")
    steps = services.journal.get(run.result.op_id).steps
    assert [s.status for s in steps][ORDER.index("health"):] == [StepStatus.FAILED, StepStatus.PENDING]
    assert env.rows() == (500, 0)  # restored; only the app did not come back
    assert not env.container_state()["Running"]


def test_damaged_backup_is_refused_at_verify_before_anything_live_is_touched(rig: Callable[..., Rig],
                                                                             docker_client: Any) -> None:
    env = rig()
    backup_id = env.backup()
    dump = next((env.tmp_path / "backups" / "production" / backup_id).glob("db.pgdump.*"))
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    env.spoil()
    began = time.time()

    run = Walk(env.services(), "restore")

    assert run.result.outcome is Outcome.FAILED and run.result.failed_step == "verify"
    assert f"{dump.name} does not match the manifest's sha256" in run.result.detail
    assert "nothing live was changed; the services still run" in run.result.detail
    assert run.started() == ORDER[: ORDER.index("verify") + 1]
    assert env.rows() == (250, 250)  # the database is as it was
    assert env.container_state()["Running"] and container_events(docker_client, env.name, began) == []


WORKER = """
import json, sys
from pathlib import Path
from services import factory
from services.core import config as config_module
from services.catalog import build_operation
from services.core.events import StepStarted

services = factory.build(config_module.load(Path(sys.argv[1]), {"SIGNING_KEY": "recovery-test-key"}),
                         state=Path(sys.argv[2]))
op = build_operation(services, "restore", "production", {})

def emit(event):
    if isinstance(event, StepStarted):
        print(json.dumps({"started": event.step_id, "op": event.op_id}), flush=True)

services.runner.run(op, emit, lambda question: "production")
print(json.dumps({"finished": True}), flush=True)
"""


def test_killed_walkthrough_resumes_at_its_step_and_completes(rig: Callable[..., Rig], docker_cli: list[str],
                                                              docker_client: Any, tmp_path: Path) -> None:
    # A slow stop (a service draining its connections): the console dies while it runs.
    stopping = tmp_path / "stop-started"
    mark = f"touch {shlex.quote(str(stopping))}"
    env = rig(stop=lambda name: ["sh", "-c", f"{mark}; sleep 2; exec {' '.join(docker_cli)} stop {name}"])
    env.backup()
    env.spoil()
    state = env.tmp_path / "state"
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(env.config_path), str(state)], cwd=env.tmp_path,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None
    op_id = None
    try:
        for line in worker.stdout:
            message = json.loads(line)
            assert "finished" not in message, "the walkthrough finished before it could be killed"
            op_id = message.get("op", op_id)
            if message.get("started") == "stop":
                wait_until(stopping.exists, timeout=30, interval=0.05, what="the stop command to start")
                break
        else:
            pytest.fail(f"worker exited with {worker.wait()} before the stop step")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    assert op_id is not None

    services = env.services()
    interrupted = services.journal.interrupted()
    assert [r.id for r in interrupted] == [op_id]
    record = interrupted[0]
    assert record.resume_index == ORDER.index("stop")
    assert {"backup_id", "work_dir", "files", "digests", "started_at"} <= set(record.state)
    assert Path(record.state["files"]["app.tar.gz"]).is_file()  # the verified working copy is still there

    events: list[Event] = []
    op = build_operation(services, record.kind, record.env, record.params)
    op.id = record.id
    result = services.runner.run(op, events.append, lambda question: None, start_at=record.resume_index,
                                 state=record.state)

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert [e.step_id for e in events if isinstance(e, StepStarted)] == ORDER[ORDER.index("stop"):]
    assert env.rows() == (500, 0)
    assert env.container_state()["Running"]
    after = services.journal.get(op_id)
    assert after.status == "done" and [s.status for s in after.steps] == [StepStatus.DONE] * len(ORDER)
    assert services.locks.holder("production") is None  # the dead worker's lock was taken over, then released
    outcomes = [r["outcome"] for r in services.audit.records() if r["params"].get("op_id") == op_id]
    # The takeover of the dead worker's lock is audited before the resume.
    assert outcomes[0] == "started" and outcomes[1].startswith("taken over: ") and "is gone" in outcomes[1]
    assert outcomes[2] == "resumed" and outcomes[3].startswith("succeeded")


def test_drill_restores_into_scratch_reports_rto_and_leaves_production_alone(rig: Callable[..., Rig],
                                                                           docker_client: Any) -> None:
    env = rig()
    backup_id = env.backup()
    env.spoil()
    began = time.time()

    services = env.services()
    run = Walk(services, "restore-drill", health_url=f"{env.app.url}/api/health")

    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    # Nothing live is touched, but it restores what the backup holds: production asks for the name.
    assert [q.expected for q in run.asked] == ["production"]
    assert any("signature matches the signing key" in line for line in run.lines("download"))
    assert run.detail("stop") == "skipped"
    assert run.detail("start") == "skipped"
    assert run.detail("restore-db") == "1 table restored and read; dropped"
    assert any(line.startswith("scratch database answers: Ingredient 500 rows") for line in run.lines("restore-db"))
    assert run.detail("restore-files") == "restored"
    assert run.detail("health") == "healthy after 1 try"
    assert run.detail("report").startswith("drill RTO ")

    assert env.rows() == (250, 250)  # the live database is untouched
    assert json.loads((env.tmp_path / "app" / "package.json").read_text()) == {}  # and the live files
    assert container_events(docker_client, env.name, began) == []
    assert scratch_databases(env.dsn, of=env.dsn) == []
    assert services.locks.holder("production") is None
    verified = next(b for b in list_backups(services, "production") if b.id == backup_id)
    assert verified.verified_at is not None and verified.restore_s is not None


# --- from S3 --------------------------------------------------------------------------------------


@pytest.fixture
def s3_rig(rig: Callable[..., Rig], s3_endpoint: str, s3_client: Any, bucket_name: str,
           monkeypatch: pytest.MonkeyPatch) -> Callable[..., Rig]:
    """The rig with backups going to moto's S3 over HTTP: the backup lives only there."""
    s3_client.create_bucket(Bucket=bucket_name)
    monkeypatch.setenv("AWS_KEY", "testing")  # the validate step loads the config again
    monkeypatch.setenv("AWS_SECRET", "testing")
    store = toml.s3_store(bucket_name, prefix="food-management/", endpoint_url=s3_endpoint,
                          access_key_id=toml.secret("AWS_KEY"), secret_access_key=toml.secret("AWS_SECRET"))

    def make(**commands: Command) -> Rig:
        return rig(s3=store, **commands)

    return make


def backup_in_s3_only(env: Rig, s3_client: Any, bucket: str) -> str:
    backup_id = env.backup()
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"food-management/production/{backup_id}/manifest.json" in keys
    assert not (env.tmp_path / "backups" / "production" / backup_id).exists()  # nothing in the local store
    return backup_id


def test_drill_from_s3_restores_into_scratch_and_reports_rto(s3_rig: Callable[..., Rig], s3_client: Any,
                                                              bucket_name: str) -> None:
    env = s3_rig()
    backup_id = backup_in_s3_only(env, s3_client, bucket_name)
    env.spoil()

    services = env.services()
    run = Walk(services, "restore-drill")

    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert run.detail("choose").startswith(f"{backup_id} (")
    assert run.detail("download").endswith(" from s3")
    assert any("signature matches the signing key" in line for line in run.lines("download"))
    assert run.detail("verify") == "2 of 2 sha256 match"
    assert run.detail("restore-db") == "1 table restored and read; dropped"
    assert any(line.startswith("scratch database answers: Ingredient 500 rows") for line in run.lines("restore-db"))
    assert re.fullmatch(r"drill RTO \S+.*", run.detail("report")), run.detail("report")
    assert env.rows() == (250, 250) and scratch_databases(env.dsn, of=env.dsn) == []  # nothing live touched


def test_walkthrough_restores_from_s3_into_the_rig_database(s3_rig: Callable[..., Rig], s3_client: Any,
                                                            bucket_name: str) -> None:
    env = s3_rig()
    backup_id = backup_in_s3_only(env, s3_client, bucket_name)
    env.spoil()

    run = Walk(env.services(), "restore")

    assert run.result.outcome is Outcome.SUCCEEDED, run.result.detail
    assert run.detail("download").endswith(" from s3")
    assert run.detail("restore-db") == f"restored {backup_id}"
    assert run.detail("health").startswith("healthy after ")
    assert env.rows() == (500, 0)
    assert json.loads((env.tmp_path / "app" / "package.json").read_text())["version"] == "1.4.1"
    assert env.container_state()["Running"]


def test_a_download_from_s3_cancelled_midway_resumes_from_its_byte_and_verifies(
        s3_rig: Callable[..., Rig], s3_client: Any, bucket_name: str) -> None:
    env = s3_rig()
    blob = os.urandom(3 << 20)  # incompressible: app.tar.gz is ~3 MB, several 1 MiB chunks
    (env.tmp_path / "app" / "assets").mkdir()
    (env.tmp_path / "app" / "assets" / "blob.bin").write_bytes(blob)
    backup_id = backup_in_s3_only(env, s3_client, bucket_name)
    dump_name = next(o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket_name)["Contents"]
                     if "/db.pgdump" in o["Key"]).rsplit("/", 1)[1]

    # Cancelled once the dump is down: the first chunk of app.tar.gz is written, then the step stops.
    cancel = threading.Event()
    events: list[Event] = []

    def emit(event: Event) -> None:
        events.append(event)
        if isinstance(event, LogLine) and event.step_id == "download" and event.text.startswith(f"{dump_name}: "):
            cancel.set()

    services = env.services()
    first = services.runner.run(build_operation(services, "restore-drill", "production", {}), emit,
                                lambda question: "production", cancel=cancel)
    assert first.outcome is Outcome.CANCELLED, first.detail
    assert first.failed_step == "download"
    record = services.journal.get(first.op_id)
    work = Path(record.state["work_dir"])
    partial = work / "app.tar.gz.partial"
    size = s3_client.head_object(Bucket=bucket_name,
                                 Key=f"food-management/production/{backup_id}/app.tar.gz")["ContentLength"]
    have = partial.stat().st_size
    assert 0 < have < size and (work / dump_name).is_file() and not (work / "app.tar.gz").exists()

    # A new process resumes the journaled operation at the download step.
    services = env.services()
    ranges: list[str | None] = []
    services.store.client.meta.events.register(  # type: ignore[attr-defined]
        "before-send.s3.GetObject", lambda request, **_: ranges.append(request.headers.get("Range")) and None)
    resumed: list[Event] = []
    op = build_operation(services, record.kind, record.env, record.params)
    op.id = record.id
    result = services.runner.run(op, resumed.append, lambda question: "production", start_at=record.resume_index,
                                 state=record.state)

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert [e.step_id for e in resumed if isinstance(e, StepStarted)][0] == "download"
    lines = [e.text for e in resumed if isinstance(e, LogLine) and e.step_id == "download"]
    assert any(line.startswith(f"{dump_name}: already in the working copy") for line in lines), lines
    assert any(line.startswith("app.tar.gz: ") and "already downloaded, the rest follows" in line for line in lines)
    assert f"bytes={have}-" in [r.decode() if isinstance(r, bytes) else r for r in ranges]  # only the rest
    assert next(e.detail for e in resumed if isinstance(e, StepFinished) and e.step_id == "verify") \
        == "2 of 2 sha256 match"
    assert next(e.detail for e in resumed if isinstance(e, StepFinished) and e.step_id == "restore-db") \
        == "1 table restored and read; dropped"
