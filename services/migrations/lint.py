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
    return [Finding(rule, name, st.line, st.display, message, safer, RULES[rule])
            for name, sql in migrations for st, (rule, message, safer) in linter.lint(sql)]


def created_tables(scripts: Iterable[str]) -> set[str]:
    """The tables the scripts create (CREATE TABLE, and a new table's new name), as the catalog names them."""
    from services.migrations.lint_engine import Linter

    linter = Linter()
    for sql in scripts:
        linter.lint(sql)
    return linter.created
