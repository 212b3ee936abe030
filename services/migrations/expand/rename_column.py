"""Rename a column: a twin kept equal by a trigger while the app moves over, then the old one dropped.

    expand-rename-column  table, column, new_column, phase, batch_size=1000
      expand          ADD COLUMN new_column (the old one's type) and a trigger that keeps the two equal
                      whichever one a writer sets, in one transaction. Then deploy the app version that
                      reads and writes new_column.
      backfill        batches by primary key: new_column = column where they differ.
      contract        refused while any row differs; carries NOT NULL over (check, validate) and, after
                      a confirmation, in one transaction: SET NOT NULL, the old default on the new column,
                      DROP the trigger and function, DROP the old column.
      abort-expand    DROP the trigger, function and new column in one transaction; the old column has
                      every write, the trigger saw to it.
      abort-contract  DROP the NOT NULL check if contract created it. Contract drops the old column in one
                      transaction: before it commits there is nothing else to undo, after it the way back
                      is a rename the other way round, which abort-contract says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.core.actions import Param, action, confirm_step
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.ports import (
    AddColumn,
    CopyDefault,
    CreateSyncTrigger,
    DropColumn,
    DropConstraint,
    DropSyncTrigger,
    Fill,
    SchemaChange,
    SetNotNull,
    TableInfo,
)
from services.migrations.expand.backfill import backfill_in_batches
from services.migrations.expand.params import COMMON, Params, sync_names
from services.migrations.expand.phase import Phase, operation

if TYPE_CHECKING:
    from services.core.container import Services

KIND = "expand-rename-column"


@action(KIND, "Expand/contract: rename a column (expand, backfill, contract)", params=(
    Param("table", "the table", required=True, example="Ingredient"),
    Param("column", "the column's current name", required=True, example="qty"),
    Param("new_column", "its new name", required=True, example="quantity"),
    *COMMON,
))
def rename_column(services: Services, env: str, params: dict[str, Any]) -> Operation:
    what = f"rename {params.get('table', '?')}.{params.get('column', '?')} to {params.get('new_column', '?')}"
    return operation(KIND, what, RenameColumnPhase, services, env, params)


class RenameColumnPhase(Phase):
    RENAME = True

    def __init__(self, services: Services, env: str, p: Params) -> None:
        super().__init__(services, env, p)
        self.old, self.new = p.column, p.new_column
        self.trigger, self.function = sync_names(p.table, p.column, p.new_column)

    @property
    def fill(self) -> Fill:  # pending: the two columns differ
        return Fill(copy_from=self.old)

    def expanded(self) -> tuple[TableInfo, str]:
        old, new = self.old, self.new
        info, key = self.keyed()
        self.column(info, old, ": contract already dropped it" if new in info.columns else "")
        self.column(info, new, ": run phase=expand first")
        if self.trigger not in info.triggers:
            raise StepFailed(f"the sync trigger {self.trigger} is not on {self.p.table}: run phase=expand first")
        return info, key

    def expand(self) -> list[Step]:
        p, old, new = self.p, self.old, self.new

        def check(ctx: StepContext) -> str:
            info, key = self.keyed()
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

    def backfill(self) -> list[Step]:
        old, new = self.old, self.new

        def check(ctx: StepContext) -> str:
            _, key = self.expanded()
            return f"copy {old} into {new} by {key}"

        return [self.step("check", "Check both columns and the trigger", check),
                self.step("backfill", f"Copy {old} into {new} in batches of {self.p.batch_size}",
                          lambda ctx: backfill_in_batches(self, ctx))]

    def contract(self) -> list[Step]:
        p, old, new = self.p, self.old, self.new

        def check(ctx: StepContext) -> str:
            info, _ = self.expanded()
            if info.uses.get(old):
                ctx.log(f"dropping {old} also drops {', '.join(info.uses[old])}", "warn")
            rows, differ = self.count(ctx, new, self.fill)
            if differ:
                raise StepFailed(f"{differ} of {rows} rows have {new} different from {old}: backfill is not "
                                 "finished", ("run phase=backfill first",))
            return f"{old} and {new} equal in {rows} rows"

        def carry_not_null(ctx: StepContext) -> str:
            info = self.table()
            if not info.columns[old].not_null:
                return f"{old} is nullable: nothing to carry over"
            self.add_not_null_check(ctx, info, new)
            return self.validate(ctx, new)

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
                             f"Drop {p.table}.{old} for good (the app must read {new} now)", step_id="confirm-drop"),
                self.step("drop", f"DROP trigger, function and {old}", drop)]

    def abort_expand(self) -> list[Step]:
        p, old, new = self.p, self.old, self.new

        def drop(ctx: StepContext) -> str:
            info = self.table()
            self.column(info, old, ": contract already dropped it, nothing of expand is left to undo")
            self.apply(ctx, f"DROP the sync trigger and {new}", DropSyncTrigger(p.table, self.trigger, self.function),
                       DropColumn(p.table, new))
            return f"{p.table} is as before expand; {old} kept every write"

        return [confirm_step(self.services, self.env, f"Drop the new column {p.table}.{new} and its trigger"),
                self.step("drop", f"DROP the sync trigger and {new}", drop)]

    def abort_contract(self) -> list[Step]:
        p, old, new = self.p, self.old, self.new

        def undo(ctx: StepContext) -> str:
            info = self.table()
            if old not in info.columns:
                back = f"{KIND} column={new} new_column={old}"
                raise StepFailed(f"contract finished: {p.table}.{old} is gone; the way back is a rename back ({back})",
                                 (f"rename back: {back}",))
            self.apply(ctx, f"DROP CONSTRAINT {self.check_name}", DropConstraint(p.table, self.check_name))
            return f"{p.table} is as before contract: both columns, the trigger, {new} nullable"

        return [self.step("undo", "Drop the NOT NULL check", undo)]
