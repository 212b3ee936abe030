"""What the phases of both procedures are built from: steps that close the connection after them,
schema changes retried with backoff while their lock is busy, the checks of the table and its
columns, the NOT NULL check, and the operation an action builds from its parameters.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.ports import (
    AddNotNullCheck,
    Fill,
    LockBusy,
    SchemaChange,
    SchemaChanges,
    TableInfo,
    ValidateConstraint,
)
from services.migrations.expand.params import Params, not_null_check, parse

if TYPE_CHECKING:
    from services.core.container import Services

T = TypeVar("T")

BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 4.0
NULLS = Fill(expression="NULL")  # for counting: rows whose column IS NULL


def operation(kind: str, what: str, procedure: type[Phase], services: Services, env: str,
              params: dict[str, Any]) -> Operation:
    """The action `kind`: the steps of the phase asked for, or one step refusing bad parameters."""
    p, problems = parse(params, rename=procedure.RENAME)
    title = f"Expand/contract: {what}: {params.get('phase', '?')}"
    if p is None:
        return Operation(kind, env, title, [Step("check", "Check the parameters", _refuse(problems))], params)
    return Operation(kind, env, title, procedure(services, env, p).steps(), params)


def _refuse(problems: list[str]) -> Callable[[StepContext], str]:
    def run(ctx: StepContext) -> str:
        raise StepFailed("; ".join(problems), ("fix the parameters and run it again",))

    return run


class Phase(ABC):
    """The steps of one phase of a procedure; they reach the database only through the SchemaChanges port.

    A procedure says what each phase does and what its backfill writes (`fill`); the rest is shared.
    """

    RENAME: ClassVar[bool]  # which parameters the procedure takes (see params.parse)

    def __init__(self, services: Services, env: str, p: Params) -> None:
        self.services = services
        self.env = env
        self.p = p
        self.schema: SchemaChanges = services.schema(env)
        self.target = p.new_column or p.column  # the column the backfill fills and contract makes NOT NULL
        self.check_name = not_null_check(p.table, self.target)

    def steps(self) -> list[Step]:
        """The steps of the phase the parameters name."""
        return {
            "expand": self.expand, "backfill": self.backfill, "contract": self.contract,
            "abort-expand": self.abort_expand, "abort-backfill": self.abort_backfill,
            "abort-contract": self.abort_contract,
        }[self.p.phase]()

    # --- the procedure's own ----------------------------------------------------------------

    @property
    @abstractmethod
    def fill(self) -> Fill:
        """What the backfill writes into `target`, and so which rows are pending."""

    @abstractmethod
    def expanded(self) -> tuple[TableInfo, str]:
        """The table and its primary key, checked to be as expand left it."""

    @abstractmethod
    def expand(self) -> list[Step]: ...

    @abstractmethod
    def backfill(self) -> list[Step]: ...

    @abstractmethod
    def contract(self) -> list[Step]: ...

    @abstractmethod
    def abort_expand(self) -> list[Step]: ...

    @abstractmethod
    def abort_contract(self) -> list[Step]: ...

    def abort_backfill(self) -> list[Step]:
        def report(ctx: StepContext) -> str:
            self.expanded()
            rows, pending = self.count(ctx, self.target, self.fill)
            ctx.log(f"nothing to undo: the {rows - pending} rows already backfilled are harmless, the column is "
                    "still nullable; cancel a running backfill with its cancel key, resume it with phase=backfill")
            return f"{rows - pending}/{rows} rows backfilled, {pending} pending; schema unchanged"

        return [self.step("report", "Stop the backfill (nothing to undo)", report)]

    # --- building blocks ------------------------------------------------------------------

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

    def keyed(self) -> tuple[TableInfo, str]:
        """The table, and its primary key (which must be a single column)."""
        info = self.table()
        return info, self.key(info)

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

    # --- the NOT NULL check, by which contract makes a column NOT NULL without blocking writes ---

    def add_not_null_check(self, ctx: StepContext, info: TableInfo, column: str) -> bool:
        """ADD the check NOT VALID (new rows must have `column`), unless it or NOT NULL is there already."""
        if info.columns[column].not_null or self.check_name in info.constraints:
            return False
        self.apply(ctx, f"ADD CONSTRAINT {self.check_name} NOT VALID",
                   AddNotNullCheck(self.p.table, column, self.check_name))
        return True

    def validate(self, ctx: StepContext, column: str) -> str:
        """VALIDATE the check: it scans the table, but reads and writes go on."""
        info = self.table()
        if info.columns[column].not_null or info.constraints.get(self.check_name, False):
            return "already valid"
        try:
            self.apply(ctx, f"VALIDATE CONSTRAINT {self.check_name}", ValidateConstraint(self.p.table, self.check_name))
        except StepFailed:
            raise
        except Exception as err:
            rows, bad = self.count(ctx, column, NULLS)
            if not bad:
                raise
            raise StepFailed(f"{bad} of {rows} rows have {column} NULL (written after the check): {err}",
                             ("run phase=backfill, then contract again",
                              "run phase=abort-contract to drop the check")) from err
        return "every row has it"
