"""The canary: start at the configured weight, take a baseline, check every interval, and
roll back or scale up by the strategy's rules. Every check shows value beside threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.catalog import action, confirm_step
from services.config import CanaryPolicy
from services.deploy import record_revision
from services.operations import Operation, Step, StepContext, StepFailed
from services.ports import Notification

if TYPE_CHECKING:
    from services.factory import Services


@dataclass(frozen=True)
class Verdict:
    metric: str
    value: float | None
    threshold: float
    breached: bool
    action: str  # rollback, scale-up, none

    def describe(self) -> str:
        shown = "no data" if self.value is None else f"{self.value:.4g}"
        mark = "BREACH" if self.breached else "ok"
        return f"{self.metric}: {shown} vs threshold {self.threshold:.4g} -> {mark}"


def judge(policy: CanaryPolicy, baseline: dict[str, float], canary: dict[str, float | None]) -> list[Verdict]:
    """The strategy's rules. Missing data is never healthy: it counts as a breach."""
    rules = [
        ("error_rate", baseline["error_rate"] * policy.error_rate_factor, "rollback"),
        ("p95_ms", baseline["p95_ms"] * policy.p95_factor, "rollback"),
        ("cpu_percent", policy.cpu_scale_up_percent, "scale-up"),
        ("memory_percent", policy.memory_scale_up_percent, "scale-up"),
    ]
    verdicts = []
    for metric, threshold, consequence in rules:
        value = canary.get(metric)
        breached = value is None or value != value or value > threshold  # None or NaN: not healthy
        verdicts.append(Verdict(metric, value, threshold, breached, consequence if breached else "none"))
    return verdicts


@action("canary", "Start a canary and monitor it")
def canary(services: Services, env: str, params: dict[str, Any]) -> Operation:
    policy = services.config.canary
    target, metrics = services.target(env), services.metrics(env)
    image = f"{services.config.app.image}:{params.get('version', '1.5.0')}"
    checks = policy.duration_s // policy.check_interval_s

    def start(ctx: StepContext) -> str:
        target.start_canary(image, policy.weight_percent, ctx.log)
        return f"{policy.canary_replicas} canary beside {policy.stable_replicas} stable at {policy.weight_percent}%"

    def baseline(ctx: StepContext) -> str:
        sample = metrics.sample().series["stable"]
        ctx.state["baseline"] = {k: float(v) for k, v in sample.items() if v is not None}
        return ", ".join(f"{k} {v:.4g}" for k, v in ctx.state["baseline"].items())

    def monitor(ctx: StepContext) -> str:
        base = ctx.state["baseline"]
        for check in range(1, checks + 1):
            ctx.sleep(services.real_seconds(policy.check_interval_s))
            snapshot = metrics.sample()
            verdicts = judge(policy, base, dict(snapshot.series["canary"]))
            for verdict in verdicts:
                for series, values in snapshot.series.items():
                    value = values.get(verdict.metric)  # 0.0 is data; only None is a gap
                    ctx.metric(verdict.metric, series, float("nan") if value is None else value, verdict.threshold)
                ctx.metric(verdict.metric, "baseline", base[verdict.metric])
            ctx.progress(check, checks, "checks")
            breached = [v.metric for v in verdicts if v.breached]
            ctx.log(f"check {check}/{checks}: " + (f"BREACH {', '.join(breached)}" if breached else "all ok"))
            for verdict in verdicts:  # one line each: short enough for a narrow log pane
                ctx.log(f"  {verdict.describe()}")
            breach = next((v for v in verdicts if v.action == "rollback"), None)
            if breach:
                _notify(services, env, image, f"automatic rollback: {breach.describe()}", "critical")
                target.abort(ctx.log)
                raise StepFailed(f"rolled back at check {check}: {breach.describe()}",
                                 ("investigate the canary", "deploy a fix"))
            if any(v.action == "scale-up" for v in verdicts):
                replicas = target.status().desired + 1
                target.scale(replicas, ctx.log)
                _notify(services, env, image, f"scaled up to {replicas}", "warning")
        return f"{checks} checks passed"

    def promote(ctx: StepContext) -> str:
        target.promote(ctx.log)
        revision = record_revision(services, env, ctx, image, "promote")
        _notify(services, env, image, "canary promoted", "info")
        return f"promoted: revision {revision.number}"

    return Operation("canary", env, f"Canary {image} in {env}", [
        Step("start", "Start the canary", start),
        Step("baseline", "Take the baseline", baseline),
        Step("monitor", f"Monitor every {policy.check_interval_s}s for {policy.duration_s // 60}m", monitor),
        confirm_step(services, env, "Promote the canary to stable"),
        Step("promote", "Promote", promote),
    ], params)


def _notify(services: Services, env: str, image: str, reason: str, severity: str) -> None:
    services.notifier.notify(Notification(env, image.rsplit(":", 1)[-1], reason, severity))
