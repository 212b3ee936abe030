"""The progressive canary's rig tests share these (test_canary_e2e.py on the Docker host target,
test_kube_canary_e2e.py on Kubernetes): the short three-step ladder, and what "analysed at each step"
means in the events and the decision trace of a canary that ran through it."""

from __future__ import annotations

from typing import Any

from rig.opkit import finished
from services.canary import trace
from services.core.events import CanaryStepChanged, Event

# Three steps of 10 checks at 2 s: each step is judged on its own 10 samples (min_samples 8).
STEPPED = {"check_interval_s": 2, "duration_s": 30, "ask_timeout_s": 2,
           "steps": [{"weight": 10, "pause": "20s"}, {"weight": 25, "pause": "20s"}, {"weight": 50, "pause": "20s"}]}


def ladder(events: list[Event]) -> list[tuple[int, str]]:
    """(step index, status) of each move on the ladder, in order."""
    return [(e.index, e.status) for e in events if isinstance(e, CanaryStepChanged)]


def shares_by_step(entries: list[Any]) -> dict[float, list[float]]:
    """The observed traffic share at each check, by the step weight it was checked against."""
    shares: dict[float, list[float]] = {}
    for entry in entries:
        if entry.rule == "traffic_share" and entry.value is not None and entry.threshold is not None:
            shares.setdefault(entry.threshold, []).append(entry.value)
    return shares


def assert_each_step_analysed(services: Any, op_id: str, events: list[Event]) -> None:
    """STEPPED went 10 → 25 → 50 %, each step passed on its own checks and a judge PASS, and the traffic
    share observed at each step is its weight, within the ±5 points the rule allows."""
    monitor = finished(events)["monitor"].detail
    assert monitor.startswith("3 steps passed (10% → 25% → 50%); last: 10 checks passed; judge PASS"), monitor
    assert ladder(events) == [(0, "running"), (0, "passed"), (1, "running"), (1, "passed"), (2, "running"),
                              (2, "passed")]
    entries = trace.entries(services.journal.get(op_id))
    judged = [e for e in entries if e.rule == "judge" and e.check in (10, 20, 30)]
    assert [e.verdict for e in judged] == ["pass"] * 3, [e.line() for e in judged]  # analysis at each step
    shares = shares_by_step(entries)
    assert sorted(shares) == [10.0, 25.0, 50.0], shares
    for weight, observed in shares.items():
        # The first checks of a step still see the last step's split in Prometheus' 5 s window: the
        # step's settled share is its median, which is within the ±5 points the rule allows.
        median = sorted(observed)[len(observed) // 2]
        assert abs(median - weight) <= 5, (weight, observed)
