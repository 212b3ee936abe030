"""services.adapters.postgres_locks.PostgresLocks against a real PostgreSQL: other holders are other processes."""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from services.adapters.postgres_locks import PostgresLocks
from services.core.locks import LockHeld

ROOT = Path(__file__).resolve().parents[2]

# Another console: runs one lock command, prints the result as JSON, then (if asked) stays alive
# until its stdin closes, so that its pid is a live holder.
OTHER = """
import json, sys
from services.adapters.postgres_locks import PostgresLocks
from services.core.locks import LockHeld
dsn, command, env, stay = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "stay"
locks = PostgresLocks(dsn)
try:
    if command == "acquire":
        info = locks.acquire(env, "release 1.4.9 from the other bastion")
        out = {"acquired": True, "pid": info.pid}
    else:
        locks.release(env)
        out = {"released": True}
except LockHeld as held:
    out = {"held": str(held), "holder": held.info.holder, "pid": held.info.pid, "reason": held.info.reason}
print(json.dumps(out), flush=True)
if stay:
    sys.stdin.read()
"""


@contextmanager
def other_console(dsn: str, command: str, env: str = "production",
                  stay: bool = True) -> Iterator[tuple[subprocess.Popen[str], dict[str, object]]]:
    proc = subprocess.Popen([sys.executable, "-c", OTHER, dsn, command, env, "stay" if stay else "exit"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline()
        assert line, f"the other console exited with {proc.wait()}"
        yield proc, json.loads(line)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def me() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@pytest.fixture
def locks(pg_database: str) -> PostgresLocks:
    return PostgresLocks(pg_database)


def test_acquire_records_the_holder(locks: PostgresLocks) -> None:
    before = time.time()
    info = locks.acquire("production", "migrate 20240801120000_add_expiry_date")
    held = locks.holder("production")
    assert held == info
    assert held.holder == me()
    assert held.pid == os.getpid()
    assert held.reason == "migrate 20240801120000_add_expiry_date"
    assert before - 1 <= held.since <= time.time() + 1
    assert locks.holder("staging") is None  # one lock per environment
    assert held.describe().startswith(f"{me()} (pid {os.getpid()}) for 0m0")


def test_lock_is_one_row_visible_to_every_connection(locks: PostgresLocks, pg_database: str) -> None:
    locks.acquire("staging", "canary")
    with psycopg.connect(pg_database) as conn:
        rows = conn.execute("SELECT env, holder, pid, reason FROM release_console_lock").fetchall()
    assert rows == [("staging", me(), os.getpid(), "canary")]
    assert PostgresLocks(pg_database).holder("staging") is not None  # a second instance sees it


def test_second_acquire_from_another_process_is_refused(locks: PostgresLocks, pg_database: str) -> None:
    locks.acquire("production", "release 1.5.0")
    with other_console(pg_database, "acquire") as (proc, out):
        assert "acquired" not in out
        assert out["holder"] == me()
        assert out["pid"] == os.getpid() != proc.pid
        assert out["reason"] == "release 1.5.0"
        assert f"production is locked by {me()} (pid {os.getpid()})" in str(out["held"])
    assert locks.holder("production").pid == os.getpid()  # type: ignore[union-attr]


def test_we_are_refused_while_another_process_holds_it(locks: PostgresLocks, pg_database: str) -> None:
    with other_console(pg_database, "acquire") as (proc, out):
        assert out == {"acquired": True, "pid": proc.pid}
        with pytest.raises(LockHeld) as caught:
            locks.acquire("production", "mine")
        assert caught.value.info.pid == proc.pid
        assert f"(pid {proc.pid})" in str(caught.value)
        assert "release 1.4.9 from the other bastion" in str(caught.value)
        # Releasing from here (not the holder) leaves it held.
        locks.release("production")
        assert locks.holder("production").pid == proc.pid  # type: ignore[union-attr]


def test_release_by_a_non_holder_process_does_not_release(locks: PostgresLocks, pg_database: str) -> None:
    info = locks.acquire("production", "release 1.5.0")
    with other_console(pg_database, "release", stay=False) as (_, out):
        assert out == {"released": True}
    assert locks.holder("production") == info


def test_release_by_the_holder_releases(locks: PostgresLocks) -> None:
    locks.acquire("production", "release 1.5.0")
    locks.release("production")
    assert locks.holder("production") is None
    again = locks.acquire("production", "next release")
    assert locks.holder("production") == again


def test_force_release_breaks_a_live_holders_lock(locks: PostgresLocks, pg_database: str) -> None:
    with other_console(pg_database, "acquire") as (proc, out):
        assert out["acquired"] is True
        held = locks.holder("production")
        assert held is not None and held.pid == proc.pid
        assert locks.force_release("production", held) is True  # exactly that holder's row
        assert locks.holder("production") is None
        mine = locks.acquire("production", "after lock break")
        assert locks.holder("production") == mine
    assert locks.force_release("staging", held) is False  # not that holder's row: nothing broken


def test_lock_of_a_dead_process_on_this_host_is_taken_over(locks: PostgresLocks, pg_database: str) -> None:
    with other_console(pg_database, "acquire", stay=False) as (proc, out):
        assert out["acquired"] is True
    assert locks.holder("production").pid == proc.pid  # type: ignore[union-attr]  # it died holding it
    mine = locks.acquire("production", "resume after crash")
    assert locks.holder("production") == mine


def test_lock_from_another_host_is_never_taken_over(locks: PostgresLocks, pg_database: str) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("INSERT INTO release_console_lock VALUES ('production', 'alice@bastion-2', '', 1, %s, 'x')",
                     (time.time(),))
    with pytest.raises(LockHeld) as caught:
        locks.acquire("production", "mine")
    assert caught.value.info.holder == "alice@bastion-2"


def test_only_one_of_many_racing_processes_wins(locks: PostgresLocks, pg_database: str) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", OTHER, pg_database, "acquire", "production", "stay"],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(5)]
    try:
        results = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
    finally:
        for p in procs:
            p.stdin.close()  # type: ignore[union-attr]
            p.wait(timeout=30)
    winners = [r for r in results if r.get("acquired")]
    assert len(winners) == 1
    assert all(r["pid"] == winners[0]["pid"] for r in results)
