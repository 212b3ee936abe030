"""SQL text split into statements, as PostgreSQL would run them: the lint reads them, the
PostgreSQL adapter executes them one by one (Prisma's non-transactional migrations).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STATEMENT_WIDTH = 100


# --- scanning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    line: int  # 1-based line of its first token
    text: str  # its exact source, from the first token up to the `;` (executable on its own)
    normalized: str  # uppercased, single-spaced, no comments; literals as '#n', quoted identifiers as "#n"
    literals: tuple[str, ...]  # placeholder n -> its unquoted value
    display: str  # the source without comments, whitespace-collapsed and cut to STATEMENT_WIDTH


_DOLLAR_TAG = re.compile(r"\$(?:[^\W\d]\w*)?\$")
# A run of characters that start nothing (no comment, literal, statement end, punctuation or newline):
# taken whole rather than a character at a time, which made the scanner most of the lint's time.
_PLAIN = re.compile(r"[^-/'\"$eE;(),\n]+")
_ATOMIC = re.compile(r"\bBEGIN\s+ATOMIC\b")


def split_statements(sql: str) -> list[Statement]:
    """The statements of a script, split on `;` outside comments, literals and function bodies."""
    statements: list[Statement] = []
    text: list[str] = []
    shown: list[str] = []
    literals: list[str] = []
    start = 0  # line of the statement's first token; 0 while none seen
    first = 0  # offset of that token
    line, i, n = 1, 0, len(sql)

    def finish(end: int) -> None:
        nonlocal start
        body = " ".join("".join(text).split())
        if body:
            display = " ".join("".join(shown).split())
            if len(display) > STATEMENT_WIDTH:
                display = display[: STATEMENT_WIDTH - 1] + "…"
            statements.append(Statement(start, sql[first:end].rstrip(), body, tuple(literals), display))
        text.clear()
        shown.clear()
        literals.clear()
        start = 0

    while i < n:
        if sql.startswith("--", i) or sql.startswith("/*", i):
            end = _comment_end(sql, i)
            line += sql.count("\n", i, end)
            text.append(" ")
            shown.append(" ")
            i = end
            continue
        if plain := _PLAIN.match(sql, i):
            run = plain.group()
            if not start and (lead := len(run) - len(run.lstrip())) < len(run):
                start, first = line, i + lead
            text.append(run.upper())
            shown.append(run)
            i = plain.end()
            continue
        c = sql[i]
        if not start and not c.isspace() and c != ";":
            start, first = line, i
        literal = _literal(sql, i)
        if literal:
            end, quote, value = literal
            text.append(f" {quote}#{len(literals)}{quote} ")
            literals.append(value)
            shown.append(sql[i:end])
            line += sql.count("\n", i, end)
            i = end
            continue
        if c == ";" and not _in_atomic_body("".join(text)):
            finish(i)
        else:
            # Padding punctuation keeps the regexes simple: tokens are always space-separated.
            text.append(f" {c} " if c in "()," else c.upper())
            shown.append(c)
            line += c == "\n"
        i += 1
    finish(n)
    return statements


def _comment_end(sql: str, i: int) -> int:
    if sql.startswith("--", i):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end
    depth, j = 0, i  # PostgreSQL block comments nest
    while j < len(sql):
        if sql.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif sql.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    return len(sql)


def _literal(sql: str, i: int) -> tuple[int, str, str] | None:
    """A string, E-string, dollar-quoted body or quoted identifier at i: (end, quote, value)."""
    c = sql[i]
    after_word = i > 0 and (sql[i - 1].isalnum() or sql[i - 1] in "_$")
    if c in "'\"":
        end, value = _quoted(sql, i, backslash=False)
        return end, c, value
    if c in "eE" and sql.startswith("'", i + 1) and not after_word:
        end, value = _quoted(sql, i + 1, backslash=True)
        return end, "'", value
    if c == "$" and not after_word and (tag := _DOLLAR_TAG.match(sql, i)):
        close = sql.find(tag.group(), tag.end())
        if close < 0:
            return len(sql), "'", sql[tag.end() :]
        return close + len(tag.group()), "'", sql[tag.end() : close]
    return None


def _quoted(sql: str, i: int, backslash: bool) -> tuple[int, str]:
    quote, j = sql[i], i + 1
    value: list[str] = []
    while j < len(sql):
        ch = sql[j]
        if backslash and ch == "\\" and j + 1 < len(sql):
            value.append(sql[j + 1])
            j += 2
        elif ch == quote and sql.startswith(quote, j + 1):  # doubled quote is an escaped quote
            value.append(quote)
            j += 2
        elif ch == quote:
            return j + 1, "".join(value)
        else:
            value.append(ch)
            j += 1
    return len(sql), "".join(value)


def _in_atomic_body(text: str) -> bool:
    """Inside a SQL-standard `BEGIN ATOMIC ... END` function body, `;` does not end the statement."""
    m = _ATOMIC.search(text)
    if not m:
        return False
    tail = text[m.end() :]
    return 1 + len(re.findall(r"\b(?:BEGIN|CASE)\b", tail)) > len(re.findall(r"\bEND\b", tail))
