"""The parameters both procedures take, checked before anything touches the database, and the
names of the objects they create (a NOT NULL check, a sync trigger and its function).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from services.core.actions import Param

PHASES = ("expand", "backfill", "contract", "abort-expand", "abort-backfill", "abort-contract")
# Base types, an optional (n) or (p,s), an optional time zone, an optional [] — or one quoted name
# (an enum). No serial: its nextval default would rewrite the table under an exclusive lock.
_TYPE = re.compile(
    r"(?:(?!(?:small|big)?serial)[a-z][a-z0-9_]*(?: (?:precision|varying))?(?:\(\d{1,4}(?:, ?\d{1,4})?\))?"
    r"(?: with(?:out)? time zone)?|\"[A-Za-z_][A-Za-z0-9_]{0,62}\")(?:\[\])?",
    re.IGNORECASE,
)
NAME_MAX = 63  # PostgreSQL truncates longer identifiers

# The parameters after each action's own (table, column, ...).
COMMON = (
    Param("phase", f"one of {', '.join(PHASES)}", "expand", required=True),
    Param("batch_size", "rows per backfill batch", "1000"),
    Param("lock_timeout_ms", "lock_timeout for each DDL; retried with backoff", "500"),
    Param("lock_retries", "tries per DDL or batch before giving up, naming the blocking session", "8"),
    Param("batch_delay_ms", "pause between backfill batches", "0"),
)


def valid_type(text: str) -> bool:
    """Whether a column type is one this tool will put into ADD COLUMN as it is."""
    return _TYPE.fullmatch(text) is not None


@dataclass(frozen=True)
class Params:
    table: str
    column: str
    phase: str
    batch_size: int
    lock_timeout_ms: int
    lock_retries: int
    batch_delay_ms: int
    type: str = ""
    backfill: str = ""
    new_column: str = ""


def parse(params: dict[str, Any], rename: bool) -> tuple[Params | None, list[str]]:
    """The checked parameters of an add (rename False) or a rename, or None and every problem found."""
    problems: list[str] = []

    def text(key: str, required: bool = True) -> str:
        value = str(params.get(key, "") or "").strip()
        if required and not value:
            problems.append(f"{key} is required")
        return value

    def number(key: str, default: int, low: int, high: int) -> int:
        raw = params.get(key, default)
        try:
            value = int(raw)
        except (TypeError, ValueError):
            problems.append(f"{key} must be a whole number, got {raw!r}")
            return default
        if not low <= value <= high:
            problems.append(f"{key} must be between {low} and {high}, got {value}")
        return value

    phase = text("phase")
    if phase and phase not in PHASES:
        problems.append(f"phase must be one of {', '.join(PHASES)}; got {phase!r}")
    table, column = text("table"), text("column")
    new_column = text("new_column", required=rename)
    kind = text("type", required=not rename and phase == "expand")
    if kind and not valid_type(kind):
        problems.append(f"type {kind!r} is not one this tool accepts: a plain type such as text, integer, "
                        "numeric(10,2), timestamp(3), double precision, a quoted enum name, or one of those "
                        "with [] (serial types would rewrite the table)")
    fill = text("backfill", required=not rename and phase == "backfill")
    if rename and new_column and new_column == column:
        problems.append("new_column must differ from column")
    for key, value in (("table", table), ("column", column), ("new_column", new_column)):
        if len(value) > NAME_MAX or "\x00" in value:
            problems.append(f"{key} is not a valid PostgreSQL name")
    settings = Params(
        table, column, phase,
        number("batch_size", 1000, 1, 100_000), number("lock_timeout_ms", 500, 10, 60_000),
        number("lock_retries", 8, 1, 100), number("batch_delay_ms", 0, 0, 60_000),
        kind, fill, new_column,
    )
    return (None if problems else settings), problems


def _name(*parts: str) -> str:
    """A derived object name; too long ones keep a hash so two changes never share a name."""
    name = "_".join(parts)
    if len(name) <= NAME_MAX:
        return name
    return name[: NAME_MAX - 9] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]


def not_null_check(table: str, column: str) -> str:
    return _name(table, column, "not_null")


def sync_names(table: str, old: str, new: str) -> tuple[str, str]:
    """The rename trigger's name (per table) and its function's (per schema)."""
    return _name("rc_sync", old, new), _name("rc_sync", table, old, new)
