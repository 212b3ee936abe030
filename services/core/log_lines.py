"""Log lines from outside (containers, pods): split from raw chunks, merged from several streams,
and cleaned of terminal escape and control sequences before anything shows or prints them.

Adapters import it (it is core); no Textual, no engine SDK.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from services.core.observe import LogRecord

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), DCS/SOS/PM/APC strings, other two-byte escapes,
# the 8-bit C1 forms, and every other control character but the tab.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_].*?(?:\x07|\x1b\\|$)"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|[\x00-\x08\x0a-\x1f\x7f-\x9f]",
    re.S,
)
MAX_LINE = 4000  # characters kept of one line; the rest is cut and said so
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d)) ?")


def clean(text: str) -> str:
    """Printable text: escape and control sequences removed (a line cannot move the cursor, retitle
    the terminal, or hide what follows), tabs kept, very long lines cut."""
    text = _ESCAPES.sub("", text.replace("\r\n", "\n").rstrip("\n"))
    return text if len(text) <= MAX_LINE else text[:MAX_LINE] + " …(cut)"


def split_stamp(line: str) -> tuple[str, str]:
    """`2026-12-06T03:04:15.123456789Z text` -> (stamp, text); ("", line) without one."""
    found = _STAMP.match(line)
    return (found.group(1), line[found.end():]) if found else ("", line)


def lines_of(chunks: Iterable[bytes | str]) -> Iterator[str]:
    """Whole lines from chunks cut anywhere (Docker frames, HTTP chunks); the last one even unended."""
    pending = ""
    for chunk in chunks:
        pending += chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
        *whole, pending = pending.split("\n")
        yield from whole
    if pending:
        yield pending


@dataclass
class Stream:
    """One container's or pod's log: `open` starts it (chunks), `close` ends it from another thread."""

    source: str
    role: str
    open: Callable[[], Iterable[bytes | str]]
    close: Callable[[], None]


_END = object()


def merged(streams: list[Stream], cancel: threading.Event, poll_s: float = 0.1) -> Iterator[LogRecord]:
    """Every stream's lines as they come, one reader thread each. Ends when all have ended, or soon
    after `cancel` is set (each stream closed, so a blocked read returns). A stream that fails ends
    with one line saying why."""
    out: queue.Queue[object] = queue.Queue(maxsize=10_000)

    def read(stream: Stream) -> None:
        try:
            for line in lines_of(stream.open()):
                if cancel.is_set():
                    break
                when, text = split_stamp(line)
                out.put(LogRecord(stream.source, stream.role, when, text))
        except Exception as err:  # noqa: BLE001 - one stream's end must not end the others
            if not cancel.is_set():
                out.put(LogRecord(stream.source, stream.role, "", f"(log stream ended: {type(err).__name__}: {err})"))
        finally:
            out.put(_END)

    readers = [threading.Thread(target=read, args=(s,), daemon=True, name=f"log-{s.source}") for s in streams]
    for reader in readers:
        reader.start()
    live = len(readers)
    try:
        while live and not cancel.is_set():
            try:
                item = out.get(timeout=poll_s)
            except queue.Empty:
                continue
            if item is _END:
                live -= 1
            elif isinstance(item, LogRecord):
                yield item
    finally:
        for stream in streams:
            try:
                stream.close()
            except Exception:  # noqa: BLE001, S110 - closing what may be closed already
                pass
