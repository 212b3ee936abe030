"""Bounded subprocesses: a watchdog that kills a child past its deadline or when the operator cancels.

A thread blocked reading a pipe (pg_dump waiting for a lock, psql on a slow server) cannot see a
cancel by itself; the watchdog kills the child, the read ends, and `check` says why.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

from services.core.operations import Cancelled, StepFailed

POLL_S = 0.2
Cancelled_ = Callable[[], bool]


def never() -> bool:
    return False


class Watchdog:
    def __init__(self, process: subprocess.Popen[bytes], what: str, timeout_s: float,
                 cancelled: Cancelled_ = never) -> None:
        self.process, self.what, self.timeout_s, self.cancelled = process, what, timeout_s, cancelled
        self.why = ""  # "cancelled" or "timed out" once it killed the child
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"watchdog-{what}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not self._done.wait(POLL_S):
            if self.process.poll() is not None:
                return
            why = "cancelled" if self.cancelled() else "timed out" if time.monotonic() > deadline else ""
            if why:
                self.why = why
                self.process.kill()
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def check(self, left: str) -> None:
        """Raise for a child the watchdog killed; `left` says what that left behind (or cleaned)."""
        if self.why == "cancelled":
            raise Cancelled(f"cancelled by the operator: {self.what} was stopped; {left}")
        if self.why == "timed out":
            raise StepFailed(f"{self.what} did not finish within {self.timeout_s:g}s and was stopped; {left}",
                             ("retry when the database is less busy",
                              "raise [backup] dump_timeout_s / restore_timeout_s"))

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
