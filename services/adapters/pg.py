"""One way to open a PostgreSQL connection: errors name the server and never the password.

Every connection is bounded: `statement_timeout` and `lock_timeout` are set on it as it opens
([database] statement_timeout_s / lock_timeout_s), so no query of the console (the release
lock, revisions, row counts ...) waits forever on a busy or locked table. Work that is long by
nature (a migration's SQL, REINDEX) asks for the longer, still bounded, migration values with
`long_running(conn)`. A query stopped by either bound fails the step saying which bound and
where to raise it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, sql

from services.core.masking import mask
from services.core.operations import StepFailed


@dataclass(frozen=True)
class Bounds:
    statement_timeout_s: float = 30.0
    lock_timeout_s: float = 5.0
    migration_statement_timeout_s: float = 3600.0
    migration_lock_timeout_s: float = 30.0


_bounds = Bounds()


def configure(bounds: Bounds) -> None:
    """Set by the factory from [database]; the defaults hold for a process that never built one."""
    global _bounds
    _bounds = bounds


def bounds() -> Bounds:
    return _bounds


@contextmanager
def connect(dsn: str, autocommit: bool = True, timeout_s: int = 5) -> Iterator[psycopg.Connection[Any]]:
    with _open(dsn, autocommit, timeout_s) as conn, _said():
        yield conn


def _open(dsn: str, autocommit: bool, timeout_s: int) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=timeout_s)
    except psycopg.OperationalError as err:
        text = str(err).strip()
        detail = str(mask(text.splitlines()[-1] if text else type(err).__name__))
        raise StepFailed(f"cannot connect to {mask(dsn)}: {detail}",
                         ("check the host, port and credentials in database_url", "retry")) from None
    try:
        short_running(conn)
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def _said() -> Iterator[None]:
    """A query stopped by a bound fails the step saying which bound."""
    try:
        yield
    except errors.QueryCanceled as err:
        raise _timed_out(err, "statement_timeout_s") from None
    except errors.LockNotAvailable as err:
        raise _timed_out(err, "lock_timeout_s") from None


class KeptConnection:
    """One autocommit connection an adapter makes on first use and keeps for its short queries until
    close(): a deploy's dozen status reads and row counts cost one connection set-up (TCP and SCRAM),
    not a dozen. Bounded and worded as connect()'s. A second thread that finds it busy gets a
    connection of its own for that use. Idle for a while, it is checked (an empty query) before it is
    used, and made again if it died meanwhile (a server restart, an idle timeout), so a poll after a
    quiet hour does not fail once. Whoever changes its session settings sets them back before leaving."""

    IDLE_CHECK_S = 1.0

    def __init__(self, dsn: str, timeout_s: int = 5) -> None:
        self._dsn, self._timeout_s = dsn, timeout_s
        self._conn: psycopg.Connection[Any] | None = None
        self._busy = threading.Lock()
        self._used = 0.0  # monotonic time its last use ended
        self._close_after = False  # close() came while it was in use: the use in flight closes it

    @contextmanager
    def use(self) -> Iterator[psycopg.Connection[Any]]:
        if not self._busy.acquire(blocking=False):
            with connect(self._dsn, timeout_s=self._timeout_s) as conn:
                yield conn
            return
        try:
            with _said():
                yield self._kept()
        except psycopg.OperationalError:
            self._drop()  # the next use connects anew
            raise
        finally:
            self._used = time.monotonic()
            if self._close_after:
                self._close_after = False
                self._drop()
            self._busy.release()

    def _kept(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            if time.monotonic() - self._used < self.IDLE_CHECK_S:
                return conn
            try:
                conn.execute("")  # an empty query: one round trip, nothing run
                return conn
            except psycopg.OperationalError:
                self._drop()  # gone while idle: made again below
        self._conn = _open(self._dsn, True, self._timeout_s)
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close it now, or, while a query runs on it (a long REINDEX in a worker as the console quits),
        as soon as that query ends: quitting never waits for it."""
        if not self._busy.acquire(blocking=False):
            self._close_after = True
            if not self._busy.acquire(blocking=False):
                return
            # The use ended between the two looks, maybe before it saw the flag: closed here.
        try:
            self._close_after = False
            self._drop()
        finally:
            self._busy.release()


def long_running(conn: psycopg.Connection[Any]) -> None:
    """This session runs a migration's SQL or a REINDEX: the longer [database] migration_* bounds."""
    _bound(conn, _bounds.migration_statement_timeout_s, _bounds.migration_lock_timeout_s)


def short_running(conn: psycopg.Connection[Any]) -> None:
    """The session's ordinary bounds ([database] statement_timeout_s and lock_timeout_s), as it opened with."""
    _bound(conn, _bounds.statement_timeout_s, _bounds.lock_timeout_s)


def _bound(conn: psycopg.Connection[Any], statement_s: float, lock_s: float) -> None:
    # set_config rather than the `options` connection parameter: that would replace any
    # options the operator's database_url carries (a search_path).
    conn.execute("SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
                 (f"{round(statement_s * 1000)}ms", f"{round(lock_s * 1000)}ms"))
    if not conn.autocommit:
        conn.commit()  # a session setting made in a transaction that rolls back would be undone


def _timed_out(err: psycopg.Error, key: str) -> StepFailed:
    what = str(mask(str(err.diag.message_primary or err))).strip()
    seconds, long = getattr(_bounds, key), getattr(_bounds, f"migration_{key}")
    return StepFailed(f"the database stopped a query: {what} ([database] {key} = {seconds:g}s;"
                      f" migration_{key} = {long:g}s for migrations and REINDEX)",
                      ("look for a long query or a lock held on the table (pg_stat_activity)",
                       f"raise [database] {key} in release.toml if this work needs longer", "retry"))


def count_rows(conn: psycopg.Connection[Any], tables: Iterable[str]) -> dict[str, int]:
    """The rows of each table that exists, in two queries whatever the number of tables."""
    wanted = list(dict.fromkeys(tables))
    if not wanted:
        return {}
    found = {row[0] for row in conn.execute(
        "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(quote_ident(t)) IS NOT NULL", (wanted,))}
    present = [table for table in wanted if table in found]
    if not present:
        return {}
    row = conn.execute(sql.SQL("SELECT {}").format(sql.SQL(", ").join(
        sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(table)) for table in present))).fetchone()
    return {table: int(count) for table, count in zip(present, row or (), strict=True)}
