"""The operation log: every operation's full text, saved under the state dir, for the CLI and the
TUI alike (the runner writes it, so a headless run keeps its log as the console does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from services.core.events import Emit, Event, Finished, LogLine, Progress, StepFinished, StepStarted
from services.core.masking import mask_text
from services.core.private import open_private, private_dir

LOG_DIR = "build-logs"
FILE_BUFFER = 1 << 20
GATHER_S = 0.05  # the writer gathers lines this long before one masked, buffered write (tail -f lags ~50 ms)
CHUNK = 20_000  # lines masked and written at once: each holds the GIL ~1-2 ms, so the UI stays responsive
BACKLOG = 200_000  # lines waiting for the disk at most; then the operation's thread waits (memory stays bounded)


class LogFile:
    """An operation's full log on disk, appended from a writer thread.

    The operation's thread only appends the lines to a list (one uncontended lock per call): no
    queue, no encoding, no syscall. The writer wakes when lines arrive, gathers for GATHER_S, then
    masks the whole chunk at once and writes it in one buffered write and a flush, so the work
    that holds the GIL is a few C calls per chunk, not per line, and the UI thread keeps the GIL."""

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        self.path = path
        self.problem = ""
        self._file = open_private(path, "a", encoding="utf-8", buffering=FILE_BUFFER)
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._closing = False
        self._arrived = threading.Event()  # set when lines arrive in an empty list, or on close
        self._room = threading.Condition(self._lock)  # a full backlog waits here for the writer
        self._thread = threading.Thread(target=self._run, name=f"build-log {path.name}", daemon=True)
        self._thread.start()

    def write(self, lines: Sequence[str]) -> None:
        with self._lock:
            pending = self._pending
            if not pending:
                self._arrived.set()
            elif len(pending) >= BACKLOG:
                self._arrived.set()
                self._room.wait_for(lambda: len(self._pending) < BACKLOG or not self._thread.is_alive(), timeout=5)
                pending = self._pending
            pending.extend(lines)

    def _take(self) -> list[str]:
        """Up to CHUNK of the oldest pending lines."""
        with self._lock:
            pending = self._pending
            if len(pending) <= CHUNK:
                lines, self._pending = pending, []
                self._arrived.clear()
            else:
                lines = pending[:CHUNK]
                del pending[:CHUNK]
            self._room.notify_all()
            return lines

    def _run(self) -> None:
        while True:
            self._arrived.wait()
            if not self._closing:
                time.sleep(GATHER_S)  # let a burst gather: one write for many batches
            while lines := self._take():
                if not self.problem:
                    self._save(lines)
            if self._closing:
                break
        try:
            self._file.close()
        except OSError as err:
            self.problem = self.problem or f"log close failed: {err.strerror or err}"

    def _save(self, lines: list[str]) -> None:
        try:
            # Masked again here, a chunk at a time: the file outlives the pane.
            self._file.write(mask_text("\n".join(lines)))
            self._file.write("\n")
            self._file.flush()  # what is written so far can be read (tail -f)
        except OSError as err:
            self.problem = f"log write failed: {err.strerror or err}"

    def close(self) -> None:
        """Every line written, the file closed."""
        with self._lock:
            self._closing = True
            self._arrived.set()
        self._thread.join()


def log_path_for(op_id: str, log_dir: str | Path | None, state: Path) -> Path:
    """Where an operation's full log is saved: `log_dir`/<op_id>.log; a relative (or no) log_dir is
    taken under the console's state dir ($XDG_STATE_HOME/release-console)."""
    directory = Path(log_dir or LOG_DIR).expanduser()
    return (directory if directory.is_absolute() else state / directory) / f"{op_id}.log"


_clock: tuple[int, str] = (-1, "")


def clock_of(at: float) -> str:
    """HH:MM:SS of a time, formatted once per second (a firehose of lines shares a few seconds)."""
    global _clock
    second, text = _clock
    if int(at) != second:
        text = time.strftime("%H:%M:%S", time.localtime(at))
        _clock = (int(at), text)
    return text


def event_lines(event: Event) -> list[str]:
    """An event as the lines the CLI prints and the log file keeps (none for a chart sample)."""
    clock = clock_of(event.at)
    if isinstance(event, StepStarted):
        return [f"{clock} [{event.index + 1}/{event.total}] {event.title} ..."]
    if isinstance(event, StepFinished):
        return [f"{clock}   {event.status.value}: {event.detail}"]
    if isinstance(event, LogLine):
        return [f"{clock}   | {event.text}"]
    if isinstance(event, Progress) and event.done == event.total:
        return [f"{clock}   {event.done:g}/{event.total:g} {event.unit}"]
    if isinstance(event, Finished):
        return [f"{clock} {event.outcome.value.upper()}: {event.detail}", *(f"  next: {o}" for o in event.next_options)]
    return []


class OperationLog:
    """Tees an operation's events into its log file; a file that cannot be written is reported, once,
    as a warning in the operation's own log, and never stops the operation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problem = ""
        try:
            self._file: LogFile | None = LogFile(path)
        except OSError as err:
            self._file, self.problem = None, f"log not saved: {err.strerror or err}"

    def tee(self, emit: Emit) -> Emit:
        warned = False

        def both(event: Event) -> None:
            nonlocal warned
            if self._file is not None:
                if lines := event_lines(event):
                    self._file.write(lines)
                self.problem = self.problem or self._file.problem
            if self.problem and not warned and not isinstance(event, Finished):
                warned = True
                emit(LogLine(event.op_id, "", self.problem, "warning"))
            emit(event)

        return both

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
