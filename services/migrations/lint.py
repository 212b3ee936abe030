"""Migration lint: squawk-like checks of PostgreSQL migration SQL (Prisma migration.sql files).

A small scanner drops comments, replaces string literals, dollar-quoted bodies and quoted
identifiers with numbered placeholders (so keywords or `;` inside them never match), splits
statements on top-level `;` and uppercases the rest. Rules are regexes over that normal form.
Each finding says which lock or rewrite hurts and the safer expand/contract steps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from services.core.sql_text import Statement, split_statements


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
    "setting-not-null": True,
    "create-index-non-concurrently": True,
    "changing-column-type": True,
    "dropping-column": True,
    "dropping-table": True,
    "renaming-column": True,
    "renaming-table": True,
    "constraint-without-not-valid": True,
    "missing-lock-timeout": False,
}

# --- matching -------------------------------------------------------------------------------

_ID = r'(?:"#\d+"|[^\W\d][\w$]*)'  # one identifier: a quoted placeholder or a bare word
_QNAME = rf"{_ID}(?: ?\. ?{_ID})*"  # schema-qualified name

_CREATE_TABLE = re.compile(
    rf"^CREATE (?:(?:GLOBAL|LOCAL) )?(?:TEMP |TEMPORARY |UNLOGGED )?TABLE (?:IF NOT EXISTS )?(?P<table>{_QNAME})"
)
_CREATE_INDEX = re.compile(
    rf"^CREATE (?P<unique>UNIQUE )?INDEX (?P<conc>CONCURRENTLY )?(?:IF NOT EXISTS )?(?:{_ID} )?ON (?:ONLY )?"
    rf"(?P<table>{_QNAME})"
)
_ALTER_TABLE = re.compile(rf"^ALTER TABLE (?:IF EXISTS )?(?:ONLY )?(?P<table>{_QNAME}) ?(?P<actions>.*)$")
_DROP_TABLE = re.compile(rf"^DROP TABLE (?:IF EXISTS )?(?P<tables>{_QNAME}(?: , {_QNAME})*)")
_REFERENCES = re.compile(rf"\bREFERENCES (?P<table>{_QNAME})")
# Other statements that queue for a conflicting lock on an existing table.
_OTHER_LOCKING = re.compile(
    r"^(?:DROP (?:INDEX(?! CONCURRENTLY)|TRIGGER|VIEW|MATERIALIZED VIEW)|TRUNCATE|LOCK|ALTER INDEX|CLUSTER"
    r"|CREATE (?:OR REPLACE )?(?:CONSTRAINT )?TRIGGER|REINDEX\b(?!.*\bCONCURRENTLY\b)|VACUUM FULL)\b"
)

_SET_TIMEOUT = re.compile(r"^SET (?:SESSION |LOCAL )?LOCK_TIMEOUT ?(?:=|\bTO\b) ?(?P<value>.+)$")
_RESET_TIMEOUT = re.compile(r"^RESET (?:LOCK_TIMEOUT|ALL)$")
_SET_CONFIG = re.compile(r"^SELECT SET_CONFIG \( '#(?P<name>\d+)' , '#(?P<value>\d+)'")

# ALTER TABLE actions, matched one at a time.
_RENAME_TABLE = re.compile(rf"^RENAME TO (?P<new>{_ID})")
_RENAME_COLUMN = re.compile(rf"^RENAME (?:COLUMN )?(?!CONSTRAINT\b)(?P<old>{_ID}) TO (?P<new>{_ID})")
_ADD_CONSTRAINT = re.compile(rf"^ADD (?:CONSTRAINT (?P<name>{_ID}) )?(?P<kind>CHECK|FOREIGN KEY)\b")
_ADD_COLUMN = re.compile(
    rf"^ADD (?!(?:CONSTRAINT|CHECK|FOREIGN|PRIMARY|UNIQUE|EXCLUDE)\b)(?:COLUMN )?(?:IF NOT EXISTS )?"
    rf"(?P<col>{_ID})(?P<definition>.*)$"
)
_NOT_NULL_CHECK = re.compile(rf"\bCHECK (?:\( )+(?P<col>{_ID}) IS NOT NULL(?: \))+(?: NOT VALID)?$")
_DROP_CONSTRAINT = re.compile(rf"^DROP CONSTRAINT (?:IF EXISTS )?(?P<name>{_ID})")
_DROP_COLUMN = re.compile(rf"^DROP (?!CONSTRAINT\b)(?:COLUMN )?(?:IF EXISTS )?(?P<col>{_ID})")
_ALTER_TYPE = re.compile(rf"^ALTER (?:COLUMN )?(?P<col>{_ID}) (?:SET DATA )?TYPE\b")
_SET_NOT_NULL = re.compile(rf"^ALTER (?:COLUMN )?(?P<col>{_ID}) SET NOT NULL\b")
_VALIDATE = re.compile(rf"^VALIDATE CONSTRAINT (?P<name>{_ID})")
_NOT_VALID = re.compile(r"\bNOT VALID\b")


def _name(st: Statement, raw: str) -> str:
    """The unqualified, case-folded name: "User" stays User, public.user becomes user."""
    last = re.split(r" ?\. ?", raw)[-1]
    m = re.fullmatch(r'"#(\d+)"', last)
    return st.literals[int(m[1])] if m else last.lower()


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _actions(actions: str) -> list[str]:
    """ALTER TABLE actions, split on the commas outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in actions:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _top_level(text: str) -> str:
    """Text with parenthesised parts emptied, so CHECK (x IS NOT NULL) or TIMESTAMP(3) don't match."""
    while (emptied := re.sub(r"\([^()]*\)", " ", text)) != text:
        text = emptied
    return text


# --- rules ----------------------------------------------------------------------------------

_Issue = tuple[str, str, str]  # rule, message, safer


def _constraint_issue(table: str, what: str, lock: str, add: str, name: str = "<name>") -> _Issue:
    return (
        "constraint-without-not-valid",
        f"{what} on existing table {_q(table)} checks every row while holding {lock}; "
        "writes (or all queries) wait for the whole scan.",
        f"{add} NOT VALID; then, in a separate transaction (a later migration: a Prisma migration is one "
        f"transaction), ALTER TABLE {_q(table)} VALIDATE CONSTRAINT {name}; VALIDATE takes only SHARE UPDATE "
        "EXCLUSIVE, so reads and writes continue.",
    )


class _Linter:
    def __init__(self) -> None:
        # (table, constraint) -> (column, validated) for `CHECK (column IS NOT NULL)` constraints.
        # Kept across the migrations of one lint_migrations call: they are applied in order.
        self.not_null_checks: dict[tuple[str, str], tuple[str, bool]] = {}
        # Tables created by this migration or an earlier one of the same call (the same deploy): no
        # running app version uses them yet, so their locks block nobody. On an empty database that is
        # every table, and a whole history lints clean instead of one warning per migration.
        self.created: set[str] = set()

    def lint(self, sql: str, migration: str) -> list[Finding]:
        findings: list[Finding] = []
        created = self.created
        timeout = warned = False
        for st in split_statements(sql):
            timeout = _timeout_after(st, timeout)
            locks, issues = self._statement(st, created)
            if locks and not timeout and not warned:
                warned = True
                issues.insert(0, (
                    "missing-lock-timeout",
                    "This migration takes locks on existing tables without a lock_timeout: if a long query holds "
                    "a conflicting lock, the DDL waits in the lock queue and every query on the table queues "
                    "behind it, which is an outage.",
                    "Put SET lock_timeout = '500ms'; at the top of the migration and retry the deploy when it "
                    "times out.",
                ))
            findings += [
                Finding(rule, migration, st.line, st.display, message, safer, RULES[rule])
                for rule, message, safer in issues
            ]
        return findings

    def _statement(self, st: Statement, created: set[str]) -> tuple[bool, list[_Issue]]:
        """Whether the statement locks an existing table, and its issues."""
        s = st.normalized
        if m := _CREATE_TABLE.match(s):
            created.add(_name(st, m["table"]))
        # A foreign key takes SHARE ROW EXCLUSIVE on the referenced table, even from a new table.
        references_existing = any(_name(st, t) not in created for t in _REFERENCES.findall(s))
        if m := _CREATE_INDEX.match(s):
            table = _name(st, m["table"])
            if m["conc"] or table in created:
                return False, []
            unique = "UNIQUE " if m["unique"] else ""
            return True, [(
                "create-index-non-concurrently",
                f"CREATE {unique}INDEX without CONCURRENTLY holds a SHARE lock on {_q(table)} for the whole build: "
                "inserts, updates and deletes block until it is done.",
                f"CREATE {unique}INDEX CONCURRENTLY ... ON {_q(table)} (...); it cannot run in a transaction block, "
                "so put it alone in its own migration (prisma migrate deploy runs a file as one transaction); if "
                "it fails, DROP INDEX CONCURRENTLY the invalid index and retry.",
            )]
        if m := _ALTER_TABLE.match(s):
            table = _name(st, m["table"])
            if table in created:
                return references_existing, []
            return True, [issue for a in _actions(m["actions"]) for issue in self._action(st, table, a)]
        if m := _DROP_TABLE.match(s):
            existing = [t for t in (_name(st, raw) for raw in re.split(r" , ", m["tables"])) if t not in created]
            if not existing:
                return False, []
            names = ", ".join(_q(t) for t in existing)
            return True, [(
                "dropping-table",
                f"Dropping {names} deletes its data for good and breaks every running app instance (and the "
                "rollback target) that still reads or writes it.",
                "Contract phase: first release app code that no longer uses the table (remove it from the Prisma "
                "schema's queries), deploy it everywhere, take a backup, then drop it in a later release.",
            )]
        return references_existing or bool(_OTHER_LOCKING.match(s)), []

    def _action(self, st: Statement, table: str, action: str) -> list[_Issue]:
        t = _q(table)
        if m := _RENAME_TABLE.match(action):
            new = _q(_name(st, m["new"]))
            return [(
                "renaming-table",
                f"Renaming {t} to {new} breaks the running app version, which still queries {t}, from the commit "
                "until the new version is everywhere; a rollback breaks too.",
                f"Expand/contract: create {new}, keep both in sync with a trigger, backfill, move the app to {new}, "
                f"then drop {t} in a later release (or leave a view named {t} during the transition).",
            )]
        if m := _RENAME_COLUMN.match(action):
            old, new = _q(_name(st, m["old"])), _q(_name(st, m["new"]))
            return [(
                "renaming-column",
                f"Renaming {t}.{old} to {new} breaks the running app version, which still uses {old}, from the "
                "commit until the new version is everywhere; a rollback breaks too.",
                f"`release-console expand rename-column`: add {new}, sync both columns with a trigger, backfill, "
                f"move the app to {new}, then drop {old} and the trigger in a later release.",
            )]
        if m := _ADD_CONSTRAINT.match(action):
            return self._add_constraint(st, table, action, m)
        if m := _ADD_COLUMN.match(action):
            return _add_column(table, _q(_name(st, m["col"])), _top_level(m["definition"]))
        if m := _DROP_CONSTRAINT.match(action):
            self.not_null_checks.pop((table, _name(st, m["name"])), None)
            return []
        if m := _DROP_COLUMN.match(action):
            col = _q(_name(st, m["col"]))
            return [(
                "dropping-column",
                f"Dropping {t}.{col} deletes its data for good and breaks every running app instance (and the "
                "rollback target) that still reads or writes it.",
                f"Contract phase: first release app code that no longer reads or writes {col} (Prisma selects "
                "every column, so remove it from the schema), deploy it everywhere, take a backup, then drop it "
                "in a later release.",
            )]
        if m := _ALTER_TYPE.match(action):
            col = _q(_name(st, m["col"]))
            return [(
                "changing-column-type",
                f"Changing the type of {t}.{col} holds ACCESS EXCLUSIVE on {t} and, for most type changes, "
                "rewrites the whole table and its indexes: all reads and writes wait.",
                f"Expand/contract: add a new column with the new type, write both from the app (or a sync trigger), "
                f"backfill in batches, switch reads to the new column, then drop {col} in a later release.",
            )]
        if m := _SET_NOT_NULL.match(action):
            col = _name(st, m["col"])
            if any(t_ == table and c == col and ok for (t_, _), (c, ok) in self.not_null_checks.items()):
                return []  # a valid CHECK (col IS NOT NULL) lets PostgreSQL 12+ skip the scan
            qc, check = _q(col), _q(f"{table}_{col}_not_null")
            return [(
                "setting-not-null",
                f"SET NOT NULL on {t}.{qc} scans the whole table for NULLs while holding ACCESS EXCLUSIVE: all "
                f"reads and writes on {t} wait for the scan.",
                f"ALTER TABLE {t} ADD CONSTRAINT {check} CHECK ({qc} IS NOT NULL) NOT VALID; then, in a later "
                f"migration, ALTER TABLE {t} VALIDATE CONSTRAINT {check} (reads and writes continue), ALTER COLUMN "
                f"{qc} SET NOT NULL (PostgreSQL 12+ uses the valid check: no scan) and DROP CONSTRAINT {check}.",
            )]
        if m := _VALIDATE.match(action):
            key = (table, _name(st, m["name"]))
            if key in self.not_null_checks:
                self.not_null_checks[key] = (self.not_null_checks[key][0], True)
        return []

    def _add_constraint(self, st: Statement, table: str, action: str, m: re.Match[str]) -> list[_Issue]:
        not_valid = bool(_NOT_VALID.search(action))
        if m["kind"] == "CHECK" and (check := _NOT_NULL_CHECK.search(action)):
            col = _name(st, check["col"])
            # PostgreSQL names an unnamed check <table>_<column>_check.
            name = _name(st, m["name"]) if m["name"] else f"{table}_{col}_check"
            self.not_null_checks[(table, name)] = (col, not not_valid)
        if not_valid:
            return []
        t = _q(table)
        name = _q(_name(st, m["name"])) if m["name"] else "<name>"
        if m["kind"] == "CHECK":
            return [_constraint_issue(table, "Adding a CHECK constraint", f"ACCESS EXCLUSIVE on {t}",
                                      f"ALTER TABLE {t} ADD CONSTRAINT {name} CHECK (...)", name)]
        ref = _REFERENCES.search(action)
        target = _q(_name(st, ref["table"])) if ref else "the referenced table"
        return [_constraint_issue(table, "Adding a FOREIGN KEY", f"SHARE ROW EXCLUSIVE on {t} and {target}",
                                  f"ALTER TABLE {t} ADD CONSTRAINT {name} FOREIGN KEY (...) REFERENCES {target} (...)",
                                  name)]


def _add_column(table: str, col: str, definition: str) -> list[_Issue]:
    t = _q(table)
    issues: list[_Issue] = []
    if re.search(r"\bNOT NULL\b", definition) and not re.search(r"\b(?:DEFAULT|GENERATED)\b", definition):
        issues.append((
            "adding-not-null-without-default",
            f"Adding NOT NULL column {t}.{col} without a DEFAULT fails on any non-empty table (\"column contains "
            "null values\"), and the running app version does not write it.",
            f"Expand/contract: ADD COLUMN {col} as nullable; deploy app code that writes it; backfill existing rows "
            f"in batches; ADD CONSTRAINT ... CHECK ({col} IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT; ALTER "
            f"COLUMN {col} SET NOT NULL; drop the CHECK. `release-console expand add-column` runs these steps.",
        ))
    if re.search(r"\b(?:REFERENCES|CHECK)\b", definition):
        issues.append(_constraint_issue(
            table, f"Adding column {col} with an inline REFERENCES/CHECK", f"ACCESS EXCLUSIVE on {t}",
            f"ADD COLUMN {col} without the constraint, then ALTER TABLE {t} ADD CONSTRAINT <name> ..."))
    return issues


def _timeout_after(st: Statement, timeout: bool) -> bool:
    """Whether a lock_timeout is in force after this statement."""
    value: str | None = None
    if m := _SET_TIMEOUT.match(st.normalized):
        value = m["value"].strip()
        if quoted := re.fullmatch(r"'#(\d+)'", value):
            value = st.literals[int(quoted[1])]
    elif (m := _SET_CONFIG.match(st.normalized)) and st.literals[int(m["name"])].lower() == "lock_timeout":
        value = st.literals[int(m["value"])]
    elif _RESET_TIMEOUT.match(st.normalized):
        return False
    if value is None:
        return timeout
    # 0 (any unit) and DEFAULT mean no timeout.
    return not re.fullmatch(r"0+(?:\.0*)? ?[a-z]*|default", value.strip().lower())


def created_tables(scripts: Iterable[str]) -> set[str]:
    """The tables the scripts create (CREATE TABLE), by their names in the catalog ("User", ingredient)."""
    return {_name(st, m["table"]) for sql in scripts for st in split_statements(sql)
            if (m := _CREATE_TABLE.match(st.normalized))}


def lint_sql(sql: str, migration: str = "") -> list[Finding]:
    """Findings for one migration's SQL, in statement order."""
    return _Linter().lint(sql, migration)


def lint_migrations(migrations: Iterable[tuple[str, str]]) -> list[Finding]:
    """Findings for (name, sql) migrations applied in this order."""
    linter = _Linter()
    return [finding for name, sql in migrations for finding in linter.lint(sql, name)]
