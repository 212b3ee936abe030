"""Migration deploy, as the strategy runs it: lint, backup first, apply pending in order under
Prisma's lock, integrity check, REINDEX/ANALYZE. Plus Prisma's resolve, and the rollback that
restores the backup taken before a failed deploy."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from services.backups.catalog import choose_backup
from services.backups.create import cancelled, take_backup
from services.backups.loss import say_loss
from services.backups.verify import check_backup, restore_from_store
from services.core.actions import Param, action, confirm_step
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.ports import MigrationDatabase, MigrationRecord
from services.migrations.lint import Finding, counts, created_tables, lint_migrations
from services.migrations.lint_live import against
from services.migrations.pitr_first import check_archiving, mark_recovery_point, take_deploy_backup, undo_options

if TYPE_CHECKING:
    from services.core.container import Services

PENDING = ("pending", "rolled_back")  # a rolled-back migration is applied again, as Prisma does
BLOCKING = ("failed", "edited")


def pending(records: list[MigrationRecord]) -> list[str]:
    return [m.name for m in records if m.state in PENDING]


def lint_pending(services: Services, env: str, records: list[MigrationRecord] | None = None) -> list[Finding]:
    """Lint the pending migrations, with the database's estimates of their tables (lint_live); pass
    `records` when the status was just read, to not read it twice."""
    database = services.database(env)
    todo = set(pending(database.status() if records is None else records))
    batch = [(name, sql) for name, sql in database.scripts() if name in todo]
    return against(database, lint_migrations(batch), [sql for _, sql in batch],
                   services.config.migrations.lint_blocking_mb)


def check_history(records: list[MigrationRecord]) -> None:
    """Refuse to apply past a failed or edited migration: say which, and what to do."""
    for record in records:
        if record.state == "failed":
            raise StepFailed(
                f"{record.name} failed earlier and is unresolved: {record.logs or 'no logs'}",
                (f"migrate resolve --rolled-back {record.name} (after fixing it), then deploy",
                 f"migrate resolve --applied {record.name} (if you completed it by hand)"))
        if record.state == "edited":
            raise StepFailed(
                f"{record.name} was applied, but its migration.sql has changed since (checksum differs)",
                ("restore the file as it was applied (git log)", "put the change in a new migration"))


def reindex_plan(database: MigrationDatabase, tables: list[str],
                 applied: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """Of the [migrations] reindex_tables, those this deploy's migrations touched, and why each other is
    skipped: not named by any applied migration, absent, or created by this deploy and still empty (its
    indexes were just built, with nothing in them to measure). `applied` None (a journal from before
    it was kept): every table, as before."""
    skipped: dict[str, str] = {}
    if applied is None:
        named, created = list(tables), set()
    else:
        scripts = dict(database.scripts())
        texts = [scripts[name] for name in applied if name in scripts]
        named = [t for t in tables if any(_names(t).search(text) for text in texts)]
        skipped = {t: "no migration of this deploy names it" for t in tables if t not in named}
        created = created_tables(texts)
    counts = database.row_counts(named)
    skipped |= {t: "it does not exist" for t in named if t not in counts}
    skipped |= {t: "created by this deploy and empty" for t in named if t in created and counts.get(t) == 0}
    return [t for t in named if t not in skipped], skipped


def _names(table: str) -> re.Pattern[str]:
    """The table's name as a word anywhere in SQL text, quoted or not, in any case: a mention in a
    comment or a string counts too, so a table is rather reindexed once too often than missed."""
    return re.compile(rf"(?<![\w$]){re.escape(table)}(?![\w$])", re.IGNORECASE)


@action("migrate", "Apply pending migrations (backup first)", confirm_before="apply")
def migrate(services: Services, env: str, params: dict[str, Any]) -> Operation:
    database = services.database(env)
    database.scripts()  # no usable migrations folder: a config error (MigrationsDirError), before anything starts
    tables = services.config.migrations.integrity_tables
    production = services.config.environment(env).production
    with_pitr = services.config.migration_backup(env) == "pitr"  # else a pg_dump (services/migrations/pitr_first.py)

    def archiving(ctx: StepContext) -> str:
        return check_archiving(services, env, ctx, bool(pending(database.status())))

    def undo(ctx: StepContext) -> tuple[str, ...]:
        if with_pitr:
            return undo_options(env, ctx.state)
        return (f"roll back: migrate-rollback (restores backup {ctx.state.get('backup_id')})",)

    def lint(ctx: StepContext) -> str:
        findings = lint_pending(services, env)
        for finding in findings:
            ctx.log(f"{finding.label} {finding.migration}:{finding.line} {finding.rule}: {finding.message}",
                    "info" if finding.info else "warning")
            if finding.note:
                ctx.log(f"  database: {finding.note}")
            ctx.log(f"  safer: {finding.safer}")
        blocking = [f for f in findings if f.blocking]
        if blocking and production:
            ctx.ask_reason(f"{len(blocking)} blocking lint findings in PRODUCTION. Give a reason to override.")
        ctx.state["lint"] = [f"{f.migration}:{f.line} {f.rule}" for f in findings]
        return counts(findings) if findings else "clean"

    def backup(ctx: StepContext) -> str:
        records = database.status()
        check_history(records)
        ctx.state["counts_before"] = database.row_counts(tables)
        if not pending(records):
            ctx.log("nothing pending: no backup is taken (it would change nothing to restore)")
            return "no backup: nothing pending"
        if with_pitr:
            return take_deploy_backup(services, env, ctx)
        ctx.state["backup_id"] = take_backup(services, env, ctx, include_files=False)
        return f"backup {ctx.state['backup_id']}"

    def apply(ctx: StepContext) -> str:
        with database.lock(ctx.log):
            records = database.status()
            check_history(records)
            todo = pending(records)
            if todo and not (ctx.state.get("backup_id") or ctx.state.get("pitr_backup")):
                raise StepFailed(f"{len(todo)} migrations became pending after the backup step found none, so no"
                                 " backup was taken: nothing was applied", ("run migrate again",))
            if todo and with_pitr:
                mark_recovery_point(services, env, ctx)
            for done, name in enumerate(todo):
                ctx.check_cancelled()
                ctx.progress(done, len(todo), "migrations")
                try:
                    database.apply(name, ctx.log)
                except StepFailed as failed:
                    raise StepFailed(str(failed), (*undo(ctx), *failed.next_options[1:])) from None
            ctx.progress(len(todo), len(todo), "migrations")
        ctx.state["applied"] = todo  # none: no migration.applied notification
        return f"{len(todo)} applied" if todo else "nothing pending"

    def integrity(ctx: StepContext) -> str:
        before, after = ctx.state["counts_before"], database.row_counts(tables)
        dropped = [t for t in tables if after.get(t, 0) < before.get(t, 0)]
        ctx.log(f"{'table':<12} {'before':>9} {'after':>9}")
        for table in tables:
            flag = "  DROPPED" if table in dropped else ""
            ctx.log(f"{table:<12} {before.get(table, 0):>9} {after.get(table, 0):>9}{flag}")
        if dropped:
            raise StepFailed(f"row counts dropped in {', '.join(dropped)}", (*undo(ctx), "investigate, then continue"))
        return "row counts kept"

    def reindex(ctx: StepContext) -> str:
        todo, skipped = reindex_plan(database, services.config.migrations.reindex_tables, ctx.state.get("applied"))
        for table, why in skipped.items():
            ctx.log(f"{table}: no REINDEX or ANALYZE: {why}")
        for done, table in enumerate(todo, start=1):
            database.reindex(table)
            ctx.progress(done, len(todo), "tables")
        rest = f"; {len(skipped)} skipped (the log says why)" if skipped else ""
        return f"REINDEX CONCURRENTLY + ANALYZE of {len(todo)} tables{rest}"

    first = [Step("archiving", "Check that WAL archiving works (PITR)", archiving)] if with_pitr else []
    return Operation("migrate", env, f"Migrate {env}", [
        *first,
        Step("lint", "Lint the pending migrations", lint),
        Step("backup", "pgBackRest backup (PITR)" if with_pitr else "Back up the database", backup),
        Step("apply", "Apply pending migrations", apply),
        Step("integrity", "Integrity check (row counts)", integrity),
        Step("reindex", "REINDEX and ANALYZE", reindex),
    ], params)


@action("resolve", "Resolve a failed migration (as applied or rolled back)", destructive=True, params=(
    Param("applied", "mark this failed migration as applied (you completed it by hand)"),
    Param("rolled_back", "mark this failed migration as rolled back (deploy applies it again)"),
))
def resolve(services: Services, env: str, params: dict[str, Any]) -> Operation:
    # As `prisma migrate resolve`: exactly one of --applied NAME or --rolled-back NAME.
    applied = bool(params.get("applied"))
    name = str(params.get("applied") or params.get("rolled_back") or "")
    if not name or (params.get("applied") and params.get("rolled_back")):
        raise ValueError("resolve needs exactly one of --applied MIGRATION or --rolled-back MIGRATION")

    def run(ctx: StepContext) -> str:
        return services.database(env).resolve(name, applied)

    verb = "applied" if applied else "rolled back"
    return Operation("resolve", env, f"Mark {name} as {verb} in {env}", [
        confirm_step(services, env, f"Mark {name} as {verb}"), Step("resolve", f"Mark as {verb}", run)], params)


@action("migrate-rollback", "Roll back a migration deploy: restore the database backup", destructive=True,
        params=(Param("backup_id", "the backup to restore", default_is="the newest complete backup"),))
def migrate_rollback(services: Services, env: str, params: dict[str, Any]) -> Operation:
    database = services.database(env)

    def choose(ctx: StepContext) -> str:
        chosen = choose_backup(services, env, params.get("backup_id"))
        ctx.state["backup_id"] = chosen.id
        say_loss(services, env, chosen, ctx)  # the writes since the backup: in the confirmation that follows
        return f"backup {chosen.id} (migration head {chosen.migration_head or '?'})"

    def verify(ctx: StepContext) -> str:
        # Signature, streamed checksums (and an older plain dump's lines): a refusal changes nothing.
        check_backup(services, env, ctx.state["backup_id"], ctx)
        return f"signature and sha256 checked ({ctx.state['trusted']})"

    def restore(ctx: StepContext) -> str:
        # zstd or gzip as the manifest says, streamed and re-checked: a mismatch never commits.
        restore_from_store(services, env, ctx.state["backup_id"], database, ctx.log, cancelled(ctx))
        return "database restored"

    def status(ctx: StepContext) -> str:
        records = database.status()
        waiting = pending(records)
        return f"{len(records) - len(waiting)} applied, {len(waiting)} pending after restore"

    return Operation("migrate-rollback", env, f"Restore {env}'s database from backup", [
        Step("choose", "Choose the backup", choose),
        confirm_step(services, env, "Restore the database from the backup (current data is replaced)"),
        Step("verify", "Verify the backup's signature and checksums", verify),
        Step("restore", "Restore the database", restore),
        Step("status", "Read the migration status", status),
    ], params)

