"""An environment's revision history as rows in its database, beside the release lock."""

from __future__ import annotations

import time

import psycopg

from services.adapters.pg import connect
from services.core.ports import Revision


class PostgresRevisions:
    """Numbered per environment; the primary key makes two recorders race safely (one retries)."""

    _DDL = """CREATE TABLE IF NOT EXISTS release_console_revisions (
        env text NOT NULL, number integer NOT NULL, image text NOT NULL, digest text NOT NULL,
        who text NOT NULL, at double precision NOT NULL, migration_head text, backup_id text,
        action text NOT NULL, PRIMARY KEY (env, number))"""
    _COLUMNS = "number, image, digest, who, at, migration_head, backup_id, action"

    def __init__(self, dsn: str, env: str) -> None:
        self._dsn = dsn
        self._env = env
        with connect(dsn) as conn:
            conn.execute(self._DDL)

    def list(self) -> list[Revision]:
        with connect(self._dsn) as conn:
            rows = conn.execute(
                f"SELECT {self._COLUMNS} FROM release_console_revisions WHERE env = %s ORDER BY number",
                (self._env,),
            ).fetchall()
        return [Revision(*row) for row in rows]

    def record(self, image: str, digest: str, who: str, migration_head: str | None, backup_id: str | None,
               action: str) -> Revision:
        for _attempt in range(5):
            try:
                return self._insert(image, digest, who, migration_head, backup_id, action)
            except psycopg.errors.UniqueViolation:  # another console took this number first
                continue
        return self._insert(image, digest, who, migration_head, backup_id, action)

    def _insert(self, image: str, digest: str, who: str, migration_head: str | None, backup_id: str | None,
                action: str) -> Revision:
        with connect(self._dsn) as conn:
            row = conn.execute(
                f"INSERT INTO release_console_revisions (env, {self._COLUMNS})"
                " SELECT %s, COALESCE(MAX(number), 0) + 1, %s, %s, %s, %s, %s, %s, %s"
                " FROM release_console_revisions WHERE env = %s"
                f" RETURNING {self._COLUMNS}",
                (self._env, image, digest, who, time.time(), migration_head, backup_id, action, self._env),
            ).fetchone()
        assert row is not None  # INSERT ... RETURNING always returns its row
        return Revision(*row)
