"""Migration lint: squawk-like checks of PostgreSQL migration SQL (Prisma migration.sql files).

Each file is parsed by PostgreSQL's own grammar (lint_parse: pglast, cached by checksum) and the
rules read the syntax trees. The lint is transaction-aware: prisma migrate deploy runs a file as
one transaction, so CONCURRENTLY in it fails and a VALIDATE after an ADD ... NOT VALID in it
keeps the ADD's lock. A statement the parser rejects is a finding, never skipped. Each finding
says which lock or rewrite hurts and the safer expand/contract steps (lint_rules).

The engine (lint_engine) is imported on the first lint: pglast takes a few hundred milliseconds
to import, which every CLI command and the TUI's start-up would otherwise pay.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    rule: str  # stable id, e.g. "adding-not-null-without-default"
    migration: str  # migration folder name ("" if linting a bare string)
    line: int  # 1-based line where the statement starts
    statement: str  # the statement, whitespace-collapsed, cut to 100 chars
    message: str  # what is wrong and why it hurts
    safer: str  # the safer alternative, concretely
    blocking: bool  # blocking findings need an override with a reason in production
    table: str = ""  # the table the statement locks, as the catalog names it; "" for the whole migration
    # With the environment's database (lint_live): the table's estimates, and why the level is what it is.
    info: bool = False  # downgraded to information: the table is empty, or absent (not blocking then)
    estimated_rows: int | None = None  # estimated rows (pg_class.reltuples); None: unknown or not read
    size_bytes: int | None = None  # table, TOAST and indexes (pg_total_relation_size); None: not read
    estimated_lock_s: float | None = None  # ESTIMATED seconds the lock is held (lint_live's rates); None: not read
    note: str = ""  # what the database says about the table, or why there are no estimates

    @property
    def level(self) -> str:
        return "blocking" if self.blocking else "info" if self.info else "warning"

    @property
    def label(self) -> str:
        """BLOCKING, warning or info, as the deploy's log and `migrate lint` print it."""
        return self.level.upper() if self.blocking else self.level


def counts(findings: list[Finding]) -> str:
    """`2 blocking, 1 warnings`, plus `, 3 info` when findings were downgraded."""
    blocking, info = sum(f.blocking for f in findings), sum(f.info for f in findings)
    return f"{blocking} blocking, {len(findings) - blocking - info} warnings" + (f", {info} info" if info else "")


# Rule id -> blocking.
RULES: dict[str, bool] = {
    "adding-not-null-without-default": True,
    "adding-column-rewrites-table": True,
    "setting-not-null": True,
    "create-index-non-concurrently": True,
    "concurrently-in-transaction": True,
    "changing-column-type": True,
    "dropping-column": True,
    "dropping-table": True,
    "renaming-column": True,
    "renaming-table": True,
    "constraint-without-not-valid": True,
    "constraint-builds-index": True,
    "unparseable-statement": True,
    "missing-lock-timeout": False,
}


def lint_sql(sql: str, migration: str = "") -> list[Finding]:
    """Findings for one migration's SQL, in statement order."""
    return lint_migrations([(migration, sql)])


def lint_migrations(migrations: Iterable[tuple[str, str]]) -> list[Finding]:
    """Findings for (name, sql) migrations applied in this order."""
    from services.migrations.lint_engine import Linter

    linter = Linter()
    return [Finding(rule, name, st.line, st.display, message, safer, RULES[rule], table)
            for name, sql in migrations for st, (rule, message, safer), table in linter.lint(sql)]


def created_tables(scripts: Iterable[str]) -> set[str]:
    """The tables the scripts create (CREATE TABLE, and a new table's new name), as the catalog names them."""
    from services.migrations.lint_engine import Linter

    linter = Linter()
    for sql in scripts:
        linter.lint(sql)
    return linter.created
