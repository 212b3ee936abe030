"""A PostgreSQL cluster read over psycopg for point-in-time recovery: the migrations it has applied
(each a point to restore to) and how far behind its WAL archiving is (pg_stat_archiver). Every query
is bounded as pg.connect bounds it, on a connection of its own: a restore restarts the server under
it, and a kept connection would still be the dead one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from services.adapters.pg import connect, count_rows
from services.core.pitr_port import AppliedMigration, Archiver, Identity


class PostgresCluster:
    def __init__(self, dsn: str, description: str, connect_timeout_s: int = 5) -> None:
        self.dsn, self.description, self.timeout_s = dsn, description, connect_timeout_s

    def describe(self) -> str:
        return self.description

    def _one(self, query: str) -> Any:
        with connect(self.dsn, timeout_s=self.timeout_s) as conn:
            row = conn.execute(query).fetchone()
        return row[0] if row else None

    def in_recovery(self) -> bool:
        return bool(self._one("SELECT pg_is_in_recovery()"))

    def row_counts(self, tables: Iterable[str]) -> dict[str, int]:
        with connect(self.dsn, timeout_s=self.timeout_s) as conn:
            return count_rows(conn, tables)

    def mark_now(self) -> float:
        # txid_current() gives the transaction an id, so its commit is written to the WAL; nothing else changes.
        with connect(self.dsn, timeout_s=self.timeout_s) as conn:
            row = conn.execute("SELECT extract(epoch FROM now()), txid_current()").fetchone()
        assert row is not None
        return float(row[0])

    def migrations(self) -> list[AppliedMigration]:
        with connect(self.dsn, timeout_s=self.timeout_s) as conn:
            if conn.execute("SELECT to_regclass('\"_prisma_migrations\"')").fetchone() in (None, (None,)):
                return []
            rows = conn.execute(
                'SELECT migration_name, extract(epoch FROM started_at), extract(epoch FROM finished_at)'
                ' FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL'
                " ORDER BY started_at, migration_name").fetchall()
        return [AppliedMigration(str(name), float(started), float(finished) if finished is not None else None)
                for name, started, finished in rows]

    def identity(self) -> Identity:
        with connect(self.dsn, timeout_s=self.timeout_s) as conn:
            started = conn.execute("SELECT extract(epoch FROM pg_postmaster_start_time())").fetchone()
            try:  # pg_control_system() is for superusers and pg_monitor unless granted
                system = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
            except psycopg.errors.InsufficientPrivilege:
                system = None
        assert started is not None
        return Identity(int(system[0]) if system else None, float(started[0]))

    def archiver(self) -> Archiver:
        with connect(self.dsn, timeout_s=self.timeout_s) as conn:
            row = conn.execute(
                "SELECT archived_count, last_archived_wal, extract(epoch FROM last_archived_time), failed_count,"
                " last_failed_wal, extract(epoch FROM last_failed_time), extract(epoch FROM now())"
                " FROM pg_stat_archiver").fetchone()
        assert row is not None  # one row, always
        archived, last_wal, last_at, failed, failed_wal, failed_at, now = row
        return Archiver(int(archived), last_wal, _epoch(last_at), int(failed), failed_wal, _epoch(failed_at),
                        float(now))


def _epoch(value: Any) -> float | None:
    return None if value is None else float(value)
