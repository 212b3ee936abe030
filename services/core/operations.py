"""Operations: an ordered list of steps that emit typed events as they run.

One model serves the release pipeline, migrations, canary, backup, recovery and rollback.
The runner journals every step (so work can resume), holds the environment's release
lock, asks for confirmations through the caller, and appends the audit record.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from services.core import notify_events
from services.core.audit import REPAIR_HINT, AuditLog, AuditUnavailable
from services.core.events import (
    ConfirmationNeeded,
    Emit,
    Event,
    Finished,
    LogLine,
    MetricSample,
    OperationStarted,
    Outcome,
    Progress,
    StepFinished,
    StepStarted,
    StepStatus,
)
from services.core.journal import Journal
from services.core.locks import LockHeld, LockInfo, ReleaseLocks
from services.core.masking import mask, mask_fields, mask_text
from services.core.oplog import OperationLog
from services.core.ports import Notification, Notifier

# Answers a confirmation with the text the operator typed, or None when they declined.
Confirm = Callable[[ConfirmationNeeded], str | None]


class StepFailed(Exception):
    """A step could not finish; `next_options` tells the operator what they can do now."""

    def __init__(self, message: str, next_options: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.next_options = next_options


class Declined(Exception):
    pass


class Cancelled(Exception):
    pass


_running = threading.local()  # .cancel: the cancel event of the step this thread runs


def current_cancel() -> threading.Event | None:
    """The running step's cancel event (ctrl+x, SIGINT), for adapters that wait on a subprocess:
    they get it here rather than through every port's signature."""
    return getattr(_running, "cancel", None)


@contextmanager
def cancelled_by(cancel: threading.Event | None) -> Iterator[None]:
    """Within it, `cancel` is what stops this thread's waits (pause, subprocesses): a running step's
    event, or one of its own outside an operation (a followed log); None: nothing does (`shielded`)."""
    outer, _running.cancel = current_cancel(), cancel
    try:
        yield
    finally:
        _running.cancel = outer


def shielded() -> AbstractContextManager[None]:
    """A short change that must finish whole once begun (writing nginx's upstream and reloading it):
    a cancel meanwhile takes effect at the next wait after it."""
    return cancelled_by(None)


def pause(seconds: float) -> None:
    """time.sleep for an adapter's wait (a health poll, a drain, a rollout poll): it wakes at once when
    the running step is cancelled (ctrl+x, SIGINT) and raises Cancelled; outside an operation it sleeps."""
    cancel = current_cancel()
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise Cancelled("cancelled by the operator")


@dataclass
class StepContext:
    op_id: str
    step_id: str
    env: str
    params: dict[str, Any]
    state: dict[str, Any]  # journaled after each step: what later steps (and a resume) need
    _emit: Emit
    _confirm: Confirm
    _cancel: threading.Event
    _checkpoint: Callable[[], None] = lambda: None
    _append: Callable[[list[dict[str, Any]]], None] = lambda items: None

    def checkpoint(self) -> None:
        """Journal `state` now, mid-step: a long step (a canary's checks) keeps what it learnt."""
        self._checkpoint()

    def append(self, items: list[dict[str, Any]]) -> None:
        """Journal these now, after the operation's earlier entries: for a record that only grows
        (a canary's trace), which `state` would rewrite whole at every checkpoint."""
        self._append(items)

    def log(self, text: str, level: str = "info") -> None:
        self._emit(LogLine(self.op_id, self.step_id, text, level))

    def progress(self, done: float, total: float, unit: str = "") -> None:
        self._emit(Progress(self.op_id, self.step_id, done, total, unit))

    def metric(self, metric: str, series: str, value: float, threshold: float | None = None) -> None:
        self._emit(MetricSample(self.op_id, metric, series, value, threshold))

    def emit(self, event: Event) -> None:
        self._emit(event)

    def confirm(self, prompt: str, expected: str | None = None) -> None:
        """Block until the operator confirms; raise Declined otherwise. `expected` must be typed exactly."""
        answer = self._confirm(ConfirmationNeeded(self.op_id, self.step_id, prompt, expected))
        if answer is None or (expected is not None and answer.strip() != expected):
            raise Declined(f"not confirmed: {prompt}")

    def ask(self, prompt: str, timeout_s: float, default_yes: bool) -> bool:
        """A yes/no that does not wait forever: unanswered after `timeout_s`, the default holds.

        The answerer (the TUI's pump, the CLI) enforces the deadline, and shows the countdown.
        """
        question = ConfirmationNeeded(self.op_id, self.step_id, prompt, None, timeout_s=timeout_s,
                                      default_yes=default_yes)
        return self._confirm(question) is not None

    def ask_reason(self, prompt: str) -> str:
        """An override: the operator must give a reason, which the audit record keeps."""
        answer = self._confirm(ConfirmationNeeded(self.op_id, self.step_id, prompt, None, free_text=True))
        if not answer or not answer.strip():
            raise Declined(f"no override reason given: {prompt}")
        self.state["override_reason"] = answer.strip()
        return answer.strip()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("cancelled by the operator")

    def sleep(self, seconds: float) -> None:
        """Sleep that wakes at once on cancel: thread workers cannot be interrupted otherwise."""
        if self._cancel.wait(seconds):
            raise Cancelled("cancelled by the operator")


StepFn = Callable[[StepContext], str | None]


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    run: StepFn


@dataclass
class Operation:
    kind: str
    env: str
    title: str
    steps: list[Step]
    params: dict[str, Any] = field(default_factory=dict)
    takes_lock: bool = True
    override_reason: str | None = None
    id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])


@dataclass(frozen=True)
class Result:
    op_id: str
    outcome: Outcome
    detail: str
    failed_step: str | None = None


class Runner:
    def __init__(self, journal: Journal, audit: AuditLog, locks: ReleaseLocks,
                 log_path: Callable[[str], Path] | None = None, before: Callable[[], None] = lambda: None,
                 after: Callable[[], None] = lambda: None, notifier: Notifier | None = None) -> None:
        """`log_path`: where an operation's full log is saved, by its id (None: not saved).
        `before` and `after` run around each operation (the sandbox takes in and saves its world).
        `notifier` is told of every operation's start and end (services/core/notify_events.py)."""
        self.journal = journal
        self.audit = audit
        self.locks = locks
        self.log_path = log_path
        self.before, self.after = before, after
        self.notifier = notifier

    def _tell(self, notes: list[Notification]) -> None:
        notify_events.tell(self.notifier, notes)

    def _told_end(self, op: Operation, outcome: Outcome, detail: str, state: Mapping[str, Any] | None = None) -> None:
        self._tell(notify_events.finished(op.kind, op.env, op.id, op.title, op.params, outcome, detail, state))

    def run(
        self,
        op: Operation,
        emit: Emit,
        confirm: Confirm,
        cancel: threading.Event | None = None,
        start_at: int = 0,
        state: dict[str, Any] | None = None,
    ) -> Result:
        ids = [step.id for step in op.steps]
        repeated = sorted({step_id for step_id in ids if ids.count(step_id) > 1})
        if repeated:  # the runbook and the events name steps by id: two alike would show as one
            raise ValueError(f"{op.kind}: step ids repeat: {', '.join(repeated)}")
        self.before()
        cancel = cancel or threading.Event()
        state = dict(state or {})
        params = mask(op.params)
        # Whoever listens (the TUI, the CLI, a test, the log file) only ever sees masked text.
        log = OperationLog(self.log_path(op.id)) if self.log_path else None
        emit = _masking(log.tee(emit) if log else emit)
        confirm = _masking(confirm)
        try:
            return self._run_audited(op, emit, confirm, cancel, start_at, state, params)
        finally:
            self.after()
            if log:
                log.close()

    def _steps_changed(self, op: Operation, start_at: int) -> str | None:
        """Why a resume must not go on, or None: the rebuilt steps are the journaled ones.

        A resume rebuilds the operation from today's configuration and starts at the journaled
        index. Had a setting added or removed a step meanwhile ([migrations] backup, [monitor]
        after_deploy), that index would name another step: one never done could be skipped.
        """
        if not start_at:
            return None
        try:
            recorded = [step.step_id for step in self.journal.get(op.id).steps]
        except KeyError:
            return None
        now = [step.id for step in op.steps]
        if recorded == now:
            return None
        gone, new = [i for i in recorded if i not in now], [i for i in now if i not in recorded]
        said = "; ".join(part for part in (f"no longer built: {', '.join(gone)}" if gone else "",
                                           f"new: {', '.join(new)}" if new else "") if part)
        return f"its steps changed since it was journaled ({said or 'their order'}): the configuration or the console"

    def _refuse(self, op: Operation, emit: Emit, params: dict[str, Any], detail: str,
                next_options: tuple[str, ...]) -> Result:
        """An operation that does not start: said, audited and told, with what to do instead."""
        self._told_end(op, Outcome.FAILED, f"refused: {detail}")
        self.audit.append(op.env, op.kind, params, f"refused: {detail}", op.override_reason)
        emit(Finished(op.id, Outcome.FAILED, detail, next_options))
        return Result(op.id, Outcome.FAILED, detail)

    def _run_audited(self, op: Operation, emit: Emit, confirm: Confirm, cancel: threading.Event, start_at: int,
                     state: dict[str, Any], params: dict[str, Any]) -> Result:
        try:
            self.audit.ensure_writable()  # an operation that cannot be audited does not start
        except AuditUnavailable as unaudited:
            self._told_end(op, Outcome.FAILED, f"not started: {unaudited}")
            emit(Finished(op.id, Outcome.FAILED, f"not started: {unaudited}", (REPAIR_HINT, "then run it again")))
            return Result(op.id, Outcome.FAILED, str(unaudited))
        if changed := self._steps_changed(op, start_at):
            return self._refuse(op, emit, params, f"not resumed: {changed}", (
                f"release-console journal abandon {op.id} --reason '...', then start it again",
                "or put back the configuration it was started with, then resume"))
        if op.takes_lock:
            try:
                self.locks.acquire(op.env, f"{op.kind} {op.id}", self._takeover(op))
            except LockHeld as held:
                return self._refuse(op, emit, params, str(held), ("wait for the holder", "ask them to release it"))
            except StepFailed as unavailable:  # where the lock lives cannot be reached: nothing runs
                return self._refuse(op, emit, params, f"cannot take {op.env}'s release lock: {unavailable}",
                                    unavailable.next_options)
        try:
            return self._run_steps(op, emit, confirm, cancel, start_at, state, params)
        finally:
            if op.takes_lock:
                self.locks.release(op.env)

    def _takeover(self, op: Operation) -> Callable[[LockInfo], None]:
        """Audit taking over a dead holder's lock, before its row or file is removed."""

        def audit(dead: LockInfo) -> None:
            self.audit.append(op.env, "lock-takeover", {"op_id": op.id, "from": dead.fields()},
                              f"taken over: {dead.holder}'s process {dead.pid} is gone (same host and boot)")
            self._tell([notify_events.takeover(op.kind, op.env, op.id, dead.holder, dead.pid)])

        return audit

    def _shared_warning(self, op: Operation, emit: Emit) -> None:
        """Say in the operation's log when the shared trail missed the last record (it is kept locally)."""
        if problem := self.audit.shared_problem:
            emit(LogLine(op.id, "", problem, "warning"))

    def _run_steps(
        self,
        op: Operation,
        emit: Emit,
        confirm: Confirm,
        cancel: threading.Event,
        start_at: int,
        state: dict[str, Any],
        params: dict[str, Any],
    ) -> Result:
        self.journal.begin(op.id, op.kind, op.env, op.title, params, [(s.id, s.title) for s in op.steps])
        verb = "resumed" if start_at else "started"
        self.audit.append(op.env, op.kind, {**params, "op_id": op.id}, verb, op.override_reason)
        self._tell(notify_events.started(op.kind, op.env, op.id, op.title, op.params, start_at))
        emit(OperationStarted(op.id, op.kind, op.env, op.title, tuple((s.id, s.title) for s in op.steps), start_at))
        self._shared_warning(op, emit)
        outcome, detail, failed = Outcome.SUCCEEDED, f"{len(op.steps)} steps done", None
        options: tuple[str, ...] = ()
        for index, step in enumerate(op.steps[start_at:], start=start_at):
            ctx = StepContext(op.id, step.id, op.env, op.params, state, emit, self._waiting(op, index, confirm), cancel,
                              lambda: self.journal.save_state(op.id, state),
                              lambda items: self.journal.append(op.id, items))
            self.journal.step(op.id, index, StepStatus.RUNNING)
            emit(StepStarted(op.id, step.id, step.title, index, len(op.steps)))
            try:
                with cancelled_by(cancel):
                    ctx.check_cancelled()
                    step_detail = step.run(ctx) or ""
            except Exception as err:  # noqa: BLE001 - every failure becomes an outcome, never a traceback
                outcome, options = _classify(err)
                detail, failed = mask_text(str(err)), step.id
                if isinstance(err, Cancelled):  # the last event names what was in flight
                    detail = f"{step.title}: {detail}"
                self.journal.save_state(op.id, state)  # what the step learnt before failing (a trace)
                self.journal.step(op.id, index, StepStatus.FAILED, detail)
                emit(StepFinished(op.id, step.id, StepStatus.FAILED, detail))
                break
            self.journal.save_state(op.id, state)
            self.journal.step(op.id, index, StepStatus.DONE, step_detail)
            emit(StepFinished(op.id, step.id, StepStatus.DONE, step_detail))
        status = "done" if outcome is Outcome.SUCCEEDED else outcome.value
        # A failed step keeps the journal 'running' for resume only if the process dies;
        # a handled failure is final but can still be re-run from its step.
        self.journal.finish(op.id, status, detail)
        reason = op.override_reason or state.get("override_reason")
        self._told_end(op, outcome, detail, state)  # before the record, which stays the operation's last
        try:
            self.audit.append(op.env, op.kind, {**params, "op_id": op.id}, f"{outcome.value}: {detail}", reason)
        except AuditUnavailable as unaudited:  # torn mid-operation: say so rather than lose the outcome
            detail, options = f"{detail} (NOT AUDITED: {unaudited})", (*options, REPAIR_HINT)
        self._shared_warning(op, emit)
        emit(Finished(op.id, outcome, detail, options))
        return Result(op.id, outcome, detail, failed)

    def _waiting(self, op: Operation, index: int, confirm: Confirm) -> Confirm:
        """Mark the step as waiting for the operator while a confirmation is open."""

        def ask(question: ConfirmationNeeded) -> str | None:
            self.journal.step(op.id, index, StepStatus.WAITING, question.prompt)
            try:
                return confirm(question)
            finally:
                self.journal.step(op.id, index, StepStatus.RUNNING)

        return ask


R = TypeVar("R")


def _masking(listener: Callable[[Any], R]) -> Callable[[Any], R]:
    def masked(event: Event) -> R:
        return listener(mask_fields(event))

    return masked


def _classify(err: Exception) -> tuple[Outcome, tuple[str, ...]]:
    if isinstance(err, Declined):
        return Outcome.DECLINED, ("run it again when ready",)
    if isinstance(err, Cancelled):
        return Outcome.CANCELLED, ("resume from this step", "abandon")
    if isinstance(err, StepFailed):
        return Outcome.FAILED, err.next_options or ("retry this step", "abandon")
    return Outcome.FAILED, ("retry this step", "abandon")
