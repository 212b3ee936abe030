"""The release lock as a row in the app database: every bastion and operator sees it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from services.adapters.pg import KeptConnection
from services.core.locks import LockHeld, LockInfo, LockUnknown, OnTakeover, is_stale, new_lock
from services.core.operations import StepFailed

T = TypeVar("T")
# Every query here is small: bounded, so an operator never waits on a stuck database.
_TIMEOUTS = "SET statement_timeout = '5s'; SET lock_timeout = '3s'"
_COLUMNS = "env, holder, ssh_client, pid, since, reason, host, boot_id, start_ticks"
# Compare-and-delete: only this exact holder's row goes, never whoever holds it by now.
_DELETE_EXACT = ("DELETE FROM release_console_lock WHERE env = %s AND holder = %s AND pid = %s AND since = %s"
                 " AND host = %s AND boot_id = %s AND start_ticks = %s")


class PostgresLocks:
    """A lock row in the app database; the primary key makes acquire atomic across bastions."""

    # Created, or migrated in place from the first version's six columns. Serialized by an advisory
    # lock: two consoles starting at once would otherwise race on CREATE TABLE's catalog rows.
    _DDL = (
        "SELECT pg_advisory_xact_lock(hashtext('release_console_lock'))",
        """CREATE TABLE IF NOT EXISTS release_console_lock (
        env text PRIMARY KEY, holder text NOT NULL, ssh_client text NOT NULL, pid integer NOT NULL,
        since double precision NOT NULL, reason text NOT NULL)""",
        "ALTER TABLE release_console_lock ADD COLUMN IF NOT EXISTS host text NOT NULL DEFAULT '',"
        " ADD COLUMN IF NOT EXISTS boot_id text NOT NULL DEFAULT '',"
        " ADD COLUMN IF NOT EXISTS start_ticks bigint NOT NULL DEFAULT 0",
    )

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        # Created, acquired and released through one connection (three before), closed with the services.
        self._kept = KeptConnection(dsn)
        self._ensured = False
        try:
            self._ensure()
        except StepFailed:
            pass  # unreachable now: `holder` says "unknown", `acquire` refuses with the reason

    def _ensure(self) -> None:
        try:
            with self._kept.use() as conn, conn.transaction():
                conn.execute(_TIMEOUTS)
                for statement in self._DDL:
                    conn.execute(statement)
        except psycopg.Error as err:
            raise StepFailed(f"cannot create or migrate release_console_lock: {type(err).__name__}",
                             ("check the database user's rights", "retry")) from None
        self._ensured = True

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run `work` on a bounded connection; a table restored from an older backup (or dropped
        by a restore) is created or migrated again, then `work` retried once."""
        if not self._ensured:
            self._ensure()
        for attempt in (1, 2):
            try:
                with self._kept.use() as conn:
                    conn.execute(_TIMEOUTS)
                    return work(conn)
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
                if attempt == 2:
                    raise StepFailed("the release_console_lock table cannot be created",
                                     ("check the database",)) from None
                self._ensure()
            except psycopg.Error as err:  # a timeout, a dropped connection: named, never a traceback
                raise StepFailed(f"the lock query failed: {type(err).__name__}",
                                 ("check the database", "retry")) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._kept.close()

    def acquire(self, env: str, reason: str, on_takeover: OnTakeover | None = None) -> LockInfo:
        info = new_lock(env, reason)
        values = (info.env, info.holder, info.ssh_client, info.pid, info.since, info.reason, info.host,
                  info.boot_id, info.start_ticks)
        inserted = self._run(lambda conn: conn.execute(
            f"INSERT INTO release_console_lock ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (env) DO NOTHING", values).rowcount)
        if inserted:
            return info
        try:
            held = self.holder(env)
        except LockUnknown as err:
            raise StepFailed(str(err), ("check the database", "retry")) from None
        if held is None:
            return self.acquire(env, reason, on_takeover)
        if is_stale(held):
            if on_takeover:
                on_takeover(held)  # audited before the dead holder's row goes
            self.force_release(env, held)
            return self.acquire(env, reason, on_takeover)
        raise LockHeld(held)

    def release(self, env: str) -> None:
        me = new_lock(env, "")
        self._run(lambda conn: conn.execute(
            "DELETE FROM release_console_lock WHERE env = %s AND host = %s AND boot_id = %s AND pid = %s"
            " AND start_ticks = %s", (env, me.host, me.boot_id, me.pid, me.start_ticks)))

    def force_release(self, env: str, held: LockInfo) -> bool:
        deleted = self._run(lambda conn: conn.execute(_DELETE_EXACT, (
            env, held.holder, held.pid, held.since, held.host, held.boot_id, held.start_ticks)).rowcount)
        return bool(deleted)

    def holder(self, env: str) -> LockInfo | None:
        try:
            row = self._run(lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM release_console_lock WHERE env = %s", (env,)).fetchone())
        except StepFailed as err:
            raise LockUnknown(str(err)) from None
        return LockInfo(*row) if row else None
