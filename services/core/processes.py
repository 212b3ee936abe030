"""Every subprocess the console runs, bounded in time and cancellable (pg_dump/pg_restore/psql aside).

A process runs in its own process group. When its time is up, or the running step is cancelled
(ctrl+x in the TUI, SIGINT in the CLI), the whole group gets SIGTERM, then SIGKILL after a
grace period, so a test runner's children go too. The step then fails (timeout) or is cancelled,
and the message says what was running and for how long.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from services.core.masking import mask
from services.core.operations import Cancelled, StepFailed, current_cancel

GRACE_S = 3.0  # between SIGTERM and SIGKILL
POLL_S = 0.05


class TimedOut(StepFailed):
    """The process ran past its bound and was stopped."""


@dataclass(frozen=True)
class Completed:
    code: int
    stdout: str
    stderr: str


def shown(argv: list[str]) -> str:
    return shlex.join(str(mask(a)) for a in argv)


def run(argv: list[str], timeout_s: float, *, on_line: Callable[[str], None] | None = None,
        cwd: str | Path | None = None, env: Mapping[str, str] | None = None, stdin_text: str | None = None,
        what: str = "", advice: tuple[str, ...] = ()) -> Completed:
    """Run `argv` (no shell) to its end, within `timeout_s`. With `on_line`, stdout and stderr are
    merged and streamed line by line (and not kept); without it, both are captured.

    FileNotFoundError and PermissionError come through as they are, for the caller to explain.
    """
    process = subprocess.Popen(
        argv, cwd=cwd, env=dict(env) if env is not None else None, text=True, errors="replace", bufsize=1,
        stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if on_line else subprocess.PIPE, start_new_session=True)
    out: list[str] = []
    err: list[str] = []
    assert process.stdout is not None
    readers = [_reader(process.stdout, on_line) if on_line else _reader(process.stdout, out.append, keep_ends=True)]
    if process.stderr is not None:
        readers.append(_reader(process.stderr, err.append, keep_ends=True))
    if stdin_text is not None:
        readers.append(_writer(process, stdin_text))
    try:
        code = wait(process, argv, timeout_s, what=what, advice=advice)
    finally:
        for reader in readers:
            reader.join(timeout=2)
    return Completed(code, "".join(out), "".join(err))


def wait(process: subprocess.Popen[str], argv: list[str], timeout_s: float, *, what: str = "",
         advice: tuple[str, ...] = ()) -> int:
    """The process's exit code; on timeout or cancel its group is stopped and TimedOut / Cancelled raised."""
    cancel = current_cancel()
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return process.wait(timeout=POLL_S)
        cancelled = cancel is not None and cancel.is_set()
        if cancelled or time.monotonic() >= deadline:
            stop(process)
            took = time.monotonic() - started
            running = f"{what + ' ' if what else ''}`{shown(argv)}`"
            if cancelled:
                raise Cancelled(f"cancelled by the operator while {running} ran for {took:.1f}s; it was stopped")
            raise TimedOut(f"{running} did not finish within {timeout_s:g}s; it was stopped",
                           advice or ("look at what it waits for, then retry this step",))


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the process group, then SIGKILL if it is still there after GRACE_S."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=GRACE_S)
            return
    process.wait()


def _reader(stream: IO[str], sink: Callable[[str], None], keep_ends: bool = False) -> threading.Thread:
    def follow() -> None:
        for line in stream:  # to its end, so the process never blocks on a full pipe
            sink(line if keep_ends else line.rstrip("\n"))

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return thread


def _writer(process: subprocess.Popen[str], text: str) -> threading.Thread:
    def feed() -> None:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):
            process.stdin.write(text)
            process.stdin.close()

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread
