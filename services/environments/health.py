"""Live dependency health: an environment's probes judged against `[health]` thresholds.

`check` probes once (the `health` command, the DR walkthrough's validate step, a deploy's
question); `HealthBoard` keeps a short history per dependency for the environments pane's
sparklines. Polling itself belongs to whoever shows it: the pane polls in a worker, only while shown.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from services.core.health_config import HealthConfig
from services.core.masking import mask_text
from services.core.ports import Reading

if TYPE_CHECKING:
    from services.core.container import Services

Status = Literal["ok", "warn", "fail"]
RANK: dict[Status, int] = {"ok": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Check:
    dependency: str
    status: Status
    reasons: tuple[str, ...]  # each with the measured value beside its threshold
    reading: Reading


@dataclass(frozen=True)
class EnvironmentHealth:
    env: str
    checks: tuple[Check, ...]
    when: float

    @property
    def status(self) -> Status:
        return max((c.status for c in self.checks), key=RANK.__getitem__, default="ok")

    def failing(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def as_json(self) -> dict[str, Any]:
        return {"env": self.env, "status": self.status, "when": self.when,
                "dependencies": [{"dependency": c.dependency, "status": c.status, "reasons": list(c.reasons),
                                  "reachable": c.reading.reachable, "version": c.reading.version,
                                  "numbers": dict(c.reading.numbers), "facts": list(c.reading.facts),
                                  "error": c.reading.error} for c in self.checks]}

    def summary(self) -> str:
        return " ".join(f"{c.dependency}:{c.status}" for c in self.checks)


def judge(reading: Reading, config: HealthConfig) -> Check:
    if not reading.reachable:
        what = "failing" if reading.numbers else "unreachable"  # it answered (an HTTP 500), or not at all
        return Check(reading.dependency, "fail", (f"{what}: {reading.error or 'no answer'}",), reading)
    status: Status = "ok"
    reasons = []
    for metric, value in reading.numbers.items():
        bound = config.threshold(reading.dependency, metric)
        if bound is None:
            continue
        level: Status = "fail" if value >= bound.fail else "warn" if value >= bound.warn else "ok"
        if level != "ok":
            reasons.append(f"{metric} {value:g} >= {level} {getattr(bound, level):g}")
            status = max(status, level, key=RANK.__getitem__)
    return Check(reading.dependency, status, tuple(reasons), reading)


def check(services: Services, env: str) -> EnvironmentHealth:
    """Probe env's dependencies once; an adapter that raises is a failed probe, never a crash."""
    config = services.config.health
    try:
        readings = services.probes(env).probe(config.timeout_s)
    except Exception as err:  # noqa: BLE001 - the pane and the command must still show the others
        readings = [Reading("probes", False, error=f"{type(err).__name__}: {err}")]
    return EnvironmentHealth(env, tuple(judge(_masked(r), config) for r in readings), services.clock.now())


def _masked(reading: Reading) -> Reading:
    """What a probe read, masked once here for every face (the detail screen writes no stream that masks)."""
    return replace(reading, version=mask_text(reading.version) if reading.version else reading.version,
                   facts=tuple(mask_text(fact) for fact in reading.facts),
                   error=mask_text(reading.error) if reading.error else reading.error)


@dataclass
class HealthBoard:
    """The latest health of each environment and a short history of each dependency's latency."""

    size: int
    latest: dict[str, EnvironmentHealth] = field(default_factory=dict)
    _history: dict[tuple[str, str], deque[tuple[Status, float]]] = field(default_factory=dict)

    def add(self, health: EnvironmentHealth) -> None:
        self.latest[health.env] = health
        for c in health.checks:
            kept = self._history.setdefault((health.env, c.dependency), deque(maxlen=self.size))
            kept.append((c.status, float(c.reading.numbers.get("latency_ms", 0.0))))

    def history(self, env: str, dependency: str) -> list[tuple[Status, float]]:
        return list(self._history.get((env, dependency), ()))


APP_DEPENDENCIES = ("postgres", "redis")  # what the app needs to start; the API is what a deploy replaces


def failing_dependencies(services: Services, env: str) -> list[Check]:
    """env's PostgreSQL and Redis checks that fail now (one probe of each), for a deploy's question
    and the recovery walkthrough's validate step."""
    return [c for c in check(services, env).failing() if c.dependency in APP_DEPENDENCIES]


def named(checks: list[Check]) -> str:
    """`redis (unreachable: 127.0.0.1:6379: Connection refused)`, one per failing check."""
    return "; ".join(f"{c.dependency} ({', '.join(c.reasons)})" for c in checks)
