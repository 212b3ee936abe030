"""One check of a canary: every verdict the console bases a decision on, and why.

At each check the strategy's rules compare the canary with the baseline (error rate over 1.5x,
p95 over 2x: roll back; CPU over 80 % or memory over 85 %: scale up), the observed traffic
share is compared with the configured weight, and the statistical judge compares canary with
stable over the latest samples (`[metrics] judge_samples`). Each verdict becomes a TraceEntry,
with the query behind it, the value, the threshold and what the automation mode makes of it.
Missing data is never healthy: it is "no data" (or "stale" when an earlier value is shown instead).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from services.canary.judge import DEFAULT_METRICS, CanaryVerdict, JudgeSettings, judge
from services.core.config import CanaryPolicy, MetricsConfig
from services.core.ports import MetricSnapshot

ROLLBACK_RULES = {"error_rate": "error_rate_factor", "p95_ms": "p95_factor"}
SCALE_RULES = {"cpu_percent": "cpu_scale_up_percent", "memory_percent": "memory_scale_up_percent"}
CHARTED = ("error_rate", "p95_ms", "cpu_percent", "memory_percent")
Samples = dict[str, dict[str, list[float | None]]]  # series -> metric -> its values, one per fresh check


@dataclass(frozen=True)
class TraceEntry:
    check: int
    at: float
    rule: str  # error_rate, p95_ms, cpu_percent, memory_percent, traffic_share, judge
    series: str  # canary, stable, both
    query: str  # what was asked of the metrics source
    value: float | None
    baseline: float | None
    threshold: float | None
    verdict: str  # ok, breach, no data, off, pass, marginal, fail, nodata
    mode: str  # observe, ask, act
    action: str = "none"  # none, rollback, scale-up: what the verdict calls for
    note: str = ""  # why a value is missing, the judge's line, ...

    @property
    def bad(self) -> bool:
        return self.action != "none"

    def line(self) -> str:
        """One line for a log or a narrow pane."""
        mode = "observe only" if self.mode == "observe" else self.mode
        call = f" -> {self.action} ({mode})" if self.bad else ""
        if self.rule == "judge":
            return f"judge: {self.note}{call}"
        shown = "no data" if self.value is None else _fmt(self.rule, self.value)
        limit = "" if self.threshold is None else f" vs {_fmt(self.rule, self.threshold)}"
        note = f" [{self.note}]" if self.note and self.value is None else ""
        return f"{self.rule}: {shown}{limit} {self.verdict.upper() if self.bad else self.verdict}{call}{note}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Check:
    number: int
    entries: list[TraceEntry] = field(default_factory=list)
    judged: CanaryVerdict | None = None

    @property
    def missing(self) -> bool:
        """The canary's rule data is missing: a miss, counted towards asking the operator."""
        return any(e.value is None for e in self.entries if e.rule in ROLLBACK_RULES)

    def calls_for(self, action: str) -> list[TraceEntry]:
        return [e for e in self.entries if e.action == action]


def _fmt(rule: str, value: float) -> str:
    if rule == "error_rate":
        return f"{value * 100:.2f}%"
    if rule in ("traffic_share", "cpu_percent", "memory_percent"):
        return f"{value:.1f}%"
    if rule == "p95_ms":
        return f"{value:.0f}ms"
    return f"{value:.4g}"


def usable(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def evaluate(number: int, snapshot: MetricSnapshot, baseline: Mapping[str, float], samples: Samples,
             policy: CanaryPolicy, metrics: MetricsConfig, weight: int, query: Callable[[str, str], str]) -> Check:
    """Every verdict of one check. `query(series, metric)` names what was asked, for the trace."""
    check = Check(number)
    canary, stable = snapshot.series.get("canary", {}), snapshot.series.get("stable", {})

    def entry(rule: str, series: str, value: float | None, base: float | None, threshold: float | None,
              verdict: str, action: str = "none", note: str = "", asked: str = "") -> None:
        metric = "requests_per_s" if rule == "traffic_share" else rule
        names = ("canary", "stable") if series == "both" else (series,)
        query_text = asked or " ; ".join(query(name, metric) for name in names)
        check.entries.append(TraceEntry(number, snapshot.at, rule, series, query_text, value, base, threshold,
                                        verdict, policy.automation[rule], action, note))

    for rule, factor in ROLLBACK_RULES.items():
        value, base = usable(canary.get(rule)), baseline[rule]
        threshold = base * getattr(policy, factor)
        if rule == "error_rate":
            threshold = max(threshold, policy.error_rate_floor)
        if value is None:  # never healthy: the rule cannot say the canary is fine
            entry(rule, "canary", None, base, threshold, "no data", note=_problem(snapshot, "canary", rule))
        else:
            entry(rule, "canary", value, base, threshold, *(("breach", "rollback") if value > threshold else ("ok",)))

    for rule, limit_name in SCALE_RULES.items():
        limit = float(getattr(policy, limit_name))
        values = [v for v in (usable(canary.get(rule)), usable(stable.get(rule))) if v is not None]
        if not values:
            entry(rule, "both", None, baseline.get(rule), limit, "no data", note=_problem(snapshot, "stable", rule))
        else:
            entry(rule, "both", max(values), baseline.get(rule), limit,
                  *(("breach", "scale-up") if max(values) > limit else ("ok",)))

    share = _share(usable(canary.get("requests_per_s")), usable(stable.get("requests_per_s")))
    if share is None:
        entry("traffic_share", "both", None, None, float(weight), "no data",
              note=_problem(snapshot, "canary", "requests_per_s") or "no requests")
    else:
        off = abs(share - weight) > policy.traffic_share_tolerance
        entry("traffic_share", "both", share, None, float(weight), "off" if off else "ok",
              "rollback" if off else "none", f"configured {weight}% ± {policy.traffic_share_tolerance:g}")

    settings = JudgeSettings(min_samples=metrics.min_samples)
    specs = tuple(spec for spec in DEFAULT_METRICS if spec.name in CHARTED)
    check.judged = judge({m: samples["canary"][m] for m in CHARTED}, {m: samples["stable"][m] for m in CHARTED},
                         specs, settings)
    outcome = check.judged.outcome
    counts = ", ".join(f"{m} {len(samples['canary'][m])}/{len(samples['stable'][m])}" for m in CHARTED)
    fewest = min(len(values) for by_metric in samples.values() for values in by_metric.values())
    note = (f"not enough data yet: {fewest} of {metrics.min_samples} samples" if fewest < metrics.min_samples
            else check.judged.describe())
    entry("judge", "both", check.judged.score, None, float(settings.pass_score), outcome,
          "rollback" if outcome == "fail" else "none", note,
          f"Mann-Whitney U, canary vs stable, {settings.confidence:.0%} CI; samples {counts}")
    return check


def _share(canary: float | None, stable: float | None) -> float | None:
    if canary is None or stable is None or canary + stable <= 0:
        return None
    return 100 * canary / (canary + stable)


def _problem(snapshot: MetricSnapshot, series: str, metric: str) -> str:
    return snapshot.problems.get(f"{series}.{metric}", "")


def new_samples() -> Samples:
    return {series: {metric: [] for metric in CHARTED} for series in ("canary", "stable")}


def add_samples(samples: Samples, snapshot: MetricSnapshot, keep: int) -> None:
    """Only real values: a missed check adds nothing, so the judge counts data, not checks.
    The latest `keep` per series and metric are kept: what the judge compares."""
    for series, by_metric in samples.items():
        values = snapshot.series.get(series, {})
        for metric, kept in by_metric.items():
            value = usable(values.get(metric))
            if value is not None:
                kept.append(value)
                del kept[:-keep]
