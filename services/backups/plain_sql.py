"""Plain-SQL dumps of earlier versions (manifest format 1 and 2), made safe to hand to psql.

psql obeys meta-commands (`\\!` runs a shell command, `\\connect` switches database), so a plain
dump is passed on line by line, and only lines already checked: any line that starts with a
backslash outside COPY data is refused, and the restore stops before psql sees it. COPY ... FROM
stdin data (where `\\N` is a null) runs to its `\\.` line. The `\\restrict KEY` / `\\unrestrict KEY`
pair that pg_dump 15.14+ writes is dropped: the PostgreSQL adapter sends its own `\\restrict` with a
random key first, so psql itself refuses any meta-command, even one in the middle of a line.
"""

from __future__ import annotations

import re

from services.core.operations import StepFailed
from services.core.ports import Readable

COPY_FROM_STDIN = re.compile(rb"^COPY\s.*\sFROM\s+stdin\s*;\s*$", re.IGNORECASE)
RESTRICT = re.compile(rb"^\\(un)?restrict [A-Za-z0-9]+\s*$")
END_OF_COPY = b"\\."
LINE_LIMIT = 64 << 20  # a line longer than this (no newline for 64 MiB) is not a dump


class MetaCommandRefused(StepFailed):
    """A line psql would have run as a meta-command: the dump is refused."""


class CheckedSql:
    """Reads a plain dump through, one checked line at a time; refuses a meta-command line."""

    def __init__(self, source: Readable, what: str, chunk: int = 1 << 20) -> None:
        self._source, self._what, self._chunk = source, what, chunk
        self._rest = b""  # an incomplete last line, held back until its newline arrives
        self.lines, self._in_copy, self._done = 0, False, False
        self.refused = ""

    def read(self, size: int = -1, /) -> bytes:
        """Up to the next whole checked lines (size is a hint); all of it when size < 0."""
        if size < 0:
            return b"".join(iter(lambda: self._next(), b""))
        return self._next()

    def _next(self) -> bytes:
        while not self._done:
            data = self._source.read(self._chunk)
            if not data:
                self._done = True
                tail, self._rest = self._rest, b""
                return self._checked(tail) if tail else b""
            cut = data.rfind(b"\n")
            if cut < 0:
                self._rest += data
                if len(self._rest) > LINE_LIMIT:
                    self._refuse(self.lines + 1, b"a line longer than 64 MiB")
                continue
            whole, self._rest = self._rest + data[: cut + 1], data[cut + 1:]
            if checked := self._checked(whole):  # empty when only pg_dump's \restrict was in it: read on
                return checked
        return b""

    def _checked(self, block: bytes) -> bytes:
        kept = []
        for line in block.splitlines(keepends=True):
            self.lines += 1
            if self._in_copy:
                if line.rstrip(b"\r\n") == END_OF_COPY:
                    self._in_copy = False
                kept.append(line)
                continue
            if line.lstrip(b" \t").startswith(b"\\"):
                if RESTRICT.match(line):
                    continue  # pg_dump's own restricted mode: replaced by the console's
                self._refuse(self.lines, line)
            if COPY_FROM_STDIN.match(line):
                self._in_copy = True
            kept.append(line)
        return b"".join(kept)

    def _refuse(self, line_no: int, line: bytes) -> None:
        shown = line[:60].decode(errors="replace").rstrip()
        self.refused = f"line {line_no}: {shown!r}"
        raise MetaCommandRefused(
            f"{self._what} holds a psql meta-command at line {line_no} ({shown!r}): a dump made by pg_dump never"
            " does; refusing to restore it, nothing was run",
            ("restore another backup", "check who wrote to the backup store"))


def scan(source: Readable, what: str) -> int:
    """Read a whole plain dump through the checks (before anything is restored); returns its lines."""
    checked = CheckedSql(source, what)
    while checked.read():
        pass
    return checked.lines
