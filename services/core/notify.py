"""Notifications: each one routed by event and severity, and sent in the background.

A receiver that is down, slow or failing never blocks or fails what it reports: sends go through
one background thread with a queue, each retried with exponential backoff for a bounded number of
tries, and a notification given up is written to the audit trail ("notify", "failed: ROUTE
REASON"), so the audit pane shows it. Every text is masked before it is queued: a receiver's URL,
which holds its token, is never in a reason, a log or an audit record.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from services.core.audit import AuditLog
from services.core.identity import os_user
from services.core.masking import mask_fields, mask_text
from services.core.ports import Notification


class NotSent(Exception):
    """A receiver's refusal or timeout, said without its URL: "HTTP 500", "ConnectError"."""


class Receiver(Protocol):
    """One route's end: `send` raises (NotSent) when the notification did not arrive."""

    name: str

    def send(self, message: Notification) -> None: ...


@dataclass(frozen=True)
class Route:
    receiver: Receiver
    takes: Callable[[str, str], bool]  # (event, severity) -> does this route take it


@dataclass(frozen=True)
class Retry:
    attempts: int = 4
    backoff_s: float = 1.0  # the first retry's wait, doubled at each next one
    flush_s: float = 5.0  # how long close() waits for what is still queued


@dataclass(frozen=True)
class _Job:
    route: Route
    message: Notification


class Dispatcher:
    """The Notifier the services use: `notify` returns at once; `close` flushes, within `flush_s`.

    `inline` sends in the caller's thread (the sandbox, whose receivers never wait), and
    `audit_sent` writes a record for every notification sent too (the sandbox shows them so).
    """

    def __init__(self, routes: list[Route], audit: AuditLog | None, retry: Retry = Retry(), *,
                 inline: bool = False, audit_sent: bool = False) -> None:
        self.routes, self.audit, self.retry = routes, audit, retry
        self.inline, self.audit_sent = inline, audit_sent
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._quit = threading.Event()  # set when close() has waited long enough: give up at once
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def notify(self, message: Notification) -> None:
        message = mask_fields(dataclasses.replace(
            message, operator=message.operator or os_user(), at=message.at or time.time()),
            keep=("env", "event", "severity", "op_id", "operation"))
        for route in self.routes:
            if route.takes(message.event, message.severity):
                self._submit(_Job(route, message))

    def _submit(self, job: _Job) -> None:
        if self.inline:
            self._deliver(job)
            return
        with self._lock:
            if self._quit.is_set():
                self._given_up(job, "not sent: the console was quitting")
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="notify-sender", daemon=True)
                self._thread.start()
            self._queue.put(job)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._deliver(job)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _deliver(self, job: _Job) -> None:
        receiver = job.route.receiver
        problem, tries, quit_early = "", 0, False
        for attempt in range(self.retry.attempts):
            # No wait before the first try; once close() has given up waiting, nothing more is tried.
            if self._quit.wait(self.retry.backoff_s * 2 ** (attempt - 1) if attempt else 0):
                quit_early = True
                break
            tries += 1
            try:
                receiver.send(job.message)
            except Exception as err:  # noqa: BLE001 - any failure of a receiver is retried, then audited
                problem = str(err) if isinstance(err, NotSent) else f"{type(err).__name__}: {err}"
                continue
            if self.audit_sent:
                self._record(job, f"sent: {receiver.name} {job.message.event}")
            return
        why = f"; the console quit before the {'next' if tries else 'first'}" if quit_early else ""
        self._given_up(job, f"{problem or 'not sent'} (after {tries} of {self.retry.attempts} tries{why})")

    def _given_up(self, job: _Job, problem: str) -> None:
        self._record(job, f"failed: {job.route.receiver.name} {problem}")

    def _record(self, job: _Job, outcome: str) -> None:
        if self.audit is None:
            return
        message = job.message
        params = {"event": message.event, "severity": message.severity, "receiver": job.route.receiver.name,
                  "operation": message.operation, "notified_op": message.op_id}
        try:
            self.audit.append(message.env or "-", "notify", params, mask_text(outcome))
        except Exception:  # noqa: BLE001, S110 - nowhere left to tell; the operation must go on
            pass

    def close(self) -> None:
        """Wait up to `flush_s` for the queued notifications, then give up the rest (audited)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        thread.join(self.retry.flush_s)
        self._quit.set()  # a retry waiting out its backoff gives up now, and says so
        thread.join(self.retry.flush_s)  # only a request in flight (bounded by its timeout) is left to finish
        while True:  # the sender is stuck in a request past its timeout: record what it never took
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._given_up(job, "not sent: the console quit first")
        self._quit.clear()
