"""Table sizes from PostgreSQL's catalog, for the migration lint's estimates.

One query for any number of tables, in a READ ONLY transaction under its own short statement and
lock timeouts: the lint is advice, so it never waits long on a busy server. Names go in as a text
array parameter and are resolved by to_regclass(quote_ident(name)), as the lint's names are the
catalog's (unqualified, found through the search_path). Nothing is read from the tables themselves:
reltuples is the planner's estimate (ANALYZE, VACUUM), the sizes are the files' sizes. A partitioned
table is its partitions summed (pg_partition_tree; it lists nothing for a plain table).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from services.core.masking import mask
from services.core.operations import StepFailed
from services.core.ports import TableSize

# The sizes take ACCESS SHARE on each table (pg_relation_size opens it): a migration holding ACCESS
# EXCLUSIVE makes the read wait, for at most LOCK_TIMEOUT; then the lint goes on without estimates.
STATEMENT_TIMEOUT_MS = 2000
LOCK_TIMEOUT_MS = 1000

_SIZES = """
SELECT w.name,
       sum(greatest(c.reltuples, 0)) FILTER (WHERE c.relkind <> 'p'),
       bool_or(c.reltuples < 0 AND c.relkind <> 'p'),
       sum(pg_total_relation_size(c.oid)),
       sum(pg_relation_size(c.oid))
FROM unnest(%s::text[]) AS w(name)
JOIN pg_class t ON t.oid = to_regclass(quote_ident(w.name)) AND t.relkind IN ('r', 'p', 'm')
CROSS JOIN LATERAL (SELECT t.oid AS relid UNION SELECT relid FROM pg_partition_tree(t.oid)) AS tree
JOIN pg_class c ON c.oid = tree.relid AND c.relkind IN ('r', 'p', 'm')
GROUP BY w.name"""


def table_sizes(conn: psycopg.Connection[Any], tables: Iterable[str]) -> dict[str, TableSize]:
    """Each table that exists, with its estimated rows (None: never analyzed) and sizes."""
    wanted = list(dict.fromkeys(t for t in tables if t))
    if not wanted:
        return {}
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(STATEMENT_TIMEOUT_MS))
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(LOCK_TIMEOUT_MS))
            rows = conn.execute(_SIZES, (wanted,)).fetchall()
    except psycopg.Error as err:
        # A timeout, a permission: said, masked, and the lint goes on without estimates.
        what = str(mask(str(getattr(err.diag, "message_primary", None) or err).strip()))
        raise StepFailed(f"reading table sizes from the catalog failed: {what}") from None
    return {str(name): TableSize(None if never_analyzed else round(rows_estimate or 0), int(total or 0),
                                 int(heap or 0))
            for name, rows_estimate, never_analyzed, total, heap in rows}
