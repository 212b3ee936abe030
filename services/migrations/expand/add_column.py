"""Add a column: nullable first, filled in batches, NOT NULL last.

    expand-add-column     table, column, type, backfill, phase, batch_size=1000
      expand          ADD COLUMN column type, nullable: no rewrite, a moment's lock.
                      Then deploy the app version that writes the column.
      backfill        rows where column IS NULL get `backfill`, batch_size rows at a time by primary key,
                      each batch its own short transaction. Idempotent: a resumed or repeated run
                      skips the rows already done, and reports how many.
      contract        refused while any row is NULL; then ADD CHECK (column IS NOT NULL) NOT VALID,
                      VALIDATE (scans without blocking writes), SET NOT NULL (skips the scan thanks to
                      the check), DROP the check.
      abort-expand    DROP the new column (confirmed; it only held backfilled values unless a new app
                      version wrote to it).
      abort-contract  DROP the NOT NULL check if contract created it, and DROP NOT NULL if contract got
                      that far.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.core.actions import Param, action, confirm_step
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.ports import AddColumn, DropColumn, DropConstraint, Fill, SchemaChange, SetNotNull, TableInfo
from services.migrations.expand.backfill import backfill_in_batches
from services.migrations.expand.params import COMMON
from services.migrations.expand.phase import Phase, operation

if TYPE_CHECKING:
    from services.core.container import Services

KIND = "expand-add-column"


@action(KIND, "Expand/contract: add a column (expand, backfill, contract)", params=(
    Param("table", "the table", required=True, example="Ingredient"),
    Param("column", "the new column", required=True, example="expiresAt"),
    Param("type", "its type (needed to expand)", example="timestamp(3)"),
    Param("backfill", "SQL for existing rows (needed to backfill; trusted operator input)", example="now()"),
    *COMMON,
))
def add_column(services: Services, env: str, params: dict[str, Any]) -> Operation:
    what = f"add {params.get('table', '?')}.{params.get('column', '?')}"
    return operation(KIND, what, AddColumnPhase, services, env, params)


class AddColumnPhase(Phase):
    RENAME = False

    @property
    def fill(self) -> Fill:  # pending: the column IS NULL; only the backfill phase needs the expression
        return Fill(expression=self.p.backfill or None)

    def expanded(self) -> tuple[TableInfo, str]:
        info, key = self.keyed()
        self.column(info, self.p.column, ": run phase=expand first")
        return info, key

    def expand(self) -> list[Step]:
        p = self.p

        def check(ctx: StepContext) -> str:
            info, key = self.keyed()
            self.absent(info, p.column, ": if an earlier expand added it, go on with phase=backfill")
            return f"{p.table} has {len(info.columns)} columns, primary key {key}"

        def expand(ctx: StepContext) -> str:
            self.apply(ctx, f"ADD COLUMN {p.column} {p.type}", AddColumn(p.table, p.column, p.type))
            return f"{p.table}.{p.column} {p.type} added (nullable); deploy the app that writes it, then backfill"

        return [self.step("check", "Check the table, its primary key and the column", check),
                self.step("expand", f"ADD COLUMN {p.column} {p.type} (nullable)", expand)]

    def backfill(self) -> list[Step]:
        p = self.p

        def check(ctx: StepContext) -> str:
            info, key = self.expanded()
            if info.columns[p.column].not_null:
                raise StepFailed(f"{p.table}.{p.column} is already NOT NULL: contract is done")
            return f"backfill {p.column} = {p.backfill} by {key}"

        return [self.step("check", "Check the column", check),
                self.step("backfill", f"Backfill {p.column} in batches of {p.batch_size}",
                          lambda ctx: backfill_in_batches(self, ctx))]

    def contract(self) -> list[Step]:
        p = self.p

        def check(ctx: StepContext) -> str:
            self.expanded()
            rows, nulls = self.count(ctx, p.column, self.fill)
            if nulls:
                raise StepFailed(f"{nulls} of {rows} rows still have {p.column} NULL: backfill is not finished",
                                 ("run phase=backfill (with the app writing the column) first",))
            return f"no NULL in {rows} rows"

        def add_check(ctx: StepContext) -> str:
            return "new rows must have it" if self.add_not_null_check(ctx, self.table(), p.column) else \
                "already there"

        def set_not_null(ctx: StepContext) -> str:
            if not self.table().columns[p.column].not_null:
                self.apply(ctx, f"SET NOT NULL on {p.column}", SetNotNull(p.table, p.column))
            self.apply(ctx, f"DROP CONSTRAINT {self.check_name}", DropConstraint(p.table, self.check_name))
            return f"{p.table}.{p.column} is NOT NULL"

        return [self.step("check", "Check that no row is NULL", check),
                self.step("add-check", "ADD CHECK (… IS NOT NULL) NOT VALID", add_check),
                self.step("validate", "VALIDATE the check (writes go on)", lambda ctx: self.validate(ctx, p.column)),
                self.step("not-null", "SET NOT NULL, DROP the check", set_not_null)]

    def abort_expand(self) -> list[Step]:
        p = self.p

        def check(ctx: StepContext) -> str:
            info = self.table()
            if p.column not in info.columns:
                return "nothing to undo: the column is not there"
            if info.columns[p.column].not_null:
                raise StepFailed(f"{p.table}.{p.column} is NOT NULL: contract ran; run phase=abort-contract first")
            rows, nulls = self.count(ctx, p.column, self.fill)
            ctx.log(f"{rows - nulls} of {rows} rows have a value in {p.column}: backfilled values, unless an "
                    "app version that writes it is deployed (roll that back first)", "warn")
            return f"{rows - nulls} values will go with the column"

        def drop(ctx: StepContext) -> str:
            self.apply(ctx, f"DROP COLUMN {p.column}", DropColumn(p.table, p.column))
            return f"{p.table} is as before expand"

        return [self.step("check", "Check what the abort removes", check),
                confirm_step(self.services, self.env, f"Drop the new column {p.table}.{p.column}"),
                self.step("drop", f"DROP COLUMN {p.column}", drop)]

    def abort_contract(self) -> list[Step]:
        p = self.p

        def undo(ctx: StepContext) -> str:
            info, _ = self.expanded()
            changes: list[SchemaChange] = [DropConstraint(p.table, self.check_name)]
            if info.columns[p.column].not_null:
                changes.append(SetNotNull(p.table, p.column, not_null=False))
            self.apply(ctx, f"DROP CONSTRAINT {self.check_name}" + (", DROP NOT NULL" if len(changes) > 1 else ""),
                       *changes)
            return f"{p.table}.{p.column} is nullable again, without a check: as before contract"

        return [self.step("undo", "Drop the check and NOT NULL", undo)]
