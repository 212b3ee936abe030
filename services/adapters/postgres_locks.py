"""The release lock as a row in the app database: every bastion and operator sees it."""

from __future__ import annotations

from services.adapters.pg import connect
from services.locks import LockHeld, LockInfo, is_stale, new_lock


class PostgresLocks:
    """A lock row in the app database; the primary key makes acquire atomic across bastions."""

    _DDL = """CREATE TABLE IF NOT EXISTS release_console_lock (
        env text PRIMARY KEY, holder text NOT NULL, ssh_client text NOT NULL, pid integer NOT NULL,
        since double precision NOT NULL, reason text NOT NULL)"""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        with connect(dsn) as conn:
            conn.execute(self._DDL)

    def acquire(self, env: str, reason: str) -> LockInfo:
        info = new_lock(env, reason)
        with connect(self._dsn) as conn:
            inserted = conn.execute(
                "INSERT INTO release_console_lock (env, holder, ssh_client, pid, since, reason)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (env) DO NOTHING",
                (info.env, info.holder, info.ssh_client, info.pid, info.since, info.reason),
            ).rowcount
        if inserted:
            return info
        held = self.holder(env)
        if held is None:
            return self.acquire(env, reason)
        if is_stale(held):
            with connect(self._dsn) as conn:
                conn.execute(
                    "DELETE FROM release_console_lock WHERE env = %s AND holder = %s AND pid = %s AND since = %s",
                    (env, held.holder, held.pid, held.since),
                )
            return self.acquire(env, reason)
        raise LockHeld(held)

    def release(self, env: str) -> None:
        me = new_lock(env, "")
        with connect(self._dsn) as conn:
            conn.execute(
                "DELETE FROM release_console_lock WHERE env = %s AND holder = %s AND pid = %s",
                (env, me.holder, me.pid),
            )

    def force_release(self, env: str) -> LockInfo | None:
        held = self.holder(env)
        with connect(self._dsn) as conn:
            conn.execute("DELETE FROM release_console_lock WHERE env = %s", (env,))
        return held

    def holder(self, env: str) -> LockInfo | None:
        with connect(self._dsn) as conn:
            row = conn.execute(
                "SELECT env, holder, ssh_client, pid, since, reason FROM release_console_lock WHERE env = %s", (env,)
            ).fetchone()
        return LockInfo(*row) if row else None
