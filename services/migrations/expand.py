"""Zero-downtime schema changes as expand/contract: one phase per run, the app deployed in between.

Two actions, each run once per phase (param `phase`), in this order:

    expand-add-column     table, column, type, backfill, phase, batch_size=1000
      expand    ADD COLUMN column type, nullable: no rewrite, a moment's lock.
                Then deploy the app version that writes the column.
      backfill  rows where column IS NULL get `backfill`, batch_size rows at a time by primary key,
                each batch its own short transaction. Idempotent: a resumed or repeated run
                skips the rows already done, and reports how many.
      contract  refused while any row is NULL; then ADD CHECK (column IS NOT NULL) NOT VALID,
                VALIDATE (scans without blocking writes), SET NOT NULL (skips the scan thanks to
                the check), DROP the check.

    expand-rename-column  table, column, new_column, phase, batch_size=1000
      expand    ADD COLUMN new_column (the old one's type) and a trigger that keeps the two equal
                whichever one a writer sets, in one transaction. Then deploy the app version that
                reads and writes new_column.
      backfill  batches by primary key: new_column = column where they differ.
      contract  refused while any row differs; carries NOT NULL over (check, validate) and, after
                a confirmation, in one transaction: SET NOT NULL, the old default on the new column,
                DROP the trigger and function, DROP the old column.

Aborts (phase = abort-expand | abort-backfill | abort-contract) put the schema back as it was
before that phase, losing no data:
      abort-expand    add: DROP the new column (confirmed; it only held backfilled values unless a
                      new app version wrote to it). rename: DROP the trigger, function and new
                      column in one transaction; the old column has every write, the trigger saw to it.
      abort-backfill  changes nothing: a running backfill stops on cancel, and the rows already
                      backfilled are harmless (the column is still nullable, the trigger still syncs).
                      It reports how far the backfill got.
      abort-contract  DROP the NOT NULL check if contract created it, and (add-column) DROP NOT NULL
                      if contract got that far. A rename's contract drops the old column in one
                      transaction: before it commits there is nothing else to undo, after it the
                      way back is a rename the other way round, which abort-contract says.

Every schema change runs under SET LOCAL lock_timeout (param lock_timeout_ms, 500) in its own short
transaction; when it cannot get its lock it is retried (lock_retries, 8) with exponential backoff and
jitter, each retry logged with the session holding the lock, then fails naming that session.

Identifiers only reach SQL through psycopg.sql.Identifier in the adapter. `type` must match a
conservative pattern. `backfill` is SQL typed by the operator, trusted like a migration file: the
adapter wraps it in sql.SQL as it is.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from services.core.actions import Param, action, confirm_step
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.ports import (
    AddColumn,
    AddNotNullCheck,
    CopyDefault,
    CreateSyncTrigger,
    DropColumn,
    DropConstraint,
    DropSyncTrigger,
    Fill,
    LockBusy,
    SchemaChange,
    SchemaChanges,
    SetNotNull,
    TableInfo,
    ValidateConstraint,
)

if TYPE_CHECKING:
    from services.core.container import Services

T = TypeVar("T")

PHASES = ("expand", "backfill", "contract", "abort-expand", "abort-backfill", "abort-contract")
# Base types, an optional (n) or (p,s), an optional time zone, an optional [] — or one quoted name
# (an enum). No serial: its nextval default would rewrite the table under an exclusive lock.
_TYPE = re.compile(
    r"(?:(?!(?:small|big)?serial)[a-z][a-z0-9_]*(?: (?:precision|varying))?(?:\(\d{1,4}(?:, ?\d{1,4})?\))?"
    r"(?: with(?:out)? time zone)?|\"[A-Za-z_][A-Za-z0-9_]{0,62}\")(?:\[\])?",
    re.IGNORECASE,
)


def valid_type(text: str) -> bool:
    """Whether a column type is one this tool will put into ADD COLUMN as it is."""
    return _TYPE.fullmatch(text) is not None


BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 4.0
MAX_SWEEPS = 3  # passes over the table before a backfill gives up on rows that keep arriving NULL
REPORT_EVERY = 10  # batches between rate/ETA log lines (and at most 5 s)
REPORT_EVERY_S = 5.0
NAME_MAX = 63  # PostgreSQL truncates longer identifiers


@dataclass(frozen=True)
class Params:
    table: str
    column: str
    phase: str
    batch_size: int
    lock_timeout_ms: int
    lock_retries: int
    batch_delay_ms: int
    type: str = ""
    backfill: str = ""
    new_column: str = ""


def _parse(params: dict[str, Any], rename: bool) -> tuple[Params | None, list[str]]:
    problems: list[str] = []

    def text(key: str, required: bool = True) -> str:
        value = str(params.get(key, "") or "").strip()
        if required and not value:
            problems.append(f"{key} is required")
        return value

    def number(key: str, default: int, low: int, high: int) -> int:
        raw = params.get(key, default)
        try:
            value = int(raw)
        except (TypeError, ValueError):
            problems.append(f"{key} must be a whole number, got {raw!r}")
            return default
        if not low <= value <= high:
            problems.append(f"{key} must be between {low} and {high}, got {value}")
        return value

    phase = text("phase")
    if phase and phase not in PHASES:
        problems.append(f"phase must be one of {', '.join(PHASES)}; got {phase!r}")
    table, column = text("table"), text("column")
    new_column = text("new_column", required=rename)
    kind = text("type", required=not rename and phase == "expand")
    if kind and not valid_type(kind):
        problems.append(f"type {kind!r} is not one this tool accepts: a plain type such as text, integer, "
                        "numeric(10,2), timestamp(3), double precision, a quoted enum name, or one of those "
                        "with [] (serial types would rewrite the table)")
    fill = text("backfill", required=not rename and phase == "backfill")
    if rename and new_column and new_column == column:
        problems.append("new_column must differ from column")
    for key, value in (("table", table), ("column", column), ("new_column", new_column)):
        if len(value) > NAME_MAX or "\x00" in value:
            problems.append(f"{key} is not a valid PostgreSQL name")
    settings = Params(
        table, column, phase,
        number("batch_size", 1000, 1, 100_000), number("lock_timeout_ms", 500, 10, 60_000),
        number("lock_retries", 8, 1, 100), number("batch_delay_ms", 0, 0, 60_000),
        kind, fill, new_column,
    )
    return (None if problems else settings), problems


def _name(*parts: str) -> str:
    """A derived object name; too long ones keep a hash so two changes never share a name."""
    name = "_".join(parts)
    if len(name) <= NAME_MAX:
        return name
    return name[: NAME_MAX - 9] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]


def not_null_check(table: str, column: str) -> str:
    return _name(table, column, "not_null")


def sync_names(table: str, old: str, new: str) -> tuple[str, str]:
    """The rename trigger's name (per table) and its function's (per schema)."""
    return _name("rc_sync", old, new), _name("rc_sync", table, old, new)


def _refuse(problems: list[str]) -> Callable[[StepContext], str]:
    def run(ctx: StepContext) -> str:
        raise StepFailed("; ".join(problems), ("fix the parameters and run it again",))

    return run


def _title(kind: str, params: dict[str, Any]) -> str:
    table, column = params.get("table", "?"), params.get("column", "?")
    what = f"rename {table}.{column} to {params.get('new_column', '?')}" if kind == "rename" else \
        f"add {table}.{column}"
    return f"Expand/contract: {what}: {params.get('phase', '?')}"


COMMON = (
    Param("phase", f"one of {', '.join(PHASES)}", "expand", required=True),
    Param("batch_size", "rows per backfill batch", "1000"),
    Param("lock_timeout_ms", "lock_timeout for each DDL; retried with backoff", "500"),
    Param("lock_retries", "tries per DDL or batch before giving up, naming the blocking session", "8"),
    Param("batch_delay_ms", "pause between backfill batches", "0"),
)


@action("expand-add-column", "Expand/contract: add a column (expand, backfill, contract)", params=(
    Param("table", "the table, e.g. Ingredient", required=True),
    Param("column", "the new column", required=True),
    Param("type", "its type, e.g. timestamp(3) (needed to expand)"),
    Param("backfill", "SQL for existing rows, e.g. now() (needed to backfill; trusted operator input)"),
    *COMMON,
))
def add_column(services: Services, env: str, params: dict[str, Any]) -> Operation:
    p, problems = _parse(params, rename=False)
    title = _title("add", params)
    if p is None:
        return Operation("expand-add-column", env, title, [Step("check", "Check the parameters", _refuse(problems))],
                         params)
    return Operation("expand-add-column", env, title, _Phase(services, env, p).add_column_steps(), params)


@action("expand-rename-column", "Expand/contract: rename a column (expand, backfill, contract)", params=(
    Param("table", "the table, e.g. Ingredient", required=True),
    Param("column", "the column's current name", required=True),
    Param("new_column", "its new name", required=True),
    *COMMON,
))
def rename_column(services: Services, env: str, params: dict[str, Any]) -> Operation:
    p, problems = _parse(params, rename=True)
    title = _title("rename", params)
    if p is None:
        return Operation("expand-rename-column", env, title,
                         [Step("check", "Check the parameters", _refuse(problems))], params)
    return Operation("expand-rename-column", env, title, _Phase(services, env, p).rename_steps(), params)


class _Phase:
    """The steps of one phase; they reach the database only through the SchemaChanges port."""

    def __init__(self, services: Services, env: str, p: Params) -> None:
        self.services = services
        self.env = env
        self.p = p
        self.schema: SchemaChanges = services.schema(env)
        self.check_name = not_null_check(p.table, p.new_column or p.column)
        self.trigger, self.function = sync_names(p.table, p.column, p.new_column)

    # --- building blocks -----------------------------------------------------------------

    def step(self, step_id: str, title: str, run: Callable[[StepContext], str]) -> Step:
        def guarded(ctx: StepContext) -> str:
            try:
                return run(ctx)
            finally:
                self.schema.close()  # no connection is left open between steps or phases

        return Step(step_id, title, guarded)

    def retrying(self, ctx: StepContext, what: str, attempt: Callable[[], T]) -> T:
        """Run `attempt`; while it cannot get its lock, back off (exponential, jittered) and retry."""
        p = self.p
        for tries in range(1, p.lock_retries + 1):
            try:
                return attempt()
            except LockBusy as busy:
                holder = busy.blockers or "no session seen holding a lock on it"
                if tries == p.lock_retries:
                    options: tuple[str, ...] = ("retry once the blocking session has finished",
                                                "end the blocking session, then retry")
                    if not p.phase.startswith("abort-"):
                        options += (f"run phase=abort-{p.phase} to put the schema back",)
                    raise StepFailed(f"{what}: could not lock {p.table} within {p.lock_timeout_ms} ms in {tries} "
                                     f"tries; blocked by {holder}", options) from None
                delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (tries - 1)) * random.uniform(0.5, 1.5)  # noqa: S311
                ctx.log(f"{what}: lock not granted within {p.lock_timeout_ms} ms (try {tries}/{p.lock_retries}); "
                        f"held by {holder}; retrying in {delay:.2f} s", "warn")
                ctx.sleep(self.services.real_seconds(delay))
        raise AssertionError("unreachable")

    def apply(self, ctx: StepContext, what: str, *changes: SchemaChange) -> None:
        self.retrying(ctx, what, lambda: self.schema.apply(changes, self.p.lock_timeout_ms))
        ctx.log(f"{what}: done")

    def table(self) -> TableInfo:
        info = self.schema.table(self.p.table)
        if info is None:
            raise StepFailed(f"table {self.p.table!r} not found in the {self.env} database",
                             ("check the table name (case matters: Prisma's are quoted, e.g. Ingredient)",))
        return info

    def key(self, info: TableInfo) -> str:
        if not info.primary_key:
            raise StepFailed(f"{info.name} has no primary key: batches need a single-column one",
                             ("add a primary key first",))
        if len(info.primary_key) > 1:
            raise StepFailed(f"{info.name} has a composite primary key ({', '.join(info.primary_key)}): "
                             "batches need a single-column one")
        return info.primary_key[0]

    def column(self, info: TableInfo, name: str, hint: str) -> None:
        if name not in info.columns:
            raise StepFailed(f"column {info.name}.{name} does not exist{hint}",
                             ("check the column name and the phase",))

    def absent(self, info: TableInfo, name: str, hint: str) -> None:
        if name in info.columns:
            raise StepFailed(f"column {info.name}.{name} already exists{hint}",
                             ("check the column name and the phase",))

    def count(self, ctx: StepContext, column: str, fill: Fill) -> tuple[int, int]:
        return self.retrying(ctx, "count", lambda: self.schema.count(self.p.table, column, fill))

    # --- backfill, shared by both actions ------------------------------------------------

    def backfill(self, ctx: StepContext, column: str, fill: Fill, key: str) -> str:
        """Batches by primary key until no row is pending; idempotent, so a resume just goes on."""
        p = self.p
        rows, pending = self.count(ctx, column, fill)
        already = rows - pending
        ctx.log(f"{p.table}: {rows} rows, {already} already backfilled, {pending} to go; "
                f"batches of {p.batch_size} by {key}")
        after: str | int | None = ctx.state.get("last_key")
        if after is not None:
            ctx.log(f"continuing after {key} {after}; rows before it are swept at the end")
        total = max(rows, 1)
        done = batches = sweeps = 0
        started = last_report = time.monotonic()
        while True:
            ctx.check_cancelled()
            batch = self.retrying(ctx, f"batch after {key} {after}", functools.partial(
                self.schema.backfill_batch, p.table, key, column, fill, after, p.batch_size, p.lock_timeout_ms))
            if batch.last_key is None:  # the end of the table: anything left (new rows, or before a resume point)?
                sweeps += 1
                rows, pending = self.count(ctx, column, fill)
                if pending == 0:
                    break
                if sweeps >= MAX_SWEEPS:
                    raise StepFailed(
                        f"{pending} rows of {p.table} still need {column} after {sweeps} passes: rows keep "
                        f"arriving without it, or the backfill value is NULL for them",
                        ("deploy the app version that writes the new column, then run backfill again",
                         "check the backfill expression", "run phase=abort-backfill"))
                ctx.log(f"{pending} rows still pending (written during the pass, or before the resume point); "
                        "another pass from the start")
                after = None
                ctx.state["last_key"] = None
                total = max(total, already + done + pending)
                continue
            done += batch.rows
            batches += 1
            after = batch.last_key
            ctx.state["last_key"] = after  # journaled with the step; idempotency covers a mid-step stop
            ctx.state["backfilled"] = int(ctx.state.get("backfilled", 0)) + batch.rows
            total = max(total, already + done)
            ctx.progress(already + done, total, "rows")
            now = time.monotonic()
            if batches % REPORT_EVERY == 0 or now - last_report >= REPORT_EVERY_S:
                last_report = now
                rate = done / max(now - started, 1e-6)
                left = max(total - already - done, 0)
                ctx.log(f"{already + done}/{total} rows ({100 * (already + done) // total}%), {rate:,.0f} rows/s, "
                        f"ETA {left / rate if rate else 0:,.0f} s, last {key} {after}")
            if p.batch_delay_ms:
                ctx.sleep(self.services.real_seconds(p.batch_delay_ms / 1000))
        elapsed = time.monotonic() - started
        ctx.state["last_key"] = None
        ctx.progress(total, total, "rows")
        rate = done / elapsed if elapsed > 0 else 0.0
        return f"{done} rows in {batches} batches ({rate:,.0f} rows/s); {already} were already done"

    def backfill_report(self, ctx: StepContext, column: str, fill: Fill) -> str:
        rows, pending = self.count(ctx, column, fill)
        ctx.log(f"nothing to undo: the {rows - pending} rows already backfilled are harmless, the column is "
                "still nullable; cancel a running backfill with its cancel key, resume it with phase=backfill")
        return f"{rows - pending}/{rows} rows backfilled, {pending} pending; schema unchanged"

    # --- add a column --------------------------------------------------------------------

    def add_column_steps(self) -> list[Step]:
        p = self.p
        fill = Fill(expression=p.backfill or None)
        pending = Fill(expression=p.backfill or "NULL")  # for counting: pending = column IS NULL

        def info_with_column() -> tuple[TableInfo, str]:
            info = self.table()
            key = self.key(info)
            self.column(info, p.column, ": run phase=expand first")
            return info, key

        if p.phase == "expand":
            def check(ctx: StepContext) -> str:
                info = self.table()
                key = self.key(info)
                self.absent(info, p.column, ": if an earlier expand added it, go on with phase=backfill")
                return f"{p.table} has {len(info.columns)} columns, primary key {key}"

            def expand(ctx: StepContext) -> str:
                self.apply(ctx, f"ADD COLUMN {p.column} {p.type}", AddColumn(p.table, p.column, p.type))
                return f"{p.table}.{p.column} {p.type} added (nullable); deploy the app that writes it, then backfill"

            return [self.step("check", "Check the table, its primary key and the column", check),
                    self.step("expand", f"ADD COLUMN {p.column} {p.type} (nullable)", expand)]

        if p.phase == "backfill":
            def check(ctx: StepContext) -> str:
                info, key = info_with_column()
                if info.columns[p.column].not_null:
                    raise StepFailed(f"{p.table}.{p.column} is already NOT NULL: contract is done")
                return f"backfill {p.column} = {p.backfill} by {key}"

            def backfill(ctx: StepContext) -> str:
                return self.backfill(ctx, p.column, fill, self.key(self.table()))

            return [self.step("check", "Check the column", check),
                    self.step("backfill", f"Backfill {p.column} in batches of {p.batch_size}", backfill)]

        if p.phase == "contract":
            def check(ctx: StepContext) -> str:
                info_with_column()
                rows, nulls = self.count(ctx, p.column, pending)
                if nulls:
                    raise StepFailed(f"{nulls} of {rows} rows still have {p.column} NULL: backfill is not finished",
                                     ("run phase=backfill (with the app writing the column) first",))
                return f"no NULL in {rows} rows"

            def add_check(ctx: StepContext) -> str:
                info = self.table()
                if info.columns[p.column].not_null or self.check_name in info.constraints:
                    return "already there"
                self.apply(ctx, f"ADD CONSTRAINT {self.check_name} NOT VALID",
                           AddNotNullCheck(p.table, p.column, self.check_name))
                return "new rows must have it"

            def validate(ctx: StepContext) -> str:
                return self.validate(ctx, p.column, pending)

            def set_not_null(ctx: StepContext) -> str:
                if not self.table().columns[p.column].not_null:
                    self.apply(ctx, f"SET NOT NULL on {p.column}", SetNotNull(p.table, p.column))
                self.apply(ctx, f"DROP CONSTRAINT {self.check_name}", DropConstraint(p.table, self.check_name))
                return f"{p.table}.{p.column} is NOT NULL"

            return [self.step("check", "Check that no row is NULL", check),
                    self.step("add-check", "ADD CHECK (… IS NOT NULL) NOT VALID", add_check),
                    self.step("validate", "VALIDATE the check (writes go on)", validate),
                    self.step("not-null", "SET NOT NULL, DROP the check", set_not_null)]

        if p.phase == "abort-expand":
            def check(ctx: StepContext) -> str:
                info = self.table()
                if p.column not in info.columns:
                    return "nothing to undo: the column is not there"
                if info.columns[p.column].not_null:
                    raise StepFailed(f"{p.table}.{p.column} is NOT NULL: contract ran; run phase=abort-contract first")
                rows, nulls = self.count(ctx, p.column, pending)
                ctx.log(f"{rows - nulls} of {rows} rows have a value in {p.column}: backfilled values, unless an "
                        "app version that writes it is deployed (roll that back first)", "warn")
                return f"{rows - nulls} values will go with the column"

            def drop(ctx: StepContext) -> str:
                self.apply(ctx, f"DROP COLUMN {p.column}", DropColumn(p.table, p.column))
                return f"{p.table} is as before expand"

            return [self.step("check", "Check what the abort removes", check),
                    confirm_step(self.services, self.env, f"Drop the new column {p.table}.{p.column}"),
                    self.step("drop", f"DROP COLUMN {p.column}", drop)]

        if p.phase == "abort-backfill":
            def report(ctx: StepContext) -> str:
                info_with_column()
                return self.backfill_report(ctx, p.column, pending)

            return [self.step("report", "Stop the backfill (nothing to undo)", report)]

        def undo(ctx: StepContext) -> str:  # abort-contract
            info, _ = info_with_column()
            changes: list[SchemaChange] = [DropConstraint(p.table, self.check_name)]
            if info.columns[p.column].not_null:
                changes.append(SetNotNull(p.table, p.column, not_null=False))
            self.apply(ctx, f"DROP CONSTRAINT {self.check_name}" + (", DROP NOT NULL" if len(changes) > 1 else ""),
                       *changes)
            return f"{p.table}.{p.column} is nullable again, without a check: as before contract"

        return [self.step("undo", "Drop the check and NOT NULL", undo)]

    def validate(self, ctx: StepContext, column: str, fill: Fill) -> str:
        info = self.table()
        if info.columns[column].not_null or info.constraints.get(self.check_name, False):
            return "already valid"
        try:
            self.apply(ctx, f"VALIDATE CONSTRAINT {self.check_name}", ValidateConstraint(self.p.table, self.check_name))
        except StepFailed:
            raise
        except Exception as err:
            rows, bad = self.count(ctx, column, fill)
            if not bad:
                raise
            raise StepFailed(f"{bad} of {rows} rows have {column} NULL (written after the check): {err}",
                             ("run phase=backfill, then contract again",
                              "run phase=abort-contract to drop the check")) from err
        return "every row has it"

    # --- rename a column -----------------------------------------------------------------

    def rename_steps(self) -> list[Step]:
        p = self.p
        old, new = p.column, p.new_column
        fill = Fill(copy_from=old)

        def with_both() -> tuple[TableInfo, str]:
            info = self.table()
            key = self.key(info)
            self.column(info, old, ": contract already dropped it" if new in info.columns else "")
            self.column(info, new, ": run phase=expand first")
            if self.trigger not in info.triggers:
                raise StepFailed(f"the sync trigger {self.trigger} is not on {p.table}: run phase=expand first")
            return info, key

        if p.phase == "expand":
            def check(ctx: StepContext) -> str:
                info = self.table()
                key = self.key(info)
                self.column(info, old, "")
                self.absent(info, new, ": if an earlier expand added it, go on with phase=backfill")
                if old == key:
                    raise StepFailed(f"{old} is the primary key: renaming it this way is not supported")
                if info.columns[old].owns_sequence:
                    raise StepFailed(f"{old} owns a sequence (serial or identity): renaming it this way is not "
                                     "supported")
                if info.uses.get(old):
                    ctx.log(f"{', '.join(info.uses[old])} use {old}: create their {new} twins before contract, "
                            "which drops them with the column", "warn")
                return f"{old} is {info.columns[old].type}, primary key {key}"

            def expand(ctx: StepContext) -> str:
                kind = self.table().columns[old].type  # from the catalog: format_type's own text
                self.apply(ctx, f"ADD COLUMN {new} {kind} and the sync trigger",
                           AddColumn(p.table, new, kind),
                           CreateSyncTrigger(p.table, old, new, self.trigger, self.function))
                return f"{new} added, kept equal to {old} by {self.trigger}; deploy the app that uses {new}"

            return [self.step("check", "Check the table and both columns", check),
                    self.step("expand", f"ADD COLUMN {new}, sync trigger", expand)]

        if p.phase == "backfill":
            def check(ctx: StepContext) -> str:
                _, key = with_both()
                return f"copy {old} into {new} by {key}"

            def backfill(ctx: StepContext) -> str:
                return self.backfill(ctx, new, fill, self.key(self.table()))

            return [self.step("check", "Check both columns and the trigger", check),
                    self.step("backfill", f"Copy {old} into {new} in batches of {p.batch_size}", backfill)]

        if p.phase == "contract":
            def check(ctx: StepContext) -> str:
                info, _ = with_both()
                if info.uses.get(old):
                    ctx.log(f"dropping {old} also drops {', '.join(info.uses[old])}", "warn")
                rows, differ = self.count(ctx, new, fill)
                if differ:
                    raise StepFailed(f"{differ} of {rows} rows have {new} different from {old}: backfill is not "
                                     "finished", ("run phase=backfill first",))
                return f"{old} and {new} equal in {rows} rows"

            def carry_not_null(ctx: StepContext) -> str:
                info = self.table()
                if not info.columns[old].not_null:
                    return f"{old} is nullable: nothing to carry over"
                if not info.columns[new].not_null and self.check_name not in info.constraints:
                    self.apply(ctx, f"ADD CONSTRAINT {self.check_name} NOT VALID",
                               AddNotNullCheck(p.table, new, self.check_name))
                return self.validate(ctx, new, Fill(expression="NULL"))

            def drop(ctx: StepContext) -> str:
                info = self.table()
                if old not in info.columns:
                    return "already done"
                changes: list[SchemaChange] = []
                if info.columns[old].not_null and not info.columns[new].not_null:
                    changes += [SetNotNull(p.table, new), DropConstraint(p.table, self.check_name)]
                if info.columns[old].has_default:
                    changes.append(CopyDefault(p.table, old, new))
                changes += [DropSyncTrigger(p.table, self.trigger, self.function), DropColumn(p.table, old)]
                self.apply(ctx, f"drop the trigger and {old}", *changes)
                return f"{p.table}.{old} is now {new}"

            return [self.step("check", f"Check that {new} equals {old} everywhere", check),
                    self.step("not-null", f"Carry NOT NULL over to {new} (check, validate)", carry_not_null),
                    confirm_step(self.services, self.env,
                                 f"Drop {p.table}.{old} for good (the app must read {new} now)"),
                    self.step("drop", f"DROP trigger, function and {old}", drop)]

        if p.phase == "abort-expand":
            def drop(ctx: StepContext) -> str:
                info = self.table()
                self.column(info, old, ": contract already dropped it, nothing of expand is left to undo")
                self.apply(ctx, f"DROP the sync trigger and {new}", DropSyncTrigger(p.table, self.trigger,
                                                                                   self.function),
                           DropColumn(p.table, new))
                return f"{p.table} is as before expand; {old} kept every write"

            return [confirm_step(self.services, self.env, f"Drop the new column {p.table}.{new} and its trigger"),
                    self.step("drop", f"DROP the sync trigger and {new}", drop)]

        if p.phase == "abort-backfill":
            def report(ctx: StepContext) -> str:
                with_both()
                return self.backfill_report(ctx, new, fill)

            return [self.step("report", "Stop the backfill (nothing to undo)", report)]

        def undo(ctx: StepContext) -> str:  # abort-contract
            info = self.table()
            if old not in info.columns:
                back = f"expand-rename-column column={new} new_column={old}"
                raise StepFailed(f"contract finished: {p.table}.{old} is gone; the way back is a rename back ({back})",
                                 (f"rename back: {back}",))
            self.apply(ctx, f"DROP CONSTRAINT {self.check_name}", DropConstraint(p.table, self.check_name))
            return f"{p.table} is as before contract: both columns, the trigger, {new} nullable"

        return [self.step("undo", "Drop the NOT NULL check", undo)]
