"""The shared audit trail: a table in the environment's database (or `[state] database_url`).

One chain per table, sealed with the same key as the local log. Appends are serialized by a
transaction-level advisory lock, so two consoles on two bastions never fork the chain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from services.adapters.pg import connect
from services.core.audit import GENESIS, Seal, SharedUnavailable
from services.core.config import ReleaseConfig
from services.core.operations import StepFailed

TABLE = sql.Identifier("release_console_audit")
# The columns beside `record` are for reading with SQL; `record` (canonical JSON) is what is sealed.
_DDL = sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
    id bigserial PRIMARY KEY,
    env text NOT NULL,
    action text NOT NULL,
    "user" text NOT NULL,
    host text NOT NULL,
    ssh_client text NOT NULL,
    "when" text NOT NULL,
    outcome text NOT NULL,
    record text NOT NULL,
    hash text NOT NULL UNIQUE)""").format(TABLE)
_SERIALIZE = "SELECT pg_advisory_xact_lock(hashtext('release_console_audit'))"
_EXISTS = "SELECT to_regclass('release_console_audit')"
_TIMEOUTS = "SET LOCAL statement_timeout = '10s'; SET LOCAL lock_timeout = '5s'"


def where(dsn: str) -> str:
    """host/dbname of a DSN: enough to say which trail, never the password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the configured database"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


class PostgresAuditTrail:
    """Routes each environment's records to its table: `[state] database_url`, else the env's database."""

    def __init__(self, config: ReleaseConfig) -> None:
        self._config = config

    def _dsn(self, env: str) -> str | None:
        if self._config.state.database_url is not None:
            return self._config.state.database_url.get_secret_value()
        settings = self._config.environments.get(env)
        return settings.database_url.get_secret_value() if settings else None

    def where(self, env: str) -> str | None:
        dsn = self._dsn(env)
        return where(dsn) if dsn else None

    @contextmanager
    def _transaction(self, env: str) -> Iterator[psycopg.Connection[Any]]:
        dsn = self._dsn(env)
        if dsn is None:
            raise SharedUnavailable(f"{env} has no shared audit trail")
        try:
            with connect(dsn, autocommit=False) as conn:
                conn.execute(_TIMEOUTS)
                # Looked for each time, not remembered: a point-in-time restore can take the table away.
                if conn.execute(_EXISTS).fetchone() == (None,):
                    conn.execute(_SERIALIZE)  # two consoles creating it at once race on the catalog
                    conn.execute(_DDL)
                yield conn
        except StepFailed as err:
            raise SharedUnavailable(str(err)) from None
        except psycopg.Error as err:
            raise SharedUnavailable(f"{where(dsn)}: {type(err).__name__}") from None

    def append(self, env: str, body: dict[str, Any], seal: Seal) -> dict[str, Any]:
        with self._transaction(env) as conn:
            conn.execute(_SERIALIZE)  # held to the commit: the last row cannot change under us
            last = conn.execute(sql.SQL("SELECT hash FROM {} ORDER BY id DESC LIMIT 1").format(TABLE)).fetchone()
            record = seal(body, last[0] if last else GENESIS)
            who = record.get("who", {})
            conn.execute(
                sql.SQL('INSERT INTO {} (env, action, "user", host, ssh_client, "when", outcome, record, hash)'
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)").format(TABLE),
                (record["env"], record["action"], who.get("user", ""), who.get("host", ""), who.get("ssh_client", ""),
                 record["when"], record["outcome"], json.dumps(record, sort_keys=True), record["hash"]))
            return record

    def tail(self, env: str, limit: int) -> list[dict[str, Any]]:
        with self._transaction(env) as conn:
            rows = conn.execute(sql.SQL("SELECT record FROM {} WHERE env = %s ORDER BY id DESC LIMIT %s").format(TABLE),
                                (env, limit)).fetchall()
        return [json.loads(row[0]) for row in reversed(rows)]

    def rows(self, env: str) -> Iterator[tuple[int, dict[str, Any]]]:
        with self._transaction(env) as conn:
            query = sql.SQL('SELECT id, env, action, outcome, record, hash FROM {} ORDER BY id').format(TABLE)
            for row_id, row_env, action, outcome, text, digest in conn.execute(query):
                record = json.loads(text)
                # The columns are for SQL readers; an edit there that the sealed record lacks is an edit too.
                if (row_env, action, outcome, digest) != (record.get("env"), record.get("action"),
                                                          record.get("outcome"), record.get("hash")):
                    record = {**record, "hash": f"columns edited: {digest}"}
                yield row_id, record
