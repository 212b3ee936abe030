"""The kept connection of the PostgreSQL adapters, on the rig's real PostgreSQL: reused, made again
after the server dropped it, a busy one not waited for, and closed when asked, even mid-query."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from rig.helpers import wait_until

from services.adapters.pg import KeptConnection

LOCK_KEY = 727_001  # an advisory lock key of this file's own


def backend(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def sessions(dsn: str) -> set[int]:
    with psycopg.connect(dsn) as conn:
        return {row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'")}


def test_one_connection_serves_every_use_and_is_closed_when_asked(pg_database: str) -> None:
    kept = KeptConnection(pg_database)
    with kept.use() as conn:
        first = backend(conn)
    with kept.use() as conn:
        assert backend(conn) == first
    assert sessions(pg_database) == {first}
    kept.close()
    wait_until(lambda: sessions(pg_database) == set(), timeout=10, what="the kept connection's session to end")


def test_a_connection_the_server_dropped_while_idle_is_made_again(pg_database: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    kept = KeptConnection(pg_database)
    with kept.use() as conn:
        first = backend(conn)
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    monkeypatch.setattr(KeptConnection, "IDLE_CHECK_S", 0.0)  # idle long enough to be checked
    wait_until(lambda: first not in sessions(pg_database), timeout=10, what="the terminated session to end")
    with kept.use() as conn:
        again = backend(conn)
    assert again != first
    kept.close()


def test_a_busy_connection_is_not_waited_for_and_a_close_mid_query_closes_after_it(pg_database: str) -> None:
    """The query in flight waits on an advisory lock the test holds, so it cannot end by itself: close()
    returning at all proves it did not wait for it."""
    kept = KeptConnection(pg_database)
    started, pids = threading.Event(), []
    holder = psycopg.connect(pg_database, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))

    def blocked() -> None:
        with kept.use() as conn:
            pids.append(backend(conn))
            started.set()
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))

    worker = threading.Thread(target=blocked)
    worker.start()
    try:
        assert started.wait(10)
        with kept.use() as conn:  # a second thread: a connection of its own, at once
            assert backend(conn) != pids[0]
        closing = threading.Thread(target=kept.close)
        closing.start()
        closing.join(10)
        assert not closing.is_alive(), "close() waited for the query in flight"
        assert worker.is_alive() and pids[0] in sessions(pg_database)  # the query still runs
    finally:
        holder.close()  # the lock goes with its session: the query ends
    worker.join(10)
    wait_until(lambda: sessions(pg_database) == set(), timeout=10, what="closed as the query ended")
