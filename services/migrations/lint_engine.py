"""The lint's engine: the rules over libpg_query's parse trees, statement by statement, with what a
migration (one transaction) and a batch of migrations (applied in order) carry between them."""

from __future__ import annotations

from services.migrations import lint_rules as r
from services.migrations.lint_parse import Parsed, Tree, parse

_LOCKING = frozenset({"TruncateStmt", "LockStmt", "ClusterStmt", "CreateTrigStmt"})


class Linter:
    def __init__(self) -> None:
        # (table, constraint) -> (column, validated) for `CHECK (column IS NOT NULL)` constraints.
        # Kept across the migrations of one lint_migrations call: they are applied in order.
        self.not_null_checks: dict[tuple[str, str], tuple[str, bool]] = {}
        # Tables created by this migration or an earlier one of the same call (the same deploy): no
        # running app version uses them yet, so their locks block nobody. On an empty database that is
        # every table, and a whole history lints clean instead of one warning per migration.
        self.created: set[str] = set()
        # Per migration (one transaction): (table, constraint) -> line of the ADD ... NOT VALID, for a
        # VALIDATE in the same transaction.
        self.not_valid: dict[tuple[str, str], int] = {}

    def lint(self, sql: str) -> list[tuple[Parsed, r.Issue, str]]:
        """Each issue of one migration, with its statement and the table the statement locks ("" for
        an issue of the whole migration, or a statement on no table), in statement order."""
        found: list[tuple[Parsed, r.Issue, str]] = []
        self.not_valid = {}
        statements = parse(sql)
        timeout = warned = False
        for st in statements:
            timeout = _timeout_after(st.node or {}, timeout)
            locks, issues = self._statement(st)
            if len(statements) > 1 and (what := _concurrently(st.node or {})):
                issues.append(r.concurrently_in_transaction(what))
            table = _target(st.node or {})
            found += [(st, issue, table) for issue in issues]
            if locks and not timeout and not warned:
                warned = True
                found.insert(len(found) - len(issues), (st, r.MISSING_LOCK_TIMEOUT, ""))
        return found

    def _statement(self, st: Parsed) -> tuple[bool, list[r.Issue]]:
        """Whether the statement locks an existing table, and its issues."""
        if st.node is None:
            return False, [r.unparseable(st.error)]
        kind, node = next(iter(st.node.items()))
        if kind == "CreateStmt":
            self.created.add(r.rel(node.get("relation")))
        elif kind == "CreateTableAsStmt":
            self.created.add(r.rel(node.get("into", {}).get("rel")))
        # A foreign key takes SHARE ROW EXCLUSIVE on the referenced table, even from a new table.
        references_existing = any(t not in self.created for t in r.references(st.node))
        if kind == "IndexStmt":
            table = r.rel(node.get("relation"))
            if node.get("concurrent") or table in self.created:
                return False, []
            return True, [r.create_index(table, bool(node.get("unique")))]
        if kind == "AlterTableStmt":
            table = r.rel(node.get("relation"))
            if node.get("objtype") != "OBJECT_TABLE" or table in self.created:
                return node.get("objtype") == "OBJECT_INDEX" or references_existing, []
            cmds = r.nodes(node.get("cmds"), "AlterTableCmd")
            return True, [issue for cmd in cmds for issue in self._command(st, table, cmd)]
        if kind == "RenameStmt":
            return self._rename(node)
        if kind == "DropStmt":
            return self._drop(node)
        if kind in _LOCKING:
            return True, []
        if kind == "ReindexStmt":
            return not r.option(node.get("params"), "concurrently"), []
        if kind == "VacuumStmt":
            return r.option(node.get("options"), "full"), []
        return references_existing, []

    def _command(self, st: Parsed, table: str, cmd: Tree) -> list[r.Issue]:
        kind, name, definition = cmd.get("subtype"), str(cmd.get("name", "")), cmd.get("def", {})
        if kind == "AT_AddColumn" and "ColumnDef" in definition:
            return _add_column(table, definition["ColumnDef"])
        if kind == "AT_AddConstraint" and "Constraint" in definition:
            return self._add_constraint(st, table, definition["Constraint"])
        if kind == "AT_DropConstraint":
            self.not_null_checks.pop((table, name), None)
            self.not_valid.pop((table, name), None)
        elif kind == "AT_DropColumn":
            return [r.dropping_column(table, name)]
        elif kind == "AT_AlterColumnType":
            return [r.changing_column_type(table, name)]
        elif kind == "AT_SetNotNull":
            if any(t == table and c == name and ok for (t, _), (c, ok) in self.not_null_checks.items()):
                return []  # a valid CHECK (col IS NOT NULL) lets PostgreSQL 12+ skip the scan
            return [r.setting_not_null(table, name)]
        elif kind == "AT_ValidateConstraint":
            key = (table, name)
            if key in self.not_null_checks:
                self.not_null_checks[key] = (self.not_null_checks[key][0], True)
            if key in self.not_valid:
                return [r.validate_in_same_transaction(table, name, self.not_valid[key])]
        return []

    def _add_constraint(self, st: Parsed, table: str, c: Tree) -> list[r.Issue]:
        kind, name = c["contype"], r.constraint_name(table, c)
        if kind in r.INDEX_KINDS:
            return [] if c.get("indexname") else [r.constraint_builds_index(table, r.INDEX_KINDS[kind], r.q(name))]
        if kind not in ("CONSTR_CHECK", "CONSTR_FOREIGN"):
            return []
        not_valid = bool(c.get("skip_validation"))
        if kind == "CONSTR_CHECK" and (col := r.not_null_column(c)):
            self.not_null_checks[(table, name)] = (col, not not_valid)
        if not_valid:
            self.not_valid[(table, name)] = st.line
            return []
        t, n = r.q(table), r.q(c["conname"]) if c.get("conname") else "<name>"
        if kind == "CONSTR_CHECK":
            return [r.constraint_issue(table, "Adding a CHECK constraint", f"ACCESS EXCLUSIVE on {t}",
                                       f"ALTER TABLE {t} ADD CONSTRAINT {n} CHECK (...)", n)]
        target = r.q(r.rel(c["pktable"])) if c.get("pktable") else "the referenced table"
        return [r.constraint_issue(table, "Adding a FOREIGN KEY", f"SHARE ROW EXCLUSIVE on {t} and {target}",
                                   f"ALTER TABLE {t} ADD CONSTRAINT {n} FOREIGN KEY (...) REFERENCES {target} (...)",
                                   n)]

    def _rename(self, node: Tree) -> tuple[bool, list[r.Issue]]:
        table, new, kind = r.rel(node.get("relation")), str(node.get("newname", "")), node.get("renameType")
        on_table = kind == "OBJECT_TABLE" or node.get("relationType") == "OBJECT_TABLE"
        if table in self.created:
            if kind == "OBJECT_TABLE":
                self.created.add(new)
            return False, []
        if kind == "OBJECT_TABLE":
            return True, [r.renaming_table(table, new)]
        if kind == "OBJECT_COLUMN" and on_table:
            return True, [r.renaming_column(table, str(node.get("subname", "")), new)]
        return on_table, []

    def _drop(self, node: Tree) -> tuple[bool, list[r.Issue]]:
        kind = node.get("removeType")
        if kind == "OBJECT_TABLE":
            names = [r.last_name(o.get("items")) for o in r.nodes(node.get("objects"), "List")]
            existing = [t for t in names if t not in self.created]
            return (True, [r.dropping_table(existing)]) if existing else (False, [])
        if kind == "OBJECT_INDEX":
            return not node.get("concurrent"), []
        return kind in ("OBJECT_TRIGGER", "OBJECT_VIEW", "OBJECT_MATVIEW"), []


def _add_column(table: str, column: Tree) -> list[r.Issue]:
    col = r.q(str(column.get("colname", "")))
    constraints = r.nodes(column.get("constraints"), "Constraint")
    kinds = {c["contype"] for c in constraints}
    issues: list[r.Issue] = []
    type_name = r.last_name(column.get("typeName", {}).get("names")).lower()
    if rewrite := _rewrite(table, col, type_name, constraints):
        issues.append(rewrite)
    elif "CONSTR_NOTNULL" in kinds and not kinds & {"CONSTR_DEFAULT", "CONSTR_IDENTITY", "CONSTR_GENERATED"}:
        issues.append(r.not_null_without_default(table, col))
    if kinds & {"CONSTR_FOREIGN", "CONSTR_CHECK"}:
        t = r.q(table)
        issues.append(r.constraint_issue(
            table, f"Adding column {col} with an inline REFERENCES/CHECK", f"ACCESS EXCLUSIVE on {t}",
            f"ADD COLUMN {col} without the constraint, then ALTER TABLE {t} ADD CONSTRAINT <name> ..."))
    issues += [r.constraint_builds_index(table, r.INDEX_KINDS[c["contype"]], r.q(r.constraint_name(table, c)))
               for c in constraints if c["contype"] in r.INDEX_KINDS]
    return issues


def _rewrite(table: str, col: str, type_name: str, constraints: list[Tree]) -> r.Issue | None:
    """An added column whose value differs per row: PostgreSQL rewrites the table to store it."""
    backfill = (f"ADD COLUMN {col} without it (a constant DEFAULT is fine: no rewrite), ALTER COLUMN {col} SET "
                f"DEFAULT ... for new rows, backfill existing rows in batches (`release-console expand add-column`), "
                "then SET NOT NULL through a validated CHECK.")
    if type_name in r.SERIAL:
        return r.rewrite(table, col, f"type {type_name.upper()} (a nextval() default)",
                         f"ADD COLUMN {col} INTEGER (nullable), CREATE SEQUENCE, ALTER COLUMN {col} SET DEFAULT "
                         f"nextval(...), backfill existing rows in batches, then SET NOT NULL through a validated "
                         "CHECK.")
    for c in constraints:
        if c["contype"] == "CONSTR_IDENTITY":
            return r.rewrite(table, col, "GENERATED ... AS IDENTITY", backfill)
        if c["contype"] == "CONSTR_GENERATED" and c.get("generated_kind") == "s":
            return r.rewrite(table, col, "GENERATED ALWAYS AS (...) STORED",
                             f"ADD COLUMN {col} as a plain nullable column, keep it up to date from the app or a "
                             f"trigger, backfill in batches; or, on PostgreSQL 18, GENERATED ALWAYS AS (...) VIRTUAL "
                             "(computed on read: no rewrite).")
        if c["contype"] == "CONSTR_DEFAULT" and (call := r.volatile_call(c.get("raw_expr"))):
            return r.rewrite(table, col, f"the volatile DEFAULT {call}", backfill)
    return None


def _target(stmt: Tree) -> str:
    """The table a statement locks, as the catalog names it: an ALTER, CREATE INDEX, RENAME or the first
    table of a DROP TABLE; "" for any other statement."""
    if not stmt:
        return ""
    kind, node = next(iter(stmt.items()))
    if kind in ("IndexStmt", "AlterTableStmt", "RenameStmt"):
        return r.rel(node.get("relation"))
    if kind == "DropStmt" and node.get("removeType") == "OBJECT_TABLE":
        return next((r.last_name(o.get("items")) for o in r.nodes(node.get("objects"), "List")), "")
    return ""


def _concurrently(stmt: Tree) -> str:
    """The statement's name if it must run outside a transaction block (CONCURRENTLY), else ""."""
    if stmt.get("IndexStmt", {}).get("concurrent"):
        return "CREATE INDEX CONCURRENTLY"
    if stmt.get("DropStmt", {}).get("concurrent"):
        return "DROP INDEX CONCURRENTLY"
    if "ReindexStmt" in stmt and r.option(stmt["ReindexStmt"].get("params"), "concurrently"):
        return "REINDEX CONCURRENTLY"
    cmds = r.nodes(stmt.get("AlterTableStmt", {}).get("cmds"), "AlterTableCmd")
    if any(cmd.get("def", {}).get("PartitionCmd", {}).get("concurrent") for cmd in cmds):
        return "DETACH PARTITION CONCURRENTLY"
    return ""


def _timeout_after(stmt: Tree, timeout: bool) -> bool:
    """Whether a lock_timeout is in force after this statement."""
    value: Tree | None = None
    if "VariableSetStmt" in stmt:
        node = stmt["VariableSetStmt"]
        if node.get("kind") == "VAR_RESET_ALL":
            return False
        if str(node.get("name", "")).lower() != "lock_timeout":
            return timeout
        if node.get("kind") != "VAR_SET_VALUE" or not node.get("args"):
            return False  # SET ... TO DEFAULT, RESET lock_timeout
        value = node["args"][0]
    for target in r.nodes(stmt.get("SelectStmt", {}).get("targetList"), "ResTarget"):
        call = target.get("val", {}).get("FuncCall", {})
        args = call.get("args", [])
        if (r.last_name(call.get("funcname")).lower() == "set_config" and len(args) > 1
                and r.constant(args[0]).lower() == "lock_timeout"):
            value = args[1]
    if value is None:
        return timeout
    # 0 (any unit) means no timeout.
    text = r.constant(value).strip().lower()
    return not (text[:1].isdigit() and float("".join(ch for ch in text if ch.isdigit() or ch == ".") or 0) == 0)
