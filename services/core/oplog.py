"""The operation log: every operation's full text, saved under the state dir, for the CLI and the
TUI alike (the runner writes it, so a headless run keeps its log as the console does).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from services.core.events import Emit, Event, Finished, LogLine, Progress, StepFinished, StepStarted
from services.core.masking import mask_text
from services.core.private import open_private, private_dir

LOG_DIR = "build-logs"
FILE_BUFFER = 1 << 16
FILE_QUEUE = 64  # batches waiting for the disk at most; then the runner waits (memory stays bounded)


class LogFile:
    """An operation's full log on disk, appended from a writer thread: the operation's thread only
    queues each batch (encoding and the write syscall are the writer's)."""

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        self.path = path
        self.problem = ""
        self._file = open_private(path, "a", encoding="utf-8", buffering=FILE_BUFFER)
        self._queue: queue.Queue[Sequence[str] | None] = queue.Queue(FILE_QUEUE)
        self._thread = threading.Thread(target=self._run, name=f"build-log {path.name}", daemon=True)
        self._thread.start()

    def write(self, lines: Sequence[str]) -> None:
        self._queue.put(lines)

    def _run(self) -> None:
        file = self._file
        while (lines := self._queue.get()) is not None:
            if self.problem:
                continue
            try:
                file.write(mask_text("\n".join(lines)))  # masked again here: the file outlives the pane
                file.write("\n")
                if self._queue.empty():
                    file.flush()  # caught up: what is written so far can be read (tail -f)
            except OSError as err:
                self.problem = f"log write failed: {err.strerror or err}"
        try:
            file.close()
        except OSError as err:
            self.problem = self.problem or f"log close failed: {err.strerror or err}"

    def close(self) -> None:
        """Every queued line written, the file closed."""
        self._queue.put(None)
        self._thread.join()


def log_path_for(op_id: str, log_dir: str | Path | None, state: Path) -> Path:
    """Where an operation's full log is saved: `log_dir`/<op_id>.log; a relative (or no) log_dir is
    taken under the console's state dir ($XDG_STATE_HOME/release-console)."""
    directory = Path(log_dir or LOG_DIR).expanduser()
    return (directory if directory.is_absolute() else state / directory) / f"{op_id}.log"


def event_lines(event: Event) -> list[str]:
    """An event as the lines the CLI prints and the log file keeps (none for a chart sample)."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.at))
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
