"""Migration SQL parsed by PostgreSQL's own grammar (pglast wraps libpg_query), once per file text.

A file that parses is split where the parser says, in C. A file with a statement the parser
rejects is split by services.core.sql_text (comments, literals, dollar quotes, BEGIN ATOMIC) and
parsed statement by statement, so the rejected statement is reported and the others still linted.

The trees are libpg_query's JSON, read as dicts: a node is {"NodeType": {field: value}}, fields at
their default are left out. pglast's own node classes (pglast.parse_sql) validate every field as
they are built: 9x slower, 0.38 s for a 160-migration history, more than the lint's whole budget.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pglast.parser import ParseError, parse_sql_json

from services.core.sql_text import STATEMENT_WIDTH, split_statements

CACHE_SIZE = 1024  # files: a history of a few hundred migrations fits a few times over

Tree = dict[str, Any]  # a node of libpg_query's JSON parse tree


@dataclass(frozen=True)
class Parsed:
    line: int  # 1-based line of the statement's first token
    source: str  # its exact source, without the `;`
    node: Tree | None  # the statement's tree, {"AlterTableStmt": {...}}; None when the parser rejects it
    error: str = ""  # the parser's complaint, with the line it points at

    @cached_property
    def display(self) -> str:
        """The source without comments, whitespace-collapsed and cut, as Finding.statement shows it."""
        if "--" not in self.source and "/*" not in self.source:
            return _cut(" ".join(self.source.split()))
        statements = split_statements(self.source)
        return statements[0].display if statements else ""


_cache: OrderedDict[str, tuple[Parsed, ...]] = OrderedDict()
_cache_lock = threading.Lock()


def parse(sql: str) -> tuple[Parsed, ...]:
    """The statements of one migration file, parsed; cached by the sha256 of its text."""
    key = hashlib.sha256(sql.encode()).hexdigest()
    with _cache_lock:
        if (hit := _cache.get(key)) is not None:
            _cache.move_to_end(key)
            return hit
    parsed = _parse(sql)
    with _cache_lock:
        _cache[key] = parsed
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return parsed


def _parse(sql: str) -> tuple[Parsed, ...]:
    try:
        return _statements(sql, 1)
    except ParseError:
        return tuple(p for st in split_statements(sql) for p in _parse_alone(st.text, st.line))


def _parse_alone(text: str, line: int) -> tuple[Parsed, ...]:
    try:
        return _statements(text, line)
    except ParseError as err:
        message = str(err.args[0]) if err.args else str(err)
        # The character it points at; none for "syntax error at end of input".
        at = err.args[1] if len(err.args) > 1 and isinstance(err.args[1], int) else len(text)
        return (Parsed(line, text, None, f"{message} (line {line + text.count(chr(10), 0, at)})"),)


def _statements(sql: str, first_line: int) -> tuple[Parsed, ...]:
    """The statements of sql, its first line numbered first_line. Their locations count UTF-8 bytes;
    libpg_query (PostgreSQL 18's grammar) puts a statement's location on its first token."""
    data = sql.encode()
    parsed = []
    for raw in json.loads(parse_sql_json(sql)).get("stmts", ()):
        start = raw.get("stmt_location", 0)
        end = start + raw["stmt_len"] if raw.get("stmt_len") else len(data)
        parsed.append(Parsed(first_line + data.count(b"\n", 0, start), data[start:end].decode().rstrip(),
                             raw["stmt"]))
    return tuple(parsed)


def _cut(text: str) -> str:
    return text if len(text) <= STATEMENT_WIDTH else text[: STATEMENT_WIDTH - 1] + "…"
