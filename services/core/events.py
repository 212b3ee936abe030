"""The typed events an operation emits. The TUI turns them into messages, the CLI into lines."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"  # for the operator
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DECLINED = "declined"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Event:
    op_id: str
    at: float = field(default_factory=time.time, kw_only=True)

    def to_json(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class OperationStarted(Event):
    kind: str
    env: str
    title: str
    steps: tuple[tuple[str, str], ...]  # (step id, title)
    start_at: int = 0


@dataclass(frozen=True)
class LogLine(Event):
    step_id: str
    text: str
    level: str = "info"


@dataclass(frozen=True)
class Progress(Event):
    step_id: str
    done: float
    total: float
    unit: str = ""


@dataclass(frozen=True)
class StepStarted(Event):
    step_id: str
    title: str
    index: int
    total: int


@dataclass(frozen=True)
class StepFinished(Event):
    step_id: str
    status: StepStatus
    detail: str = ""


@dataclass(frozen=True)
class ConfirmationNeeded(Event):
    """`expected` is the exact text to type; None means a plain yes/no. With `free_text`, the
    operator types a reason (an override's), and any non-empty text answers. With `timeout_s`,
    an unanswered question takes its default (yes when `default_yes`) after that long."""

    step_id: str
    prompt: str
    expected: str | None = None
    free_text: bool = False
    timeout_s: float | None = None
    default_yes: bool = False


@dataclass(frozen=True)
class MetricSample(Event):
    metric: str
    series: str  # canary, stable, baseline
    value: float
    threshold: float | None = None


@dataclass(frozen=True)
class CheckScheduled(Event):
    """A canary's next check: when it is due (epoch seconds), for countdowns."""

    check: int
    checks: int
    due: float


@dataclass(frozen=True)
class VerdictLogged(Event):
    """One verdict of a canary check: a monitor TraceEntry as JSON (see services/monitor.py)."""

    entry: dict[str, Any]


@dataclass(frozen=True)
class CanaryStepChanged(Event):
    """Where a progressive canary is on its ladder: its weights in order, the step at `index`
    (from 0) and that step's status: running, passed or rolled back. Promotion (100 %) follows the last."""

    weights: tuple[int, ...]
    index: int
    status: str


@dataclass(frozen=True)
class Finished(Event):
    outcome: Outcome
    detail: str = ""
    next_options: tuple[str, ...] = ()


Emit = Callable[[Event], None]
