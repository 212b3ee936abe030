"""The shared audit trail and the release lock against a real PostgreSQL: two bastions, a clone,
a dead holder, an unreachable database, and a production lock break."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from rig import config_builder as toml
from rig.helpers import free_port

from console import cli
from services import factory
from services.adapters.postgres_locks import PostgresLocks
from services.core import config as config_module
from services.core import identity
from services.core.audit import KEYED, AuditLog
from services.core.events import Outcome
from services.core.locks import LockHeld, LockInfo
from services.core.operations import Operation, Step

KEY = "an-audit-key-from-the-vault-0123456789"


def release_file(state_url: str | None = None) -> toml.ReleaseToml:
    """Both environments' databases by ${VAR}; `state_url`: the shared audit trail's own database."""
    where = {"api_url": "http://127.0.0.1:1/", "redis_url": "redis://127.0.0.1:1/0"}
    environments = {
        "staging": toml.environment(**where, database_url=toml.secret("STAGING_DB")),
        "production": toml.environment(**where, database_url=toml.secret("PROD_DB"), production=True)}
    return toml.release(environments, name="food", image="127.0.0.1:5000/food", audit={"key": toml.secret("AUDIT_KEY")},
                        state=None if state_url is None else {"database_url": state_url})


# Not a word ("secret" was): masking is per process, and a registered word masks other tests' text.
UNREACHABLE_PASSWORD = "rc-unreachable-pw-7f3"


def unreachable() -> str:
    return f"postgresql://rc:{UNREACHABLE_PASSWORD}@127.0.0.1:{free_port()}/nowhere"


@pytest.fixture
def release_toml(tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = release_file().write(tmp_path / "release.toml")
    monkeypatch.setenv("AUDIT_KEY", KEY)
    monkeypatch.setenv("STAGING_DB", pg_database)
    monkeypatch.setenv("PROD_DB", pg_database)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-a"))
    return path


def on_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: str) -> None:
    """Be another bastion: its own state dir and host name."""
    monkeypatch.setattr(identity, "hostname", lambda: host)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / f"state-{host}"))


def console(release_toml: Path) -> factory.Services:
    return factory.build(factory.load_config(str(release_toml), False))


def shared_rows(dsn: str) -> list[tuple[int, str, str, str, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute('SELECT id, env, action, host, outcome FROM release_console_audit ORDER BY id').fetchall()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------ audit --


def test_two_bastions_see_each_others_records_in_the_shared_trail(
        release_toml: Path, pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    on_host(monkeypatch, tmp_path, "bastion-a")
    a = console(release_toml)
    a.audit.append("staging", "deploy", {"version": "1.5.0"}, "succeeded: 6 steps done")
    on_host(monkeypatch, tmp_path, "bastion-b")
    b = console(release_toml)
    b.audit.append("staging", "backup", {}, "succeeded: 2 steps done")
    b.audit.append("production", "migrate", {}, "declined")
    assert a.audit.path != b.audit.path
    assert [r["who"]["host"] for r in a.audit.records()] == ["bastion-a"]  # each bastion's own log ...
    assert [r["who"]["host"] for r in b.audit.records()] == ["bastion-b", "bastion-b"]
    # ... and one shared trail, one chain, in the database.
    assert [row[1:4] for row in shared_rows(pg_database)] == [
        ("staging", "deploy", "bastion-a"), ("staging", "backup", "bastion-b"), ("production", "migrate", "bastion-b")]

    on_host(monkeypatch, tmp_path, "bastion-a")  # bastion a reads what b did, with the CLI
    code, out, _ = run_cli(capsys, "--config", str(release_toml), "--json", "audit", "tail", "--env", "staging")
    assert code == cli.EXIT_OK
    records = json.loads(out)
    assert [(r["who"]["host"], r["action"]) for r in records] == [("bastion-a", "deploy"), ("bastion-b", "backup")]
    assert all(r["mode"] == KEYED for r in records)
    code, out, _ = run_cli(capsys, "--config", str(release_toml), "audit", "verify", "--env", "production")
    assert code == cli.EXIT_OK, out
    assert out.startswith("audit chain OK: 3 records (shared trail for production (127.0.0.1:")
    assert "note:" not in out  # keyed throughout


def test_the_local_log_and_the_shared_trail_each_catch_what_was_removed_from_the_other(
        release_toml: Path, pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    on_host(monkeypatch, tmp_path, "bastion-a")
    a = console(release_toml)
    a.audit.append("production", "deploy", {"version": "1.5.0"}, "succeeded: 6 steps done")
    on_host(monkeypatch, tmp_path, "bastion-b")  # another bastion's records are no concern of a's log
    console(release_toml).audit.append("production", "backup", {}, "succeeded: 2 steps done")
    on_host(monkeypatch, tmp_path, "bastion-a")
    code, out, _ = run_cli(capsys, "--config", str(release_toml), "audit", "verify")
    assert code == cli.EXIT_OK and out.startswith("audit chain OK: 1 records"), out

    with psycopg.connect(pg_database, autocommit=True) as conn:  # the shared trail's tail is cut
        saved = conn.execute("SELECT * FROM release_console_audit ORDER BY id").fetchall()
        conn.execute("DELETE FROM release_console_audit WHERE id = (SELECT min(id) FROM release_console_audit)")
    code, out, _ = run_cli(capsys, "--config", str(release_toml), "audit", "verify")
    assert code == cli.EXIT_FAILED and "lacks 1 record(s) this log sent it" in out, out
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("DELETE FROM release_console_audit")
        with conn.cursor() as cursor:
            cursor.executemany(f"INSERT INTO release_console_audit VALUES ({', '.join(['%s'] * len(saved[0]))})",
                               saved)

    a.audit.path.unlink()  # both files: nothing on this bastion remembers the log existed
    a.audit.path.with_suffix(".jsonl.head").unlink()
    code, out, _ = run_cli(capsys, "--config", str(release_toml), "audit", "verify")
    assert code == cli.EXIT_FAILED
    assert "BROKEN" in out and "holds 1 record(s) this log wrote that are not in it" in out
    assert "deploy): the log, or records of it, were removed" in out


def test_a_shared_trail_rolled_back_is_sent_what_it_lost_by_audit_resend(
        release_toml: Path, pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """As a point-in-time restore leaves it: the trail's last rows gone, its chain whole. Only this
    bastion's records go again; the resend is audited; the trail then agrees with the log."""
    on_host(monkeypatch, tmp_path, "bastion-a")
    a = console(release_toml)
    a.audit.append("production", "deploy", {"version": "1.5.0"}, "succeeded: 6 steps done")
    kept = max(row[0] for row in shared_rows(pg_database))
    a.audit.append("production", "migrate", {}, "succeeded: 5 steps done")
    on_host(monkeypatch, tmp_path, "bastion-b")
    console(release_toml).audit.append("production", "backup", {}, "succeeded: 2 steps done")
    on_host(monkeypatch, tmp_path, "bastion-a")
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("DELETE FROM release_console_audit WHERE id > %s", (kept,))
    code, out, _ = run_cli(capsys, "--config", str(release_toml), "audit", "verify")
    assert code == cli.EXIT_FAILED and "lacks 1 record(s) this log sent it" in out, out

    code, out, _ = run_cli(capsys, "--config", str(release_toml), "audit", "resend", "--env", "production")
    assert code == cli.EXIT_OK and out.startswith("re-sent 1 record(s) to the shared trail for production"), out
    assert [row[1:4] for row in shared_rows(pg_database)] == [
        ("production", "deploy", "bastion-a"), ("production", "migrate", "bastion-a"),
        ("production", "audit-resend", "bastion-a")]  # not bastion b's backup: b's own log sends it
    for words in (["audit", "verify"], ["audit", "verify", "--env", "production"]):
        code, out, _ = run_cli(capsys, "--config", str(release_toml), *words)
        assert code == cli.EXIT_OK and out.startswith("audit chain OK"), out
    code, out, _ = run_cli(capsys, "--config", str(release_toml), "--json", "audit", "resend", "--env", "production")
    assert code == cli.EXIT_OK and json.loads(out) == {"resent": 0}


def rechain_shared(dsn: str, row_id: int) -> None:
    """Rewrite one shared record and recompute the chain after it, as anyone with table access can."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id, record FROM release_console_audit ORDER BY id").fetchall()
        prev = "0" * 64
        for rid, text in rows:
            record = json.loads(text)
            if rid == row_id:
                record["outcome"] = "succeeded: nothing to see"
            record["prev"] = prev
            body = json.dumps({k: v for k, v in record.items() if k != "hash"}, sort_keys=True).encode()
            record["hash"] = prev = hashlib.sha256(body).hexdigest()
            conn.execute("UPDATE release_console_audit SET record = %s, hash = %s, outcome = %s WHERE id = %s",
                         (json.dumps(record, sort_keys=True), record["hash"], record["outcome"], rid))


def test_a_rewritten_and_rechained_shared_record_is_detected(
        release_toml: Path, pg_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    services = console(release_toml)
    for outcome in ("started", "failed: migration 3 of 4", "succeeded"):
        services.audit.append("production", "migrate", {}, outcome)
    assert services.audit.verify_shared("production").ok
    second = shared_rows(pg_database)[1][0]
    rechain_shared(pg_database, second)
    code, out, _ = run_cli(capsys, "--config", str(release_toml), "audit", "verify", "--env", "production")
    assert code == cli.EXIT_FAILED
    assert "audit chain BROKEN at row" in out and "HMAC does not match" in out

    # A column edited beside its sealed record is an edit too.
    with psycopg.connect(pg_database) as conn:
        conn.execute("TRUNCATE release_console_audit")
    services.audit.append("production", "migrate", {}, "failed")
    with psycopg.connect(pg_database) as conn:
        conn.execute("UPDATE release_console_audit SET outcome = 'succeeded'")
    assert not services.audit.verify_shared("production").ok


def test_a_record_the_shared_trail_cannot_take_is_kept_pending_then_sent(
        tmp_path: Path, pg_database: str, release_toml: Path) -> None:
    config = factory.load_config(str(release_toml), False)
    down = config.model_copy(update={"state": config_module.StateConfig(database_url=unreachable())})
    from services.adapters.postgres_audit import PostgresAuditTrail

    log = AuditLog(tmp_path / "audit.jsonl", config.audit.key, PostgresAuditTrail(down))
    log.append("production", "backup", {}, "succeeded")
    assert log.shared_problem is not None and "kept locally" in log.shared_problem
    assert UNREACHABLE_PASSWORD not in log.shared_problem  # the DSN's password is never named
    assert len((tmp_path / "audit.jsonl.pending").read_text().splitlines()) == 1
    assert [r["action"] for r in log.records()] == ["backup"]  # nothing lost locally

    up = AuditLog(tmp_path / "audit.jsonl", config.audit.key, PostgresAuditTrail(config))
    result = up.verify()  # sends what was pending first
    assert result.ok and result.pending == 0
    assert [row[2] for row in shared_rows(pg_database)] == ["backup"]
    up.append("production", "restore", {}, "started")
    assert [row[2] for row in shared_rows(pg_database)] == ["backup", "restore"]
    assert up.verify_shared("production").ok


def test_an_operation_reports_in_its_log_that_the_shared_trail_missed_its_records(
        tmp_path: Path, release_toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release_file(state_url=unreachable()).write(release_toml)
    services = factory.build(factory.load_config(str(release_toml), False), state=tmp_path / "s")
    events: list[object] = []
    operation = Operation("check", "staging", "check", [Step("a", "A", lambda ctx: "ok")], takes_lock=False)
    result = services.runner.run(operation, events.append, lambda q: None)
    assert result.outcome is Outcome.SUCCEEDED
    warnings = [e.text for e in events if getattr(e, "level", "") == "warning"]  # type: ignore[attr-defined]
    assert warnings and all("kept locally" in w for w in warnings)
    assert len(list(services.audit.records())) == 2


# ------------------------------------------------------------------------------------------ locks --


def insert_lock(dsn: str, pid: int, boot_id: str, host: str | None = None, start_ticks: int = 99) -> LockInfo:
    PostgresLocks(dsn)  # the table, migrated
    host = host or identity.hostname()
    info = LockInfo("production", f"alice@{host}", "203.0.113.9 50000 22", pid, time.time() - 90, "migrate by alice",
                    host, boot_id, start_ticks)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO release_console_lock (env, holder, ssh_client, pid, since, reason, host, boot_id,"
                     " start_ticks) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                     (info.env, info.holder, info.ssh_client, info.pid, info.since, info.reason, info.host,
                      info.boot_id, info.start_ticks))
    return info


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_old_lock_table_is_migrated_in_place(pg_database: str) -> None:
    with psycopg.connect(pg_database) as conn:
        conn.execute("CREATE TABLE release_console_lock (env text PRIMARY KEY, holder text NOT NULL, ssh_client text"
                     " NOT NULL, pid integer NOT NULL, since double precision NOT NULL, reason text NOT NULL)")
        conn.execute("INSERT INTO release_console_lock VALUES ('staging', 'bob@old', '', 7, 0, 'old')")
    locks = PostgresLocks(pg_database)
    held = locks.holder("staging")
    assert held is not None and (held.holder, held.boot_id, held.start_ticks) == ("bob@old", "", 0)
    with pytest.raises(LockHeld):  # no boot id recorded: never taken over
        locks.acquire("staging", "mine")


def test_same_host_name_with_another_boot_id_is_not_taken_over(pg_database: str) -> None:
    clone = insert_lock(pg_database, dead_pid(), "boot-id-of-a-clone-of-this-machine")
    locks = PostgresLocks(pg_database)
    taken: list[LockInfo] = []
    with pytest.raises(LockHeld) as caught:
        locks.acquire("production", "mine", taken.append)
    assert caught.value.info == clone and taken == []
    assert locks.holder("production") == clone


def test_a_dead_holder_on_this_boot_is_taken_over_and_audited_first(
        release_toml: Path, pg_database: str) -> None:
    dead = insert_lock(pg_database, dead_pid(), identity.boot_id())
    services = console(release_toml)
    seen_during: list[LockInfo | None] = []

    def step(ctx: object) -> str:
        seen_during.append(services.locks.holder("production"))
        return "ok"

    operation = Operation("deploy", "production", "deploy", [Step("a", "A", step)])
    result = services.runner.run(operation, lambda e: None, lambda q: None)
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert seen_during[0] is not None and seen_during[0].pid == os.getpid()
    assert services.locks.holder("production") is None
    local = [r for r in services.audit.records() if r["action"] == "lock-takeover"]
    assert len(local) == 1 and local[0]["params"]["from"]["pid"] == dead.pid
    assert local[0]["params"]["from"]["boot_id"] == identity.boot_id()
    assert [row[2:5:2] for row in shared_rows(pg_database)][0] == (
        "lock-takeover", f"taken over: alice@{identity.hostname()}'s process {dead.pid} is gone (same host and boot)")


def test_a_pid_reused_by_another_process_is_a_dead_holder(pg_database: str) -> None:
    insert_lock(pg_database, os.getppid(), identity.boot_id(), start_ticks=1)  # alive, but not the holder
    mine = PostgresLocks(pg_database).acquire("production", "mine")
    assert PostgresLocks(pg_database).holder("production") == mine


def test_an_unreachable_database_shows_the_lock_as_unknown(
        release_toml: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PROD_DB", unreachable())
    base = ["--config", str(release_toml)]
    code, out, _ = run_cli(capsys, *base, "lock", "status")
    assert code == cli.EXIT_FAILED
    production = next(line for line in out.splitlines() if line.startswith("production"))
    assert production.split()[1] == "unknown:" and "free" not in production
    assert UNREACHABLE_PASSWORD not in out
    assert next(line for line in out.splitlines() if line.startswith("staging")).split()[1] == "free"
    code, out, _ = run_cli(capsys, *base, "--json", "lock", "status")
    assert json.loads(out)["production"]["state"] == "unknown"
    code, out, _ = run_cli(capsys, *base, "status")
    assert code == cli.EXIT_FAILED
    row = next(line for line in out.splitlines() if line.startswith("production"))
    assert "unknown: cannot connect" in row and not row.endswith("free")
    code, out, _ = run_cli(capsys, *base, "--json", "status", "--env", "production")
    assert json.loads(out)[0]["lock"].startswith("unknown: ")


TRIGGER = """
CREATE TABLE deleted_seen (breaking_records bigint);
CREATE FUNCTION note_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO deleted_seen SELECT count(*) FROM release_console_audit
   WHERE action = 'lock-break' AND outcome = 'breaking';
  RETURN OLD;
END $$;
CREATE TRIGGER note_delete AFTER DELETE ON release_console_lock FOR EACH ROW EXECUTE FUNCTION note_delete();
"""


def test_a_production_lock_break_needs_the_name_typed_and_is_audited_before_the_delete(
        release_toml: Path, pg_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    live = insert_lock(pg_database, 1, "another-machine", host="bastion-2")
    console(release_toml).audit.append("production", "deploy", {}, "started")  # the shared table exists
    with psycopg.connect(pg_database) as conn:
        conn.execute(TRIGGER)
    base = ["--config", str(release_toml), "lock", "break", "--env", "production", "--reason", "alice is off shift"]

    for typed, said in (([], "no terminal; pass --confirm-env production"), (["--confirm-env", "staging"], "")):
        code, out, err = run_cli(capsys, *base, *typed)
        assert code == cli.EXIT_DECLINED, out + err
        assert "production is locked by alice@bastion-2 (pid 1)" in out  # the holder is shown
        assert "Type 'production' to confirm" in out + err and said in err
        assert PostgresLocks(pg_database).holder("production") == live  # nothing deleted
    services = console(release_toml)
    declined = [r for r in services.audit.records() if r["action"] == "lock-break"]
    assert [r["outcome"].split(":")[0] for r in declined] == ["started", "declined"] * 2
    assert {r["override_reason"] for r in declined} == {"alice is off shift"}

    code, out, err = run_cli(capsys, *base, "--confirm-env", "production")
    assert code == cli.EXIT_OK, err
    assert "released production's lock held by alice@bastion-2" in out
    assert PostgresLocks(pg_database).holder("production") is None
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT breaking_records FROM deleted_seen").fetchall() == [(1,)]  # audited first
    records = [r for r in services.audit.records() if r["action"] == "lock-break"][4:]
    assert [r["outcome"].split(":")[0] for r in records] == ["started", "breaking", "succeeded"]
    assert records[1]["params"]["holder"]["boot_id"] == "another-machine"
    shared = [row[4].split(":")[0] for row in shared_rows(pg_database) if row[2] == "lock-break"]
    assert shared[4:] == ["started", "breaking", "succeeded"]
    assert services.audit.verify().ok and services.audit.verify_shared("production").ok


def test_a_break_deletes_only_the_holder_it_showed(pg_database: str) -> None:
    shown = insert_lock(pg_database, 1, "another-machine", host="bastion-2")
    locks = PostgresLocks(pg_database)
    with psycopg.connect(pg_database) as conn:  # between reading and deleting, the lock changed hands
        conn.execute("UPDATE release_console_lock SET pid = 2, since = since + 1")
    assert locks.force_release("production", shown) is False
    assert locks.holder("production") is not None and locks.holder("production").pid == 2  # type: ignore[union-attr]
