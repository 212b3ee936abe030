"""The lint against the environment's database: each finding on a table gets the table's estimated
rows and size (the catalog's, pg_class) and an ESTIMATED lock duration, and its level follows what
the table holds.

Levels, for a finding on a table:
  - created earlier in this batch, or empty: information. No running app version uses a new table,
    and an empty one has no rows to scan, rewrite or lose: the lock is brief.
  - a lock held for a scan, a rewrite or an index build (SIZED) on a table smaller than
    [migrations] lint_blocking_mb: a warning, with its estimate. At that size the lock is short.
  - otherwise the rule's own level. The rules whose harm is not the lock's length (a drop loses data,
    a rename breaks the running app version, a NOT NULL column without a DEFAULT fails on any row)
    stay blocking on any table with rows.
A table the database does not have, and that the batch does not create, is said so: the statement
will fail there unless something else creates it first.

The lock estimate is the bytes the work reads or writes over a rate measured on the rig (bench/lint.py,
docs/perf.md): an order of magnitude, not a promise. A server under load, a slower disk, a cold
cache or a wait in the lock queue make it longer; a change PostgreSQL makes without a rewrite (a
varchar widened) makes it shorter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from services.core.operations import StepFailed
from services.core.ports import MigrationDatabase, TableSize
from services.core.units import byte_size
from services.migrations.lint import Finding, created_tables

# MB/s measured on the rig's PostgreSQL 15 (bench/lint.py, "lock rate"; docs/perf.md): a million
# Prisma-shaped rows with two indexes, the data in memory; four runs, some beside other test runs.
# Each is the lowest seen, rounded down, so the estimate errs long.
REWRITE_MB_S = 70.0  # ALTER COLUMN TYPE int -> bigint: table, TOAST and indexes written again (73-111 MB/s)
SCAN_MB_S = 850.0  # ADD CHECK, validated: the heap read (876-1286 MB/s)
INDEX_MB_S = 110.0  # CREATE INDEX on a text column: the heap read and sorted (116-173 MB/s)

# Rule -> (what the lock is held for, its rate in MB/s, whether it reads the total or the heap bytes).
SIZED: dict[str, tuple[str, float, bool]] = {
    "adding-column-rewrites-table": ("rewrite", REWRITE_MB_S, True),
    "changing-column-type": ("rewrite", REWRITE_MB_S, True),
    "setting-not-null": ("scan", SCAN_MB_S, False),
    "constraint-without-not-valid": ("scan", SCAN_MB_S, False),
    "create-index-non-concurrently": ("index build", INDEX_MB_S, False),
    "constraint-builds-index": ("index build", INDEX_MB_S, False),
}


def against(database: MigrationDatabase, findings: list[Finding], scripts: list[str],
            blocking_mb: float) -> list[Finding]:
    """The findings of a batch of scripts with the database's estimates; offline (saying why) when the
    catalog cannot be read."""
    tables = [f.table for f in findings if f.table]
    if not tables:
        return findings
    try:
        sizes = database.table_sizes(tables)
    except StepFailed as err:  # unreachable, a timeout, a permission: already masked
        return offline(findings, str(err))
    return with_estimates(findings, sizes, created_tables(scripts), round(blocking_mb * 1e6))


def offline(findings: list[Finding], why: str) -> list[Finding]:
    """The findings as the parser alone found them, each saying why it has no estimates."""
    note = f"no estimates: {why}"
    return [dataclasses.replace(f, note=note) if f.table else f for f in findings]


def with_estimates(findings: list[Finding], sizes: dict[str, TableSize], created: Iterable[str],
                   blocking_bytes: int) -> list[Finding]:
    """The findings with the tables' estimates, each at the level its table calls for (module doc)."""
    new = set(created)
    return [_estimated(f, sizes.get(f.table), f.table in new, blocking_bytes) if f.table else f for f in findings]


def _estimated(f: Finding, size: TableSize | None, created: bool, blocking_bytes: int) -> Finding:
    if created:
        return dataclasses.replace(f, blocking=False, info=True,
                                   note="created earlier in this batch: no running app version uses it yet")
    if size is None:
        return dataclasses.replace(f, note="the table does not exist in the database, and no earlier migration "
                                           "of this batch creates it: the statement will fail there")
    rows = "unknown rows (never analyzed)" if size.rows is None else f"~{size.rows:,} rows"
    work, rate, total = SIZED.get(f.rule, ("", 0.0, False))
    read = size.total_bytes if total else size.heap_bytes
    lock_s = read / (rate * 1e6) if work else 0.0
    f = dataclasses.replace(f, estimated_rows=size.rows, size_bytes=size.total_bytes,
                            estimated_lock_s=round(lock_s, 3))
    lock = (f"{work} holds the lock ~{_seconds(lock_s)} (estimate)" if work
            else "the lock itself is brief (a catalog change)")
    shown = f"{rows}, {byte_size(size.total_bytes)}: {lock}"
    if size.heap_bytes == 0 or (size.rows == 0 and size.total_bytes < blocking_bytes):
        return dataclasses.replace(f, blocking=False, info=True, note=f"empty table ({shown}): information only")
    if work and f.blocking and size.total_bytes < blocking_bytes:
        below = f"below the blocking size ({byte_size(blocking_bytes)}, [migrations] lint_blocking_mb)"
        return dataclasses.replace(f, blocking=False, note=f"{shown}; {below}")
    return dataclasses.replace(f, note=shown)


def _seconds(value: float) -> str:
    if value < 0.01:
        return "<0.01 s"
    return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"
