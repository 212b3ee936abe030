"""The lint's engine: the rules over pglast's syntax trees, statement by statement, with what a
migration (one transaction) and a batch of migrations (applied in order) carry between them."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType, VariableSetKind

from services.migrations import lint_rules as r
from services.migrations.lint import RULES, Finding
from services.migrations.lint_parse import Parsed, parse

_INDEX_KINDS = {ConstrType.CONSTR_PRIMARY: "PRIMARY KEY", ConstrType.CONSTR_UNIQUE: "UNIQUE",
                ConstrType.CONSTR_EXCLUSION: "EXCLUDE"}
_LOCKING = (ast.TruncateStmt, ast.LockStmt, ast.ClusterStmt, ast.CreateTrigStmt)


class Linter:
    def __init__(self) -> None:
        # (table, constraint) -> (column, validated) for `CHECK (column IS NOT NULL)` constraints.
        # Kept across the migrations of one lint_migrations call: they are applied in order.
        self.not_null_checks: dict[tuple[str, str], tuple[str, bool]] = {}
        # Per migration: tables created in it (empty and unused, so safe) and (table, constraint)
        # -> line of the ADD ... NOT VALID, for a VALIDATE in the same transaction.
        self.created: set[str] = set()
        self.not_valid: dict[tuple[str, str], int] = {}

    def lint(self, sql: str, migration: str) -> list[Finding]:
        findings: list[Finding] = []
        self.created, self.not_valid = set(), {}
        statements = parse(sql)
        timeout = warned = False
        for st in statements:
            timeout = _timeout_after(st.node, timeout)
            locks, issues = self._statement(st)
            if len(statements) > 1 and (what := _concurrently(st.node)):
                issues.append(r.concurrently_in_transaction(what))
            if locks and not timeout and not warned:
                warned = True
                issues.insert(0, r.MISSING_LOCK_TIMEOUT)
            findings += [Finding(rule, migration, st.line, st.display, message, safer, RULES[rule])
                         for rule, message, safer in issues]
        return findings

    def _statement(self, st: Parsed) -> tuple[bool, list[r.Issue]]:
        """Whether the statement locks an existing table, and its issues."""
        node = st.node
        if node is None:
            return False, [r.unparseable(st.error)]
        if isinstance(node, ast.CreateStmt):
            self.created.add(r.rel(node.relation))
        elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
            self.created.add(r.rel(node.into.rel))
        # A foreign key takes SHARE ROW EXCLUSIVE on the referenced table, even from a new table.
        references_existing = any(t not in self.created for t in r.references(node))
        if isinstance(node, ast.IndexStmt):
            table = r.rel(node.relation)
            if node.concurrent or table in self.created:
                return False, []
            return True, [r.create_index(table, bool(node.unique))]
        if isinstance(node, ast.AlterTableStmt):
            table = r.rel(node.relation)
            if node.objtype != ObjectType.OBJECT_TABLE or table in self.created:
                return node.objtype == ObjectType.OBJECT_INDEX or references_existing, []
            return True, [i for cmd in node.cmds or () if isinstance(cmd, ast.AlterTableCmd)
                          for i in self._command(st, table, cmd)]
        if isinstance(node, ast.RenameStmt):
            return self._rename(node)
        if isinstance(node, ast.DropStmt):
            return self._drop(node)
        if isinstance(node, _LOCKING):
            return True, []
        if isinstance(node, ast.ReindexStmt):
            return not r.option(node.params, "concurrently"), []
        if isinstance(node, ast.VacuumStmt):
            return r.option(node.options, "full"), []
        return references_existing, []

    def _command(self, st: Parsed, table: str, cmd: ast.AlterTableCmd) -> list[r.Issue]:
        kind, name = cmd.subtype, cmd.name or ""
        if kind == AlterTableType.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
            return _add_column(table, cmd.def_)
        if kind == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
            return self._add_constraint(st, table, cmd.def_)
        if kind == AlterTableType.AT_DropConstraint:
            self.not_null_checks.pop((table, name), None)
            self.not_valid.pop((table, name), None)
        elif kind == AlterTableType.AT_DropColumn:
            return [r.dropping_column(table, name)]
        elif kind == AlterTableType.AT_AlterColumnType:
            return [r.changing_column_type(table, name)]
        elif kind == AlterTableType.AT_SetNotNull:
            if any(t == table and c == name and ok for (t, _), (c, ok) in self.not_null_checks.items()):
                return []  # a valid CHECK (col IS NOT NULL) lets PostgreSQL 12+ skip the scan
            return [r.setting_not_null(table, name)]
        elif kind == AlterTableType.AT_ValidateConstraint:
            key = (table, name)
            if key in self.not_null_checks:
                self.not_null_checks[key] = (self.not_null_checks[key][0], True)
            if key in self.not_valid:
                return [r.validate_in_same_transaction(table, name, self.not_valid[key])]
        return []

    def _add_constraint(self, st: Parsed, table: str, c: ast.Constraint) -> list[r.Issue]:
        name = r.constraint_name(table, c)
        if c.contype in _INDEX_KINDS:
            return [] if c.indexname else [r.constraint_builds_index(table, _INDEX_KINDS[c.contype], r.q(name))]
        if c.contype not in (ConstrType.CONSTR_CHECK, ConstrType.CONSTR_FOREIGN):
            return []
        if c.contype == ConstrType.CONSTR_CHECK and (col := r.not_null_column(c)):
            self.not_null_checks[(table, name)] = (col, not c.skip_validation)
        if c.skip_validation:
            self.not_valid[(table, name)] = st.line
            return []
        t, n = r.q(table), r.q(c.conname) if c.conname else "<name>"
        if c.contype == ConstrType.CONSTR_CHECK:
            return [r.constraint_issue(table, "Adding a CHECK constraint", f"ACCESS EXCLUSIVE on {t}",
                                       f"ALTER TABLE {t} ADD CONSTRAINT {n} CHECK (...)", n)]
        target = r.q(r.rel(c.pktable)) if c.pktable else "the referenced table"
        return [r.constraint_issue(table, "Adding a FOREIGN KEY", f"SHARE ROW EXCLUSIVE on {t} and {target}",
                                   f"ALTER TABLE {t} ADD CONSTRAINT {n} FOREIGN KEY (...) REFERENCES {target} (...)",
                                   n)]

    def _rename(self, node: ast.RenameStmt) -> tuple[bool, list[r.Issue]]:
        table, new = r.rel(node.relation), node.newname or ""
        if table in self.created:
            if node.renameType == ObjectType.OBJECT_TABLE:
                self.created.add(new)
            return False, []
        if node.renameType == ObjectType.OBJECT_TABLE:
            return True, [r.renaming_table(table, new)]
        if node.renameType == ObjectType.OBJECT_COLUMN and node.relationType == ObjectType.OBJECT_TABLE:
            return True, [r.renaming_column(table, node.subname or "", new)]
        return node.relationType == ObjectType.OBJECT_TABLE, []

    def _drop(self, node: ast.DropStmt) -> tuple[bool, list[r.Issue]]:
        names = [r.last_name(o) for o in node.objects or () if isinstance(o, tuple)]
        if node.removeType == ObjectType.OBJECT_TABLE:
            existing = [t for t in names if t not in self.created]
            return (True, [r.dropping_table(existing)]) if existing else (False, [])
        if node.removeType == ObjectType.OBJECT_INDEX:
            return not node.concurrent, []
        return node.removeType in (ObjectType.OBJECT_TRIGGER, ObjectType.OBJECT_VIEW, ObjectType.OBJECT_MATVIEW), []


def _add_column(table: str, column: ast.ColumnDef) -> list[r.Issue]:
    col = r.q(column.colname or "")
    constraints = [c for c in column.constraints or () if isinstance(c, ast.Constraint)]
    kinds = {c.contype for c in constraints}
    issues: list[r.Issue] = []
    type_name = r.last_name(column.typeName.names if column.typeName else None).lower()
    if rewrite := _rewrite(table, col, type_name, constraints):
        issues.append(rewrite)
    elif ConstrType.CONSTR_NOTNULL in kinds and not kinds & {
            ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED}:
        issues.append(r.not_null_without_default(table, col))
    if kinds & {ConstrType.CONSTR_FOREIGN, ConstrType.CONSTR_CHECK}:
        t = r.q(table)
        issues.append(r.constraint_issue(
            table, f"Adding column {col} with an inline REFERENCES/CHECK", f"ACCESS EXCLUSIVE on {t}",
            f"ADD COLUMN {col} without the constraint, then ALTER TABLE {t} ADD CONSTRAINT <name> ..."))
    issues += [r.constraint_builds_index(table, _INDEX_KINDS[c.contype], r.q(r.constraint_name(table, c)))
               for c in constraints if c.contype in _INDEX_KINDS]
    return issues


def _rewrite(table: str, col: str, type_name: str, constraints: list[ast.Constraint]) -> r.Issue | None:
    """An added column whose value differs per row: PostgreSQL rewrites the table to store it."""
    t = r.q(table)
    backfill = (f"ADD COLUMN {col} without it (a constant DEFAULT is fine: no rewrite), ALTER COLUMN {col} SET "
                f"DEFAULT ... for new rows, backfill existing rows in batches (`release-console expand add-column`), "
                "then SET NOT NULL through a validated CHECK.")
    if type_name in r.SERIAL:
        return r.rewrite(table, col, f"type {type_name.upper()} (a nextval() default)",
                         f"ADD COLUMN {col} INTEGER (nullable), CREATE SEQUENCE, ALTER COLUMN {col} SET DEFAULT "
                         f"nextval(...), backfill existing rows in batches, then SET NOT NULL through a validated "
                         "CHECK.")
    for c in constraints:
        if c.contype == ConstrType.CONSTR_IDENTITY:
            return r.rewrite(table, col, "GENERATED ... AS IDENTITY", backfill)
        if c.contype == ConstrType.CONSTR_GENERATED and c.generated_kind == "s":
            return r.rewrite(table, col, "GENERATED ALWAYS AS (...) STORED",
                             f"ADD COLUMN {col} as a plain nullable column, keep it up to date from the app or a "
                             f"trigger, backfill in batches; or, on PostgreSQL 18, GENERATED ALWAYS AS (...) VIRTUAL "
                             f"(computed on read: no rewrite). {t} keeps serving meanwhile.")
        if c.contype == ConstrType.CONSTR_DEFAULT and (call := r.volatile_call(c.raw_expr)):
            return r.rewrite(table, col, f"the volatile DEFAULT {call}", backfill)
    return None


def _concurrently(node: ast.Node | None) -> str:
    """The statement's name if it must run outside a transaction block (CONCURRENTLY), else ""."""
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(node, ast.DropStmt) and node.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if isinstance(node, ast.ReindexStmt) and r.option(node.params, "concurrently"):
        return "REINDEX CONCURRENTLY"
    if isinstance(node, ast.AlterTableStmt) and any(
            isinstance(cmd, ast.AlterTableCmd) and isinstance(cmd.def_, ast.PartitionCmd) and cmd.def_.concurrent
            for cmd in node.cmds or ()):
        return "DETACH PARTITION CONCURRENTLY"
    return ""


def _timeout_after(node: ast.Node | None, timeout: bool) -> bool:
    """Whether a lock_timeout is in force after this statement."""
    value: ast.Node | None = None
    if isinstance(node, ast.VariableSetStmt):
        if node.kind == VariableSetKind.VAR_RESET_ALL or (node.name or "").lower() != "lock_timeout":
            return False if node.kind == VariableSetKind.VAR_RESET_ALL else timeout
        if node.kind != VariableSetKind.VAR_SET_VALUE or not node.args:
            return False  # SET ... TO DEFAULT, RESET lock_timeout
        value = node.args[0]
    elif isinstance(node, ast.SelectStmt):
        for target in node.targetList or ():
            call = target.val if isinstance(target, ast.ResTarget) else None
            if (isinstance(call, ast.FuncCall) and r.last_name(call.funcname).lower() == "set_config"
                    and call.args and len(call.args) > 1 and _constant(call.args[0]).lower() == "lock_timeout"):
                value = call.args[1]
    if value is None:
        return timeout
    # 0 (any unit) means no timeout.
    text = _constant(value).strip().lower()
    return not (text[:1].isdigit() and float("".join(ch for ch in text if ch.isdigit() or ch == ".") or 0) == 0)


def _constant(node: ast.Node | None) -> str:
    """A constant's text: '500ms' -> 500ms, 1000 -> 1000."""
    value = node.val if isinstance(node, ast.A_Const) else None
    if isinstance(value, ast.String):
        return value.sval or ""
    if isinstance(value, ast.Integer):
        return str(value.ival)
    if isinstance(value, ast.Float):
        return value.fval or ""
    return ""
