"""Migration SQL parsed by PostgreSQL's own grammar (pglast wraps libpg_query), once per file text.

A file that parses is split where the parser says, in C. A file with a statement the parser
rejects is split by services.core.sql_text (comments, literals, dollar quotes, BEGIN ATOMIC) and
parsed statement by statement, so the rejected statement is reported and the others still linted.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property

from pglast import ast
from pglast.parser import ParseError, parse_sql

from services.core.sql_text import split_statements

CACHE_SIZE = 4096  # files; a history of a few hundred migrations fits many times over


@dataclass(frozen=True)
class Parsed:
    line: int  # 1-based line of the statement's first token
    source: str  # its exact source, without the `;`
    node: ast.Node | None  # the statement's tree; None when the parser rejects it
    error: str = ""  # the parser's complaint, with the line it points at

    @cached_property
    def display(self) -> str:
        """The source without comments, whitespace-collapsed and cut, as Finding.statement shows it."""
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
        raw = parse_sql(sql)
    except ParseError:
        return tuple(p for st in split_statements(sql) for p in _parse_alone(st.text, st.line))
    return tuple(_statement(sql, r, 1) for r in raw)


def _parse_alone(text: str, line: int) -> tuple[Parsed, ...]:
    try:
        return tuple(_statement(text, r, line) for r in parse_sql(text))
    except ParseError as err:
        message = str(err.args[0]) if err.args else str(err)
        # The character it points at; none for "syntax error at end of input".
        at = err.args[1] if len(err.args) > 1 and isinstance(err.args[1], int) else len(text)
        return (Parsed(line, text, None, f"{message} (line {line + text.count(chr(10), 0, at)})"),)


def _statement(sql: str, raw: ast.RawStmt, first_line: int) -> Parsed:
    # libpg_query (PostgreSQL 18's grammar) puts stmt_location on the first token, in characters.
    start = raw.stmt_location or 0
    end = start + raw.stmt_len if raw.stmt_len else len(sql)
    return Parsed(first_line + sql.count("\n", 0, start), sql[start:end].rstrip(), raw.stmt)
