"""Migration deploy: backup first, apply pending in order, integrity check, reindex."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.backups import take_backup
from services.catalog import action
from services.operations import Operation, Step, StepContext, StepFailed

if TYPE_CHECKING:
    from services.factory import Services


@action("migrate", "Apply pending migrations (backup first)", confirm_before="apply")
def migrate(services: Services, env: str, params: dict[str, Any]) -> Operation:
    database = services.database(env)
    tables = services.config.migrations.integrity_tables

    def backup(ctx: StepContext) -> str:
        ctx.state["counts_before"] = database.row_counts(tables)
        ctx.state["backup_id"] = take_backup(services, env, ctx)
        return f"backup {ctx.state['backup_id']}"

    def apply(ctx: StepContext) -> str:
        pending = [m.name for m in database.status() if m.state == "pending"]
        for done, name in enumerate(pending):
            ctx.check_cancelled()
            ctx.progress(done, len(pending), "migrations")
            database.apply(name, ctx.log)
        ctx.progress(len(pending), len(pending), "migrations")
        return f"{len(pending)} applied" if pending else "nothing pending"

    def integrity(ctx: StepContext) -> str:
        before, after = ctx.state["counts_before"], database.row_counts(tables)
        dropped = [t for t in tables if after.get(t, 0) < before.get(t, 0)]
        for table in tables:
            flag = "  DROPPED" if table in dropped else ""
            ctx.log(f"{table:<12} before {before.get(table, 0):>8}  after {after.get(table, 0):>8}{flag}")
        if dropped:
            raise StepFailed(f"row counts dropped in {', '.join(dropped)}",
                             (f"restore backup {ctx.state['backup_id']}", "investigate and resolve"))
        return "row counts kept"

    def reindex(ctx: StepContext) -> str:
        for done, table in enumerate(services.config.migrations.reindex_tables, start=1):
            database.reindex(table)
            ctx.progress(done, len(services.config.migrations.reindex_tables), "tables")
        return "REINDEX + ANALYZE done"

    return Operation("migrate", env, f"Migrate {env}", [
        Step("backup", "Back up the database", backup),
        Step("apply", "Apply pending migrations", apply),
        Step("integrity", "Integrity check (row counts)", integrity),
        Step("reindex", "REINDEX and ANALYZE", reindex),
    ], params)
