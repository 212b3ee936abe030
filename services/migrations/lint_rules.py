"""What each lint finding says: the lock or rewrite that hurts and the safer steps, plus the
small readings of libpg_query's JSON parse tree (lint_parse) that the rules share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from services.migrations.lint_parse import Tree

Issue = tuple[str, str, str]  # rule, message, safer

# Built-in functions that are not volatile and that migrations use in defaults. Any other
# function counts as volatile: CREATE FUNCTION's default volatility is VOLATILE.
NOT_VOLATILE = frozenset({
    "now", "transaction_timestamp", "statement_timestamp", "current_setting", "lower", "upper", "btrim",
    "concat", "to_jsonb", "to_json", "jsonb_build_object", "json_build_object", "jsonb_build_array",
    "json_build_array", "array_fill", "make_date", "make_interval", "date_trunc", "to_timestamp", "to_char",
    "md5", "encode", "decode", "substr", "replace", "length",
})
SERIAL = frozenset({"smallserial", "serial", "bigserial", "serial2", "serial4", "serial8"})
INDEX_KINDS = {"CONSTR_PRIMARY": "PRIMARY KEY", "CONSTR_UNIQUE": "UNIQUE", "CONSTR_EXCLUSION": "EXCLUDE"}


# --- reading the tree -----------------------------------------------------------------------


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def rel(relation: Tree | None) -> str:
    """A RangeVar's unqualified name, as the parser folded it ("User" stays User, public.user is user)."""
    return str(relation.get("relname", "")) if relation else ""


def last_name(names: list[Tree] | None) -> str:
    """The last part of a dotted name list: (public, Legacy) -> Legacy."""
    return str(names[-1].get("String", {}).get("sval", "")) if names else ""


def nodes(items: list[Tree] | None, kind: str) -> list[Tree]:
    """The fields of the items of that kind: nodes(cmds, "AlterTableCmd")."""
    return [item[kind] for item in items or () if kind in item]


def walk(node: Any) -> Iterator[tuple[str, Tree]]:
    """(kind, fields) of every node under node (an expression: small), node first."""
    if isinstance(node, list):
        for item in node:
            yield from walk(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key[:1].isupper() and isinstance(value, dict):
                yield key, value
            yield from walk(value)


def constraints(stmt: Tree) -> Iterator[Tree]:
    """The constraints a CREATE TABLE or ALTER TABLE adds, on its columns or on the table."""
    elements = [*stmt.get("CreateStmt", {}).get("tableElts", ()),
                *(cmd["def"] for cmd in nodes(stmt.get("AlterTableStmt", {}).get("cmds"), "AlterTableCmd")
                  if "def" in cmd)]
    for element in elements:
        if "Constraint" in element:
            yield element["Constraint"]
        yield from nodes(element.get("ColumnDef", {}).get("constraints"), "Constraint")


def references(stmt: Tree) -> list[str]:
    """Tables a statement's foreign keys point to: each takes SHARE ROW EXCLUSIVE on its table."""
    return [rel(c.get("pktable")) for c in constraints(stmt) if c["contype"] == "CONSTR_FOREIGN"]


def column_refs(expr: Tree | None) -> list[str]:
    return [last_name(fields.get("fields")) for kind, fields in walk(expr) if kind == "ColumnRef"]


def not_null_column(check: Tree) -> str | None:
    """The column of a `CHECK (column IS NOT NULL)`, the check that lets SET NOT NULL skip its scan."""
    test = check.get("raw_expr", {}).get("NullTest", {})
    if test.get("nulltesttype") == "IS_NOT_NULL" and "ColumnRef" in test.get("arg", {}):
        return last_name(test["arg"]["ColumnRef"].get("fields"))
    return None


def constraint_name(table: str, c: Tree) -> str:
    """The constraint's name, or the one PostgreSQL gives an unnamed one (<table>_<column>_check or _fkey)."""
    if c.get("conname"):
        return str(c["conname"])
    if c["contype"] == "CONSTR_FOREIGN":
        return "_".join([table, *(last_name([a]) for a in c.get("fk_attrs", ())), "fkey"])
    return "_".join([table, *column_refs(c.get("raw_expr"))[:1], "check"])


def volatile_call(expr: Tree | None) -> str | None:
    """The first volatile (or unknown) function an expression calls, as `name()`."""
    for kind, fields in walk(expr):
        if kind == "FuncCall" and (name := last_name(fields.get("funcname")).lower()) not in NOT_VOLATILE:
            return f"{name}()"
    return None


def option(options: list[Tree] | None, name: str) -> bool:
    """Whether a DefElem list (VACUUM (FULL), REINDEX (CONCURRENTLY)) carries `name`."""
    return any(o.get("defname") == name for o in nodes(options, "DefElem"))


def constant(node: Tree | None) -> str:
    """A constant's text: '500ms' -> 500ms, 1000 -> 1000 (libpg_query leaves out a 0)."""
    value = node.get("A_Const", {}) if node else {}
    if "sval" in value:
        return str(value["sval"].get("sval", ""))
    if "ival" in value:
        return str(value["ival"].get("ival", 0))
    if "fval" in value:
        return str(value["fval"].get("fval", ""))
    return ""


# --- what the findings say ------------------------------------------------------------------

MISSING_LOCK_TIMEOUT: Issue = (
    "missing-lock-timeout",
    "This migration takes locks on existing tables without a lock_timeout: if a long query holds "
    "a conflicting lock, the DDL waits in the lock queue and every query on the table queues "
    "behind it, which is an outage.",
    "Put SET lock_timeout = '500ms'; at the top of the migration and retry the deploy when it times out.",
)


def constraint_issue(table: str, what: str, lock: str, add: str, name: str = "<name>") -> Issue:
    return (
        "constraint-without-not-valid",
        f"{what} on existing table {q(table)} checks every row while holding {lock}; "
        "writes (or all queries) wait for the whole scan.",
        f"{add} NOT VALID; then, in a separate transaction (a later migration: a Prisma migration is one "
        f"transaction), ALTER TABLE {q(table)} VALIDATE CONSTRAINT {name}; VALIDATE takes only SHARE UPDATE "
        "EXCLUSIVE, so reads and writes continue.",
    )


def validate_in_same_transaction(table: str, name: str, added_line: int) -> Issue:
    t, n = q(table), q(name)
    return (
        "constraint-without-not-valid",
        f"VALIDATE CONSTRAINT {n} runs in the same migration as the ADD ... NOT VALID on line {added_line}: a "
        f"Prisma migration is one transaction, so the ADD's lock on {t} is held through the whole validation "
        "scan, as if NOT VALID were not there.",
        f"Move ALTER TABLE {t} VALIDATE CONSTRAINT {n}; to a later migration: on its own it takes only SHARE "
        "UPDATE EXCLUSIVE, so reads and writes continue.",
    )


def concurrently_in_transaction(what: str) -> Issue:
    return (
        "concurrently-in-transaction",
        f"{what} cannot run inside a transaction block, and prisma migrate deploy runs a migration file with "
        "more than one statement as one transaction: the deploy fails at this statement.",
        f"Put the {what} statement alone in its own migration file (no other statement, not even SET "
        "lock_timeout); if it fails, DROP INDEX CONCURRENTLY the invalid index and retry.",
    )


def create_index(table: str, unique: bool) -> Issue:
    u = "UNIQUE " if unique else ""
    return (
        "create-index-non-concurrently",
        f"CREATE {u}INDEX without CONCURRENTLY holds a SHARE lock on {q(table)} for the whole build: "
        "inserts, updates and deletes block until it is done.",
        f"CREATE {u}INDEX CONCURRENTLY ... ON {q(table)} (...); it cannot run in a transaction block, "
        "so put it alone in its own migration (prisma migrate deploy runs a file as one transaction); if "
        "it fails, DROP INDEX CONCURRENTLY the invalid index and retry.",
    )


def constraint_builds_index(table: str, kind: str, name: str) -> Issue:
    t = q(table)
    if kind == "EXCLUDE":
        safer = (f"There is no concurrent way to add an exclusion constraint: add it when {t} is created, or in a "
                 "maintenance window with the app stopped; or enforce the rule in the app until then.")
    else:
        pk = (" A PRIMARY KEY also needs its columns NOT NULL: make them so first, through a validated CHECK "
              "(see setting-not-null)." if kind == "PRIMARY KEY" else "")
        safer = (f"CREATE UNIQUE INDEX CONCURRENTLY {name}_idx ON {t} (...), alone in its own migration; then, in a "
                 f"later one, ALTER TABLE {t} ADD CONSTRAINT {name} {kind} USING INDEX {name}_idx (a brief lock, "
                 f"no build).{pk}")
    return (
        "constraint-builds-index",
        f"Adding a {kind} constraint to {t} builds its index while holding ACCESS EXCLUSIVE on {t}: all reads "
        "and writes wait for the whole build.",
        safer,
    )


def rewrite(table: str, col: str, what: str, safer: str) -> Issue:
    t = q(table)
    return (
        "adding-column-rewrites-table",
        f"Adding {t}.{col} with {what} rewrites the whole table, every existing row getting its own value, while "
        f"holding ACCESS EXCLUSIVE on {t}: all reads and writes wait for the rewrite.",
        safer,
    )


def not_null_without_default(table: str, col: str) -> Issue:
    return (
        "adding-not-null-without-default",
        f"Adding NOT NULL column {q(table)}.{col} without a DEFAULT fails on any non-empty table (\"column "
        "contains null values\"), and the running app version does not write it.",
        f"Expand/contract: ADD COLUMN {col} as nullable; deploy app code that writes it; backfill existing rows "
        f"in batches; ADD CONSTRAINT ... CHECK ({col} IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT; ALTER "
        f"COLUMN {col} SET NOT NULL; drop the CHECK. `release-console expand add-column` runs these steps.",
    )


def setting_not_null(table: str, col: str) -> Issue:
    t, qc, check = q(table), q(col), q(f"{table}_{col}_not_null")
    return (
        "setting-not-null",
        f"SET NOT NULL on {t}.{qc} scans the whole table for NULLs while holding ACCESS EXCLUSIVE: all "
        f"reads and writes on {t} wait for the scan.",
        f"ALTER TABLE {t} ADD CONSTRAINT {check} CHECK ({qc} IS NOT NULL) NOT VALID; then, in a later "
        f"migration, ALTER TABLE {t} VALIDATE CONSTRAINT {check} (reads and writes continue), ALTER COLUMN "
        f"{qc} SET NOT NULL (PostgreSQL 12+ uses the valid check: no scan) and DROP CONSTRAINT {check}.",
    )


def changing_column_type(table: str, col: str) -> Issue:
    t = q(table)
    return (
        "changing-column-type",
        f"Changing the type of {t}.{q(col)} holds ACCESS EXCLUSIVE on {t} and, for most type changes, "
        "rewrites the whole table and its indexes: all reads and writes wait.",
        f"Expand/contract: add a new column with the new type, write both from the app (or a sync trigger), "
        f"backfill in batches, switch reads to the new column, then drop {q(col)} in a later release.",
    )


def dropping_column(table: str, col: str) -> Issue:
    c = q(col)
    return (
        "dropping-column",
        f"Dropping {q(table)}.{c} deletes its data for good and breaks every running app instance (and the "
        "rollback target) that still reads or writes it.",
        f"Contract phase: first release app code that no longer reads or writes {c} (Prisma selects "
        "every column, so remove it from the schema), deploy it everywhere, take a backup, then drop it "
        "in a later release.",
    )


def dropping_table(tables: list[str]) -> Issue:
    return (
        "dropping-table",
        f"Dropping {', '.join(q(t) for t in tables)} deletes its data for good and breaks every running app "
        "instance (and the rollback target) that still reads or writes it.",
        "Contract phase: first release app code that no longer uses the table (remove it from the Prisma "
        "schema's queries), deploy it everywhere, take a backup, then drop it in a later release.",
    )


def renaming_table(table: str, new: str) -> Issue:
    t, n = q(table), q(new)
    return (
        "renaming-table",
        f"Renaming {t} to {n} breaks the running app version, which still queries {t}, from the commit "
        "until the new version is everywhere; a rollback breaks too.",
        f"Expand/contract: create {n}, keep both in sync with a trigger, backfill, move the app to {n}, "
        f"then drop {t} in a later release (or leave a view named {t} during the transition).",
    )


def renaming_column(table: str, old: str, new: str) -> Issue:
    o, n = q(old), q(new)
    return (
        "renaming-column",
        f"Renaming {q(table)}.{o} to {n} breaks the running app version, which still uses {o}, from the "
        "commit until the new version is everywhere; a rollback breaks too.",
        f"`release-console expand rename-column`: add {n}, sync both columns with a trigger, backfill, "
        f"move the app to {n}, then drop {o} and the trigger in a later release.",
    )


def unparseable(error: str) -> Issue:
    return (
        "unparseable-statement",
        f"PostgreSQL's parser rejects this statement ({error}), so the lint cannot check it; PostgreSQL "
        "will most likely reject it too and fail the deploy here.",
        "Fix the statement (psql on a scratch database shows the same error), or, if it is valid for your "
        "server, override with a reason after reading it yourself.",
    )
