"""The post-deploy monitor: every deploy, release, pipeline deploy and rollback is watched.

`attach` adds two steps to such an operation (services/catalog.py calls it for every operation it
builds): `baseline`, right before the switch, reads the previous version's metrics and notes the
revision to go back to; `monitor`, after the health check, checks the new version every
`[monitor] check_interval_s` for `duration_s` (each the canary's by default) with the canary's
rules and judge (services/canary/monitor.py), the previous version's baseline standing where the
canary's stable would:

- error rate over 1.5x or p95 over 2x the baseline (or the judge failing): roll back to the
  previous revision, audited (`act`), ask with the canary's countdown and default (`ask`), or log
  what it would do (`observe`);
- CPU over 80 % or memory over 85 %: scale up, with the canary's cooldown.

Both steps journal what they learn in ctx.state (the baseline, the previous revision, the samples,
the checks done) and the trace entry by entry, so a resume after an SSH drop goes on from the last
check; ctrl+x cancels the wait between checks. A rollback ends the operation with RolledBack: the
CLI exits 5. `[monitor] after_deploy = "off"` attaches nothing, nor does an environment without a metrics source.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from services.canary.monitor import CHARTED, Check, add_samples, evaluate, new_samples, usable
from services.canary.rollout import RolledBack, _notify, _scale_up, _show, _wants
from services.core.events import CheckScheduled
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.ports import MetricSnapshot
from services.core.references import version_of
from services.release.deploy import pinned_revision, record_revision

if TYPE_CHECKING:
    from services.core.container import Services

MONITORED = ("deploy", "release", "rollback")  # the operations whose switch is watched
SWITCH_STEPS = ("apply", "deploy")  # the step that switches traffic: deploy's and rollback's apply, the release's
TITLE = "post-deploy monitor"


def attach(services: Services, env: str, operation: Operation) -> Operation:
    """The operation with the monitor's steps around its switch; unchanged when it switches nothing
    (a dry run), is not a deploy, or `[monitor] after_deploy` is off."""
    if operation.kind not in MONITORED or services.config.monitor.after_deploy == "off":
        return operation
    ids = [step.id for step in operation.steps]
    switch = next((ids.index(name) for name in SWITCH_STEPS if name in ids), None)
    if switch is None or "monitor" in ids or not _has_metrics(services, env):
        return operation
    policy = services.config.monitor_policy()
    operation.steps[switch:switch] = [Step("baseline", "Take the baseline (the previous version, before the switch)",
                                           lambda ctx: _baseline(services, env, ctx))]
    operation.steps.append(Step("monitor", f"Post-deploy monitor: every {policy.check_interval_s}s for"
                                           f" {_span(policy.duration_s)} ({services.config.monitor.after_deploy})",
                                lambda ctx: _monitor(services, env, ctx)))
    return operation


def _has_metrics(services: Services, env: str) -> bool:
    """Without a metrics source (no prometheus_url, no scrape URLs) there is nothing to watch with."""
    try:
        services.metrics(env)
    except StepFailed:
        return False
    return True


def _span(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds}s"


def _baseline(services: Services, env: str, ctx: StepContext) -> str:
    """What runs now (the revision to roll back to) and its metrics: what the new version is held to.

    Missing metrics do not hold the deploy up: the monitor then says it watched nothing, and why.
    The metrics are read while the history and the registry are asked: the step is on the deploy's path."""
    try:
        source = services.metrics(env)
    except StepFailed as err:  # no metrics source configured: the deploy goes on, said to be unwatched
        ctx.log(f"{err}: the new version will not be watched ([monitor] after_deploy = \"off\" says so quietly)",
                "warning")
        ctx.state["monitor_unwatched"] = "no metrics source"
        return "no metrics source: not watched"
    with ThreadPoolExecutor(1, thread_name_prefix="baseline") as pool:
        sampling = pool.submit(source.sample)
        _previous(services, env, ctx)
        snapshot = sampling.result()
    values = {m: usable(snapshot.series.get("stable", {}).get(m)) for m in CHARTED}
    missing = [m for m in ("error_rate", "p95_ms") if values[m] is None]
    if missing:
        reasons = "; ".join(f"{m}: {snapshot.problems.get(f'stable.{m}', 'no data')}" for m in missing)
        ctx.log(f"no baseline for {', '.join(missing)} ({reasons}): the new version will not be watched", "warning")
        ctx.state["monitor_unwatched"] = f"no baseline for {', '.join(missing)}"
        return f"no baseline: {reasons}"
    ctx.state["baseline"] = {m: v for m, v in values.items() if v is not None}
    back = ctx.state.get("monitor_previous")
    shown = ", ".join(f"{m} {v:.4g}" for m, v in ctx.state["baseline"].items())
    return shown + (f"; rolls back to revision {back['revision']}" if back else "")


def _previous(services: Services, env: str, ctx: StepContext) -> None:
    """The revision running now, pinned to its digest (checked in the registry now, not at the rollback)."""
    history = services.revisions(env).list()
    if not history:
        ctx.log("no earlier revision: the monitor can watch, not roll back", "warning")
        return
    try:
        image = pinned_revision(services, env, history, history[-1])
        ctx.state["monitor_previous"] = {"revision": history[-1].number, "image": image}
    except StepFailed as err:
        ctx.log(f"the monitor cannot roll back to revision {history[-1].number}: {err}", "warning")


def _new_version(snapshot: MetricSnapshot) -> MetricSnapshot:
    """After the switch every request is the new version's (the stable series): it stands where the
    canary would, and in the stable series too, for the scale rules."""
    new = snapshot.series.get("stable", {})
    problems = {f"canary.{key.split('.', 1)[1]}": why for key, why in snapshot.problems.items()
                if key.startswith("stable.")}
    return MetricSnapshot(snapshot.at, {"canary": new, "stable": new}, {**snapshot.problems, **problems})


def _post_deploy(check: Check) -> Check:
    """The canary's verdicts as the monitor's: no traffic split to check, the new version by name."""
    judge_query = "Mann-Whitney U, the new version vs the previous one's baseline"
    entries = [replace(e, series="new" if e.series == "canary" else e.series,
                       query=judge_query if e.rule == "judge" else e.query)
               for e in check.entries if e.rule != "traffic_share"]
    return Check(check.number, entries, check.judged)


def _monitor(services: Services, env: str, ctx: StepContext) -> str:
    if unwatched := ctx.state.get("monitor_unwatched"):
        return f"not watched: {unwatched}"
    policy, settings = services.config.monitor_policy(), services.config.metrics
    checks = policy.duration_s // policy.check_interval_s
    image = str(ctx.state.get("image", ""))
    source = services.metrics(env)
    baseline = ctx.state["baseline"]
    samples = ctx.state.setdefault("samples", new_samples())
    for metric, value in baseline.items():  # the previous version's: what the judge compares the new with
        if not samples["stable"][metric]:
            samples["stable"][metric].append(value)
    misses, check = 0, None
    for number in range(ctx.state.get("checks_done", 0) + 1, checks + 1):  # a resume goes on from the last
        interval = services.real_seconds(policy.check_interval_s)
        ctx.emit(CheckScheduled(ctx.op_id, number, checks, time.time() + interval))
        ctx.sleep(interval)
        snapshot = _new_version(source.sample())
        add_samples(samples, MetricSnapshot(snapshot.at, {"canary": snapshot.series["canary"]}),
                    settings.judge_samples)
        check = _post_deploy(evaluate(number, snapshot, baseline, samples, policy, settings, 100,
                                      lambda series, metric: source.query_for("stable", metric)))
        _show(ctx, check, {"canary": snapshot.series["canary"]}, baseline)
        ctx.progress(number, checks, "checks")
        ctx.checkpoint()
        misses = misses + 1 if check.missing else 0
        if misses >= settings.misses_before_asking:
            misses = 0
            _stale(services, env, ctx, image)
        for entry in check.entries:  # a rule back to normal may be asked about again
            if not entry.bad and entry.rule in ctx.state.get("declined", []):
                ctx.state["declined"].remove(entry.rule)
        for entry in check.calls_for("rollback"):
            if _wants(services, ctx, entry, "roll back"):
                _roll_back(services, env, ctx, image, entry.line())
        last_scale = ctx.state.get("last_scale", -policy.scale_cooldown_checks)
        if check.calls_for("scale-up") and number - last_scale >= policy.scale_cooldown_checks:
            if _scale_up(services, env, ctx, image, check):
                ctx.state["last_scale"] = number
    if check is not None and check.missing:
        raise StepFailed(f"the monitor's last check (of {checks}) had no fresh data: {version_of(image)} was"
                         " not shown healthy", ("check the metrics source", "watch it: release-console canary"
                                                " watch is for canaries; redeploy to watch again"))
    would = "; ".join(f"{what} at check {n}" for what, n in ctx.state.get("would", {}).items())
    judge = next((e for e in check.entries if e.rule == "judge"), None) if check is not None else None
    judged = judge.note if judge is not None else "not run"
    summary = (f"{checks} checks passed" + (f" (observe only: the rules would {would})" if would else "")
               + f"; judge {judged}")
    _notify(services, env, ctx, image, f"{TITLE} passed: {summary}", "info", "monitor.passed")
    return summary


def _stale(services: Services, env: str, ctx: StepContext, image: str) -> None:
    """Fresh data missing for a while: never counted healthy; the operator is asked (observe: logged)."""
    misses, policy = services.config.metrics.misses_before_asking, services.config.monitor_policy()
    ctx.log(f"no fresh data for {misses} checks: stale, never counted healthy", "warning")
    prompt = f"No fresh data on {version_of(image)} for {misses} checks.\nRoll back to the previous revision now?"
    if services.config.monitor.after_deploy == "observe":
        would = ctx.state.setdefault("would", {})
        would.setdefault("ask whether to roll back (stale data)", ctx.state.get("checks_done", 0))
    elif ctx.ask(prompt + " No keeps watching.", policy.ask_timeout_s, policy.ask_default == "act"):
        _roll_back(services, env, ctx, image, f"no fresh data for {misses} checks")


def _roll_back(services: Services, env: str, ctx: StepContext, image: str, reason: str) -> None:
    """Back to the revision that ran before the switch, recorded and audited; then RolledBack (exit 5)."""
    previous: dict[str, Any] | None = ctx.state.get("monitor_previous")
    ctx.state["decision"] = {"action": "rollback", "reason": reason, "at": time.time()}
    checks = ctx.state.get("checks_done", 0)
    if previous is None:
        _notify(services, env, ctx, image, f"{TITLE}: would roll back ({reason}) but has no revision to go to",
                "critical", "monitor.rollback")
        raise StepFailed(f"the monitor would roll back at check {checks} ({reason}), but there is no earlier"
                         " revision it can run", ("deploy a fixed version", "or roll back by hand to a revision"
                                                  " whose image the registry still has"))
    ctx.log(f"ROLLING BACK to revision {previous['revision']} ({version_of(previous['image'])}): {reason}", "error")
    started = time.time()
    services.target(env).deploy(previous["image"], ctx.log)
    revision = record_revision(services, env, ctx, previous["image"], "rollback")
    services.audit.append(env, "monitor-rollback", {"op_id": ctx.op_id, "from": version_of(image),
                                                    "to_revision": previous["revision"], "reason": reason},
                          f"rolled back: revision {revision.number} runs {version_of(previous['image'])}")
    ctx.state["decision"]["rolled_back_in_s"] = round(time.time() - started, 3)
    _notify(services, env, ctx, image, f"{TITLE}: automatic rollback to revision {previous['revision']}: {reason}",
            "critical", "monitor.rollback")
    raise RolledBack(f"rolled back at check {checks}: {reason}",
                     (f"read the decision trace: release-console canary trace --op {ctx.op_id}",
                      "deploy a fix; the monitor watches it too"))
