"""The port for watching what the app does where it runs: its log lines and its resource use.

One adapter per target kind (services/adapters/docker_observe.py, kube_observe.py) and one in the
sandbox. Lines come back raw from the engine; services/environments/logs.py cleans and masks them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

ROLES = ("stable", "canary")


@dataclass(frozen=True)
class LogRecord:
    source: str  # the container's or the pod's name
    role: str  # stable or canary
    when: str  # the engine's timestamp (RFC 3339), "" when it gave none
    text: str  # raw: untrusted until services/environments/logs.py cleaned and masked it


@dataclass(frozen=True)
class Usage:
    """One container's or pod's use: CPU in % of one core (as `docker stats`), memory in bytes."""

    source: str
    role: str
    cpu_percent: float | None
    memory_bytes: int | None
    memory_limit: int | None = None  # None: no limit known


@dataclass(frozen=True)
class UsageReport:
    rows: tuple[Usage, ...]
    source: str  # where the figures come from: "docker stats", "metrics.k8s.io", "sandbox"
    note: str = ""  # said plainly when there are no figures: "metrics-server is not installed"


class AppObserver(Protocol):
    def logs(self, role: str | None, since_s: float | None, follow: bool,
             cancel: threading.Event) -> Iterator[LogRecord]:
        """Lines of the app's stable and canary containers or pods (`role` only, when given), from
        `since_s` seconds ago (None: all kept); with `follow`, until `cancel` is set."""
        ...

    def usage(self) -> UsageReport: ...


class NoObserver:
    """A target with no containers of its own (kind = "none"): it says so."""

    def __init__(self, env: str) -> None:
        self.env = env

    def logs(self, role: str | None, since_s: float | None, follow: bool,
             cancel: threading.Event) -> Iterator[LogRecord]:
        from services.core.operations import StepFailed

        raise StepFailed(f"{self.env} has no Docker or Kubernetes target: its logs are not the console's to read",
                         (f"read them where {self.env} runs its app (journalctl, its log files)",))

    def usage(self) -> UsageReport:
        return UsageReport((), "none", f"{self.env} has no Docker or Kubernetes target: no resource figures")
