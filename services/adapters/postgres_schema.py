"""The SchemaChanges port over psycopg: expand/contract changes and backfill batches as SQL.

Every name reaches SQL as psycopg.sql.Identifier. Three texts go in as sql.SQL, on purpose:
an AddColumn type (checked against a conservative pattern by the operation, or format_type's own
output from the catalog), a default copied from the catalog (pg_get_expr's output, read in the
change's own transaction), and a backfill expression, which is SQL the operator typed: trusted
input, like a migration file.

Catalog reads take no lock on the table (pg_get_expr would: it is only used inside a change), so
checks never queue behind, or in front of, a session holding the table.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import errors, sql

from services.core.masking import mask
from services.core.ports import (
    AddColumn,
    AddNotNullCheck,
    Batch,
    ColumnInfo,
    CopyDefault,
    CreateSyncTrigger,
    DropColumn,
    DropConstraint,
    DropSyncTrigger,
    Fill,
    LockBusy,
    SchemaChange,
    SetNotNull,
    TableInfo,
    ValidateConstraint,
)

APPLICATION_NAME = "release-console expand/contract"
READ_LOCK_TIMEOUT = "5s"  # catalog reads and counts: wait a little for a lock, never forever

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef,
       a.attidentity <> '' OR EXISTS (
           SELECT 1 FROM pg_depend dep JOIN pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
           WHERE dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum AND dep.deptype IN ('a', 'i'))
FROM pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""
_PRIMARY_KEY = """
SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = %s AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)"""
_USES = """
SELECT a.attname, 'index ' || ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %(t)s
UNION
SELECT a.attname, 'constraint ' || c.conname FROM pg_constraint c
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) WHERE c.conrelid = %(t)s
UNION
SELECT a.attname, 'foreign key ' || c.conname || ' of ' || c.conrelid::regclass FROM pg_constraint c
  JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = ANY(c.confkey) WHERE c.confrelid = %(t)s
ORDER BY 1, 2"""
_BLOCKERS = """
SELECT l.pid, a.usename, a.application_name, a.state, l.mode,
       extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::int, left(a.query, 60)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = to_regclass(%s) AND l.granted AND l.pid <> pg_backend_pid()
ORDER BY a.xact_start NULLS LAST LIMIT 3"""
# On INSERT the new column has no default yet (contract copies it over), so a value there was
# written by the app: it wins, also over a default the old column filled in. Otherwise the old
# column's value (written, or its default) fills the new one.
_SYNC_FUNCTION = """CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS {tag}
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.{new} IS NOT NULL THEN NEW.{old} := NEW.{new};
    ELSE NEW.{new} := NEW.{old};
    END IF;
  ELSIF NEW.{old} IS DISTINCT FROM OLD.{old} THEN NEW.{new} := NEW.{old};
  ELSIF NEW.{new} IS DISTINCT FROM OLD.{new} THEN NEW.{old} := NEW.{new};
  END IF;
  RETURN NEW;
END
{tag}"""
_COPY_DEFAULT = """DO {tag}
DECLARE expression text;
BEGIN
  SELECT pg_get_expr(d.adbin, d.adrelid) INTO expression
  FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
  WHERE d.adrelid = to_regclass(quote_ident({table})) AND a.attname = {source};
  IF expression IS NOT NULL THEN
    EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET DEFAULT %s', {table}, {target}, expression);
  END IF;
END
{tag}"""


def render(change: SchemaChange) -> list[sql.Composed]:
    """The statements for one change."""
    match change:
        case AddColumn(table, column, kind):
            return [sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                sql.Identifier(table), sql.Identifier(column), sql.SQL(kind))]  # kind: checked or from the catalog
        case DropColumn(table, column):
            return [sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(
                sql.Identifier(table), sql.Identifier(column))]
        case AddNotNullCheck(table, column, constraint):
            return [sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID").format(
                sql.Identifier(table), sql.Identifier(constraint), sql.Identifier(column))]
        case ValidateConstraint(table, constraint):
            return [sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(constraint))]
        case DropConstraint(table, constraint):
            return [sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                sql.Identifier(table), sql.Identifier(constraint))]
        case SetNotNull(table, column, not_null):
            return [sql.SQL("ALTER TABLE {} ALTER COLUMN {} {} NOT NULL").format(
                sql.Identifier(table), sql.Identifier(column), sql.SQL("SET" if not_null else "DROP"))]
        case CopyDefault(table, source, target):
            # Server side, in the change's transaction (which holds the table by now): pg_get_expr's
            # own text goes into SET DEFAULT, through format()'s %I for the names.
            return [sql.SQL(_COPY_DEFAULT).format(tag=_tag(), table=sql.Literal(table), source=sql.Literal(source),
                                                  target=sql.Literal(target))]
        case CreateSyncTrigger(table, old, new, trigger, function):
            return [
                sql.SQL(_SYNC_FUNCTION).format(
                    function=sql.Identifier(function), tag=_tag(), old=sql.Identifier(old), new=sql.Identifier(new)),
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(trigger), sql.Identifier(table)),
                sql.SQL("CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
                    sql.Identifier(trigger), sql.Identifier(table), sql.Identifier(function)),
            ]
        case DropSyncTrigger(table, trigger, function):
            return [
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(trigger), sql.Identifier(table)),
                sql.SQL("DROP FUNCTION IF EXISTS {}()").format(sql.Identifier(function)),
            ]
    raise TypeError(f"unknown schema change {change!r}")


def _tag() -> sql.SQL:
    """A dollar-quote tag no name or literal inside the body can close early."""
    return sql.SQL(f"$rc_{secrets.token_hex(6)}$")


def _pending(column: str, fill: Fill) -> sql.Composable:
    if fill.copy_from:
        return sql.SQL("{} IS DISTINCT FROM {}").format(sql.Identifier(column), sql.Identifier(fill.copy_from))
    return sql.SQL("{} IS NULL").format(sql.Identifier(column))


def _value(fill: Fill) -> sql.Composable:
    if fill.copy_from:
        return sql.Identifier(fill.copy_from)
    if not fill.expression:
        raise ValueError("a backfill needs an expression or a column to copy")
    # Trusted: the operator's own SQL expression, e.g. now() or 'kg', as in a migration file.
    # Its % are doubled: the batch query carries parameters.
    return sql.SQL("({})").format(sql.SQL(fill.expression.replace("%", "%%")))


class PostgresSchemaChanges:
    """One connection per adapter, opened on first use and closed by `close()` after each step."""

    def __init__(self, dsn: str, statement_timeout_s: float = 3600.0) -> None:
        self._dsn = dsn
        self._statement_timeout_s = statement_timeout_s  # [database] migration_statement_timeout_s
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10,
                                         application_name=APPLICATION_NAME)
            self._conn.execute("SELECT set_config('lock_timeout', %s, false)", (READ_LOCK_TIMEOUT,))
            # A backfill batch or a schema change is bounded too (its lock_timeout is set per transaction).
            self._conn.execute("SELECT set_config('statement_timeout', %s, false)",
                               (f"{round(self._statement_timeout_s * 1000)}ms",))
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def table(self, name: str) -> TableInfo | None:
        conn = self._connection()
        with self._busy(name, "reading the catalog"):
            row = conn.execute("SELECT to_regclass(%s)::oid", (sql.Identifier(name).as_string(conn),)).fetchone()
            if row is None or row[0] is None:
                return None
            oid = row[0]
            columns = {r[0]: ColumnInfo(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(_COLUMNS, (oid,))}
            key = tuple(r[0] for r in conn.execute(_PRIMARY_KEY, (oid,)))
            triggers = frozenset(r[0] for r in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal", (oid,)))
            constraints = dict(conn.execute(
                "SELECT conname, convalidated FROM pg_constraint WHERE conrelid = %s", (oid,)).fetchall())
            uses: dict[str, tuple[str, ...]] = {}
            for column, use in conn.execute(_USES, {"t": oid}):
                uses[column] = (*uses.get(column, ()), use)
        return TableInfo(name, columns, key, triggers, constraints, uses)

    def apply(self, changes: Iterable[SchemaChange], lock_timeout_ms: int) -> None:
        changes = list(changes)
        statements = [statement for change in changes for statement in render(change)]
        conn = self._connection()
        table = getattr(changes[0], "table", "") if changes else ""
        with self._busy(table, "the schema change"), conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{lock_timeout_ms}ms",))
            for statement in statements:
                conn.execute(statement)

    def count(self, table: str, column: str, fill: Fill) -> tuple[int, int]:
        conn = self._connection()
        query = sql.SQL("SELECT count(*), count(*) FILTER (WHERE {}) FROM {}").format(
            _pending(column, fill), sql.Identifier(table))
        with self._busy(table, "counting rows"):
            row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def backfill_batch(
        self, table: str, key: str, column: str, fill: Fill, after: str | int | None, limit: int, lock_timeout_ms: int
    ) -> Batch:
        conn = self._connection()
        pending = _pending(column, fill)
        start = sql.SQL("TRUE") if after is None else sql.SQL("{} > %(after)s").format(sql.Identifier(key))
        # The pending test sits in the UPDATE too: a row a writer filled in since the SELECT is
        # re-checked under its row lock and left alone, so no write is ever overwritten.
        query = sql.SQL(
            "WITH rc_batch AS (SELECT {k} AS rc_key FROM {t} WHERE {start} AND {pending} ORDER BY {k}"
            " LIMIT %(limit)s),"
            " rc_done AS (UPDATE {t} SET {c} = {value} FROM rc_batch WHERE {t}.{k} = rc_batch.rc_key AND {pending_t}"
            " RETURNING 1)"
            " SELECT (SELECT max(rc_key) FROM rc_batch), (SELECT count(*) FROM rc_done)"
        ).format(
            k=sql.Identifier(key), t=sql.Identifier(table), c=sql.Identifier(column), start=start, pending=pending,
            value=_value(fill), pending_t=_qualified(table, column, fill),
        )
        with self._busy(table, "a backfill batch"), conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{lock_timeout_ms}ms",))
            row = conn.execute(query, {"after": after, "limit": limit}).fetchone()
        assert row is not None
        last = row[0]
        return Batch(int(row[1]), last if last is None or isinstance(last, int) else str(last))

    def _busy(self, table: str, what: str) -> _LockErrors:
        return _LockErrors(self, table, what)

    def blockers(self, table: str) -> str:
        """Who holds a lock on the table now, for the operator: pid, user, app, state, mode, age, query."""
        try:
            with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5,
                                 application_name=APPLICATION_NAME) as conn:
                rows = conn.execute(_BLOCKERS, (sql.Identifier(table).as_string(conn),)).fetchall()
        except psycopg.Error:
            return ""
        return "; ".join(
            f"pid {pid} ({user}, application {app or '-'!r}, {state}, {mode} for {age or 0} s: {mask(query)!r})"
            for pid, user, app, state, mode, age, query in rows
        )


def _qualified(table: str, column: str, fill: Fill) -> sql.Composable:
    """The pending test with the columns qualified by the table (the UPDATE joins the batch)."""
    target = sql.Identifier(table, column)
    if fill.copy_from:
        return sql.SQL("{} IS DISTINCT FROM {}").format(target, sql.Identifier(table, fill.copy_from))
    return sql.SQL("{} IS NULL").format(target)


class _LockErrors:
    """Turns lock timeouts and deadlocks into LockBusy (retryable), naming who holds the table."""

    def __init__(self, adapter: PostgresSchemaChanges, table: str, what: str) -> None:
        self.adapter = adapter
        self.table = table
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: Any) -> None:
        if isinstance(err, errors.LockNotAvailable):
            raise LockBusy(f"{self.what}: lock_timeout on {self.table}", self.adapter.blockers(self.table)) from None
        if isinstance(err, errors.DeadlockDetected):
            raise LockBusy(f"{self.what}: deadlock on {self.table}", "a deadlock (PostgreSQL rolled it back)") from None
