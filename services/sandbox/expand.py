"""The SchemaChanges port over simulated tables, so expand/contract runs in --sandbox.

Each environment has the app's Ingredient, Category and User tables with the world's row counts.
Changes apply all-or-nothing; a batch takes simulated time. Production's table is busy once: its
first schema change waits out a lock_timeout, so a drill shows a retry. The sandbox does not run
SQL: a backfill stores a quoted literal or number as its value, and any other expression as text.
"""

from __future__ import annotations

import copy
import re
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

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
from services.sandbox.world import World

BATCH_SECONDS_PER_1000 = 0.4  # simulated
BUSY_HOLDER = "pid 48213 (food_app, application 'prisma-studio', idle in transaction, RowExclusiveLock for 3 s)"

Value = str | int | float | None


@dataclass
class SimTable:
    name: str
    columns: dict[str, ColumnInfo]
    key: str
    rows: dict[int, dict[str, Value]]
    triggers: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (old, new)
    functions: set[str] = field(default_factory=set)
    constraints: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name -> (column, validated)


@dataclass
class SimDatabase:
    tables: dict[str, SimTable]
    busy_once: bool


_DATABASES: weakref.WeakKeyDictionary[World, dict[str, SimDatabase]] = weakref.WeakKeyDictionary()
_UNITS = ("g", "kg", "ml", "l", "pcs")


def _database(world: World, env: str) -> SimDatabase:
    with world.lock:
        envs = _DATABASES.setdefault(world, {})
        if env not in envs:
            envs[env] = SimDatabase(_tables(world, env), busy_once=world.envs[env].name == "production")
        return envs[env]


def databases(world: World) -> dict[str, SimDatabase]:
    """The simulated databases made so far, by environment (to save the world)."""
    with world.lock:
        return dict(_DATABASES.get(world, {}))


def adopt_databases(world: World, saved: dict[str, SimDatabase]) -> None:
    """Take in saved databases, in place: a SandboxSchemaChanges made already holds its SimDatabase."""
    with world.lock:
        envs = _DATABASES.setdefault(world, {})
        for env, database in saved.items():
            if env in envs:
                envs[env].tables, envs[env].busy_once = database.tables, database.busy_once
            else:
                envs[env] = database


def _tables(world: World, env: str) -> dict[str, SimTable]:
    rows = world.envs[env].rows
    made = world.clock.origin

    def col(name: str, kind: str, not_null: bool = True, default: bool = False, seq: bool = False) -> ColumnInfo:
        return ColumnInfo(name, kind, not_null, default, seq)

    def serial(table: str) -> ColumnInfo:
        return col("id", "integer", default=True, seq=True)

    ingredient = SimTable("Ingredient", {c.name: c for c in (
        serial("Ingredient"), col("name", "text"),
        col("qty", "numeric(10,2)", not_null=False), col("unit", "text"), col("categoryId", "integer"),
        col("createdAt", "timestamp(3) without time zone", default=True))}, "id",
        {i: {"id": i, "name": f"ingredient {i}", "qty": round((i * 37) % 5000 / 10, 2), "unit": _UNITS[i % 5],
             "categoryId": 1 + i % 40, "createdAt": made - i * 3600.0} for i in range(1, rows["Ingredient"] + 1)})
    category = SimTable("Category", {c.name: c for c in (
        serial("Category"), col("name", "text"))}, "id",
        {i: {"id": i, "name": f"category {i}"} for i in range(1, rows["Category"] + 1)})
    user = SimTable("User", {c.name: c for c in (
        serial("User"), col("email", "text"),
        col("name", "text", not_null=False))}, "id",
        {i: {"id": i, "email": f"user{i}@example.com", "name": f"User {i}"} for i in range(1, rows["User"] + 1)})
    return {t.name: t for t in (ingredient, category, user)}


def _evaluate(expression: str, now: float) -> Value:
    text = expression.strip()
    if re.fullmatch(r"'(?:[^']|'')*'", text):
        return text[1:-1].replace("''", "'")
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d*\.\d+", text):
        return float(text)
    if text.lower() in ("now()", "current_timestamp", "clock_timestamp()"):
        return now
    return text


def _pending(row: dict[str, Value], column: str, fill: Fill) -> bool:
    if fill.copy_from:
        return row.get(column) != row.get(fill.copy_from)
    return row.get(column) is None


class SandboxSchemaChanges:
    def __init__(self, world: World, env: str) -> None:
        self.world = world
        self.db = _database(world, env)

    def _table(self, name: str) -> SimTable:
        try:
            return self.db.tables[name]
        except KeyError:
            raise RuntimeError(f'relation "{name}" does not exist') from None

    def table(self, name: str) -> TableInfo | None:
        with self.world.lock:
            t = self.db.tables.get(name)
            if t is None:
                return None
            uses: dict[str, tuple[str, ...]] = {t.key: (f"constraint {t.name}_pkey",)}
            for constraint, (column, _) in t.constraints.items():
                uses[column] = (*uses.get(column, ()), f"constraint {constraint}")
            return TableInfo(t.name, dict(t.columns), (t.key,), frozenset(t.triggers),
                             {n: v for n, (_, v) in t.constraints.items()}, uses)

    def apply(self, changes: Iterable[SchemaChange], lock_timeout_ms: int) -> None:
        changes = list(changes)
        with self.world.lock:
            if self.db.busy_once:
                self.db.busy_once = False
                time.sleep(self.world.clock.real_seconds(lock_timeout_ms / 1000))
                raise LockBusy("lock_timeout", BUSY_HOLDER)
            tables = copy.deepcopy(self.db.tables)  # all or nothing, like a transaction
            for change in changes:
                self._apply(tables, change)
            self.db.tables = tables
        time.sleep(self.world.clock.real_seconds(0.05))

    def _apply(self, tables: dict[str, SimTable], change: SchemaChange) -> None:
        t = tables.get(change.table)
        if t is None:
            raise RuntimeError(f'relation "{change.table}" does not exist')
        match change:
            case AddColumn(_, column, kind):
                t.columns.setdefault(column, ColumnInfo(column, kind.lower(), False))
            case DropColumn(_, column):
                if t.columns.pop(column, None) is not None:
                    for row in t.rows.values():
                        row.pop(column, None)
                    t.constraints = {n: c for n, c in t.constraints.items() if c[0] != column}
            case AddNotNullCheck(_, column, constraint):
                if constraint in t.constraints:
                    raise RuntimeError(f'constraint "{constraint}" for relation "{t.name}" already exists')
                t.constraints[constraint] = (column, False)
            case ValidateConstraint(_, constraint):
                column, _ = t.constraints[constraint]
                if any(row.get(column) is None for row in t.rows.values()):
                    raise RuntimeError(f'check constraint "{constraint}" of relation "{t.name}" is violated by '
                                       "some row")
                t.constraints[constraint] = (column, True)
            case DropConstraint(_, constraint):
                t.constraints.pop(constraint, None)
            case SetNotNull(_, column, not_null):
                if not_null and any(row.get(column) is None for row in t.rows.values()):
                    raise RuntimeError(f'column "{column}" of relation "{t.name}" contains null values')
                t.columns[column] = replace(t.columns[column], not_null=not_null)
            case CopyDefault(_, source, target):
                t.columns[target] = replace(t.columns[target], has_default=t.columns[source].has_default)
            case CreateSyncTrigger(_, old, new, trigger, function):
                t.triggers[trigger] = (old, new)
                t.functions.add(function)
            case DropSyncTrigger(_, trigger, function):
                t.triggers.pop(trigger, None)
                t.functions.discard(function)

    def count(self, table: str, column: str, fill: Fill) -> tuple[int, int]:
        with self.world.lock:
            rows = self._table(table).rows.values()
            return len(rows), sum(1 for row in rows if _pending(row, column, fill))

    def backfill_batch(
        self, table: str, key: str, column: str, fill: Fill, after: str | int | None, limit: int, lock_timeout_ms: int
    ) -> Batch:
        with self.world.lock:
            t = self._table(table)
            start = -1 if after is None else int(after)
            keys = [k for k in sorted(t.rows) if k > start and _pending(t.rows[k], column, fill)][:limit]
            now = self.world.clock.now()
            for k in keys:
                row = t.rows[k]
                row[column] = row.get(fill.copy_from) if fill.copy_from else _evaluate(fill.expression or "", now)
        time.sleep(self.world.clock.real_seconds(BATCH_SECONDS_PER_1000 * len(keys) / 1000))
        return Batch(len(keys), max(keys) if keys else None)

    def close(self) -> None:
        return None
