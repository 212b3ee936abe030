"""The monitored canary, as the strategy runs it and beyond.

`canary` starts a canary at the configured weight, takes a baseline, checks every interval for
the configured duration and then promotes it, unless a rule rolls it back first. `canary-watch`
does the monitoring alone, for a canary already running (a CI job gates on its exit code).
As dry runs, `canary` stops after the image lookup, the query check and the plan (nothing starts),
and `canary-watch` watches with every rule in observe mode (nothing is rolled back, scaled or asked).

Each rule has an automation mode: observe (log the verdict), ask (a question with a countdown
and a default) or act. The decision trace keeps every verdict with its query, value, threshold
and mode; it is journaled, so it survives a crash, and exported as an incident timeline.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from services.canary.monitor import CHARTED, Check, TraceEntry, add_samples, evaluate, new_samples, usable
from services.core.actions import Param, action, confirm_step
from services.core.config import CanaryPolicy, CanaryStep, check_ladder, duration_s, shown_duration
from services.core.events import CanaryStepChanged, CheckScheduled, VerdictLogged
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.ports import Notification, StartCanary
from services.core.references import version_of
from services.release.deploy import DRY_RUN, deploy_steps, image_reference, plan_step, resolve_step

if TYPE_CHECKING:
    from services.core.container import Services


class RolledBack(StepFailed):
    pass


def _weights(value: str) -> list[int]:
    try:
        weights = [int(w.strip().rstrip("%")) for w in value.split(",") if w.strip()]
    except ValueError:
        raise ValueError(f"--steps takes whole percentages, comma-separated, e.g. 10,25,50; got {value!r}") from None
    if not weights:
        raise ValueError("--steps needs at least one weight, e.g. 10,25,50")
    check_ladder(weights)
    return weights


STEPS = Param("steps", "the canary's weights in order, comma-separated: each held for its pause and analysed",
              check=_weights, default_is="[canary] steps, else canary.weight_percent", example="10,25,50")
PAUSE = Param("pause", "how long each step holds while it is checked (30s, 5m, 1h)", check=duration_s,
              default_is="each step's pause in [canary] steps, else canary.duration_s", example="5m")


def ladder(policy: CanaryPolicy, params: dict[str, Any]) -> list[CanaryStep]:
    """The steps a canary runs through: --steps and --pause over [canary] steps over the single step.
    Bad input is a ValueError, refused before the operation starts."""
    steps, pause = str(params.get("steps") or "").strip(), str(params.get("pause") or "").strip()
    configured = policy.ladder
    if not steps and not pause:
        return configured
    if not steps:  # the configured weights, each held for --pause
        return [CanaryStep(weight=step.weight, pause=duration_s(pause)) for step in configured]
    weights = _weights(steps)
    if pause:
        return [CanaryStep(weight=weight, pause=duration_s(pause)) for weight in weights]
    # --steps alone: the configured pauses in order, the last one for any further step.
    return [CanaryStep(weight=weight, pause=configured[min(i, len(configured) - 1)].pause)
            for i, weight in enumerate(weights)]


def _ladder_fits(policy: CanaryPolicy, steps: list[CanaryStep]) -> None:
    for number, step in enumerate(steps, 1):
        if step.pause < policy.check_interval_s:
            raise ValueError(f"step {number} ({step.weight}%) pauses {shown_duration(step.pause)}, less than"
                             f" canary.check_interval_s ({policy.check_interval_s}s): it would never be checked")


@action("canary", "Run a canary: start, baseline, monitor, then promote or roll back", confirm_before="start",
        params=(Param("version", "the tag to run as the canary (or a full image reference)", required=True),
                STEPS, PAUSE, DRY_RUN))
def canary(services: Services, env: str, params: dict[str, Any]) -> Operation:
    policy = services.config.canary
    image = image_reference(services, str(params.get("version") or ""))
    steps = ladder(policy, params)
    _ladder_fits(policy, steps)
    first = steps[0].weight
    checked = [resolve_step(services, lambda ctx: image), _validate_step(services, env),
               plan_step(services, env, lambda ctx: StartCanary(ctx.state["image"], first))]
    if params.get("dry_run"):  # the image found, the queries checked, the plan shown: nothing started
        return Operation("canary", env, f"Plan canary {image} in {env}", checked, params, takes_lock=False)

    def start(ctx: StepContext) -> str:  # pinned by the resolve step: a tag pushed again meanwhile changes nothing
        ctx.state["ladder"] = [step.model_dump() for step in steps]  # a resume runs the same steps
        services.target(env).start_canary(ctx.state["image"], first, ctx.log)
        return f"{ctx.state['image']} takes {first}% of traffic"

    def promote(ctx: StepContext) -> str:  # the canary's own pinned image becomes stable (ctx.state["image"])
        services.target(env).promote(ctx.log)
        _notify(services, env, ctx, image, "canary promoted", "info", "monitor.promote")
        return f"{image} is stable; canary removed"

    promoting = deploy_steps(services, env, "promote")
    promoting[0] = Step("apply", "Promote", promote)
    return Operation("canary", env, f"Canary {image} in {env}", [
        *checked,
        Step("start", "Start the canary", start),
        *_monitor_steps(services, env, image, steps=steps),
        confirm_step(services, env, "Promote the canary to stable", step_id="confirm-promote"),
        *promoting,
    ], params)


@action("canary-watch", "Watch the running canary: the same checks, rolling back by the rules", params=(
    Param("dry_run", "every rule observes only: log what it would do; roll back, scale and ask nothing", switch=True),))
def canary_watch(services: Services, env: str, params: dict[str, Any]) -> Operation:
    observe_only = bool(params.get("dry_run"))
    title = f"Watch the canary in {env}" + (" (dry run: observe only)" if observe_only else "")
    return Operation("canary-watch", env, title, [
        Step("find", "Find the running canary", lambda ctx: _find_canary(services, env, ctx)),
        _validate_step(services, env),
        *_monitor_steps(services, env, None, observe_only),
    ], params, takes_lock=not observe_only)


def _find_canary(services: Services, env: str, ctx: StepContext) -> str:
    """The canary running now; journaled, so a resume watches the same one."""
    status = services.target(env).status()
    if not status.canary_image:
        raise StepFailed(f"{env} has no canary running", ("start one: release-console canary start --version TAG",))
    ctx.state["image"] = status.canary_image
    return f"{status.canary_image} at {status.canary_weight}%"


def _validate_step(services: Services, env: str) -> Step:
    """A query with a typo fails here, before the canary takes any traffic."""

    def run(ctx: StepContext) -> str:
        source = services.metrics(env)
        problems = source.validate()
        for problem in problems:
            ctx.log(problem, "error")
        if problems:
            raise StepFailed(f"{len(problems)} metrics quer{'y' if len(problems) == 1 else 'ies'} would not work:"
                             f" {problems[0]}", ("fix the queries in [metrics] of release.toml, then retry",))
        return source.describe()

    return Step("validate", "Check the metrics queries", run)


def _monitor_steps(services: Services, env: str, image: str | None, observe_only: bool = False,
                   steps: list[CanaryStep] | None = None) -> list[Step]:
    """Baseline, then the checks. `image`: the canary's, or None to read it from ctx.state["image"].

    `steps`: the canary's ladder (each weight held for its pause, analysed, and passed before the
    next); None watches a running canary at its weight for duration_s, as `canary-watch` does.
    `observe_only` (a dry run): every rule in observe mode, whatever release.toml says, so the trace
    and the log say what each would do, and nothing is rolled back, scaled or asked.
    """
    policy, settings = services.config.canary, services.config.metrics
    if observe_only:
        policy = policy.model_copy(update={"automation": dict.fromkeys(policy.automation, "observe")})

    def baseline(ctx: StepContext) -> str:
        """Stable's values now: what the rules compare the canary with. Missing values wait a check."""
        source = services.metrics(env)
        for attempt in range(1, settings.misses_before_asking + 1):
            snapshot = source.sample()
            stable = {m: usable(snapshot.series.get("stable", {}).get(m)) for m in CHARTED}
            missing = [m for m, v in stable.items() if v is None]
            if not missing:
                ctx.state["baseline"] = stable
                return ", ".join(f"{m} {v:.4g}" for m, v in stable.items() if v is not None)
            reasons = "; ".join(f"{m}: {snapshot.problems.get(f'stable.{m}', 'no data')}" for m in missing)
            ctx.log(f"no baseline yet ({attempt}/{settings.misses_before_asking}): {reasons}", "warning")
            if attempt < settings.misses_before_asking:
                ctx.sleep(services.real_seconds(policy.check_interval_s))
        raise StepFailed("no baseline: stable has no data for " + ", ".join(missing),
                         ("check the metrics source and its queries", "abort the canary"))

    def monitor(ctx: StepContext) -> str:
        source = services.metrics(env)
        watched = image or str(ctx.state.get("image", ""))
        if not services.target(env).status().canary_image:  # a resume, after someone aborted or promoted it
            raise StepFailed(f"{env} has no canary running any more: nothing to watch",
                             ("see the environments pane and the audit log for who changed it",))
        journaled = ctx.state.get("ladder")
        run = [CanaryStep(**step) for step in journaled] if journaled else steps
        watching = run is None  # canary-watch: the running canary's weight, for duration_s, no steps
        plan = run or [CanaryStep(weight=max(1, policy.weight_percent), pause=policy.duration_s)]
        counts = [max(1, step.pause // policy.check_interval_s) for step in plan]
        checks = sum(counts)
        samples = ctx.state.setdefault("samples", new_samples())
        misses, last_scale = 0, -policy.scale_cooldown_checks
        # A resume goes on from the last check, in the journaled step; a step whose pause ran out without
        # a pass (not enough data, the judge) is checked again for a whole pause, never skipped.
        number, index = ctx.state.get("checks_done", 0), ctx.state.get("step", 0)
        in_step = ctx.state.get("step_checks", 0)
        if in_step >= counts[index]:
            in_step = 0
        _enter_step(services, env, ctx, plan, index, resumed=number > 0, set_weight=len(plan) > 1)
        ctx.state["step_checks"] = in_step
        while True:
            number, in_step = number + 1, in_step + 1
            interval = services.real_seconds(policy.check_interval_s)
            ctx.emit(CheckScheduled(ctx.op_id, number, max(checks, number), time.time() + interval))
            ctx.sleep(interval)
            snapshot = source.sample()
            add_samples(samples, snapshot, settings.judge_samples)
            weight = (services.target(env).status().canary_weight or policy.weight_percent) if watching \
                else plan[index].weight
            check = evaluate(number, snapshot, ctx.state["baseline"], samples, policy, settings, weight,
                             source.query_for)
            ctx.state["step_checks"] = in_step
            _show(ctx, check, snapshot.series, ctx.state["baseline"])
            ctx.progress(min(number, checks), checks, "checks")
            ctx.checkpoint()
            misses = misses + 1 if check.missing else 0
            if misses >= settings.misses_before_asking:
                misses = 0
                _decide_stale(services, env, ctx, watched, number, ask=not observe_only)
            for entry in check.entries:  # a rule back to normal may be asked about again
                if not entry.bad and entry.rule in ctx.state.get("declined", []):
                    ctx.state["declined"].remove(entry.rule)
            _decide_rollback(services, env, ctx, watched, check)
            if check.calls_for("scale-up") and number - last_scale >= policy.scale_cooldown_checks:
                if _scale_up(services, env, ctx, watched, check):
                    last_scale = number
            if in_step < counts[index]:
                continue
            # The end of the step's pause: it goes on only on a pass; otherwise it stops here.
            last = index == len(plan) - 1
            passed = _final(services, ctx, check, counts[index], observe_only,
                            _step_name(plan, index) if len(plan) > 1 else "", last)
            if len(plan) == 1:
                return passed
            _ladder_event(ctx, plan, index, "passed")
            ctx.log(f"{_step_name(plan, index)} passed: {passed}")
            if last:
                return f"{len(plan)} steps passed ({' → '.join(f'{s.weight}%' for s in plan)}); last: {passed}"
            index, in_step = index + 1, 0
            samples = ctx.state["samples"] = new_samples()  # each step is judged on its own data
            _enter_step(services, env, ctx, plan, index, resumed=False, set_weight=True)

    title = (f"Monitor every {policy.check_interval_s}s for {policy.duration_s // 60}m" if not steps or len(steps) < 2
             else f"Steps {', '.join(s.describe() for s in steps)}, checked every {policy.check_interval_s}s")
    return [Step("baseline", "Take the baseline (stable, now)", baseline), Step("monitor", title, monitor)]


def _step_name(plan: list[CanaryStep], index: int) -> str:
    return f"step {index + 1}/{len(plan)} ({plan[index].weight}%)"


def _ladder_event(ctx: StepContext, plan: list[CanaryStep], index: int, status: str) -> None:
    """Where the canary is on its ladder, for the pane; the journaled step is ctx.state["step"]."""
    if len(plan) > 1:
        ctx.emit(CanaryStepChanged(ctx.op_id, tuple(step.weight for step in plan), index, status))


def _enter_step(services: Services, env: str, ctx: StepContext, plan: list[CanaryStep], index: int,
                resumed: bool, set_weight: bool) -> None:
    """The step's weight set (again, on a resume: someone may have moved it), journaled, and shown."""
    step = plan[index]
    if set_weight:
        if not services.target(env).status().canary_image:  # aborted from elsewhere meanwhile
            raise StepFailed(f"{env} has no canary running any more: {_step_name(plan, index)} not started",
                             ("see the environments pane and the audit log for who changed it",))
        services.target(env).set_weight(step.weight, ctx.log)
        ctx.log(f"{'resumed at' if resumed else 'now at'} {_step_name(plan, index)}: holding for"
                f" {shown_duration(step.pause)}, checked every {services.config.canary.check_interval_s}s")
    ctx.state["step"], ctx.state["step_checks"] = index, 0
    ctx.checkpoint()
    _ladder_event(ctx, plan, index, "running")


def _show(ctx: StepContext, check: Check, series: Any, baseline: dict[str, float]) -> None:
    """Charts, the trace (journaled at once, entry by entry), and a line per verdict."""
    verdicts = [entry.to_json() for entry in check.entries]
    ctx.append(verdicts)
    ctx.state["checks_done"] = check.number
    for verdict in verdicts:
        ctx.emit(VerdictLogged(ctx.op_id, verdict))
    for metric in CHARTED:
        threshold = next((e.threshold for e in check.entries if e.rule == metric), None)
        for name, values in series.items():
            value = usable(values.get(metric))
            ctx.metric(metric, name, float("nan") if value is None else value, threshold)
        if baseline.get(metric) is not None:
            ctx.metric(metric, "baseline", baseline[metric])
    bad = [e.rule for e in check.entries if e.bad or e.value is None]
    ctx.log(f"check {check.number}: " + (f"attention: {', '.join(bad)}" if bad else "all ok"))
    for entry in check.entries:
        ctx.log(f"  {entry.line()}", "warning" if entry.bad or entry.value is None else "info")


def _wants(services: Services, ctx: StepContext, entry: TraceEntry, what: str) -> bool:
    """The rule's automation mode: observe logs only, ask asks with a countdown, act acts."""
    policy = services.config.canary
    if entry.mode == "observe":
        ctx.log(f"observe only: {entry.rule} would {what}", "warning")
        ctx.state.setdefault("would", {}).setdefault(what, entry.check)  # the first check that called for it
        return False
    if entry.mode == "ask":
        declined = ctx.state.setdefault("declined", [])
        if entry.rule in declined:  # asked already: not again until the rule is back to normal
            ctx.log(f"{entry.rule} would {what}; you said no earlier", "warning")
            return False
        if ctx.ask(f"{entry.line()}\n{what.capitalize()} now?", policy.ask_timeout_s, policy.ask_default == "act"):
            return True
        declined.append(entry.rule)
        ctx.log(f"{entry.rule}: you chose not to {what}", "warning")
        return False
    return True


def _decide_rollback(services: Services, env: str, ctx: StepContext, image: str, check: Check) -> None:
    for entry in check.calls_for("rollback"):
        if _wants(services, ctx, entry, "roll back"):
            _roll_back(services, env, ctx, image, entry.line())


def _decide_stale(services: Services, env: str, ctx: StepContext, image: str, number: int, ask: bool = True) -> None:
    settings, policy = services.config.metrics, services.config.canary
    ctx.log(f"no fresh canary data for {settings.misses_before_asking} checks: stale, never counted healthy",
            "warning")
    if not ask:
        ctx.log("observe only: would ask whether to roll back", "warning")
        ctx.state.setdefault("would", {}).setdefault("ask whether to roll back (stale data)", number)
        return
    prompt = (f"No fresh canary data for {settings.misses_before_asking} checks (the charts show stale values)."
              "\nRoll the canary back now? No keeps watching; it is never promoted on stale data.")
    if ctx.ask(prompt, policy.ask_timeout_s, policy.ask_default == "act"):
        _roll_back(services, env, ctx, image, f"no fresh data for {settings.misses_before_asking} checks")


def _roll_back(services: Services, env: str, ctx: StepContext, image: str, reason: str) -> None:
    ctx.state["decision"] = {"action": "rollback", "reason": reason, "at": time.time()}
    ctx.log(f"ROLLING BACK: {reason}", "error")
    services.target(env).abort(ctx.log)  # first: a failing webhook must never hold a rollback up
    _notify(services, env, ctx, image, f"automatic rollback: {reason}", "critical", "monitor.rollback")
    ladder = ctx.state.get("ladder") or []
    where = (f" in step {ctx.state.get('step', 0) + 1}/{len(ladder)} ({ladder[ctx.state.get('step', 0)]['weight']}%)"
             if len(ladder) > 1 else "")
    if where:
        ctx.emit(CanaryStepChanged(ctx.op_id, tuple(s["weight"] for s in ladder), ctx.state.get("step", 0),
                                   "rolled back"))
    raise RolledBack(f"rolled back at check {ctx.state['checks_done']}{where}: {reason}",
                     ("read the decision trace: release-console canary trace --op " + ctx.op_id,
                      "deploy a fix, then start a new canary"))


def _scale_up(services: Services, env: str, ctx: StepContext, image: str, check: Check) -> bool:
    entry = check.calls_for("scale-up")[0]
    if not _wants(services, ctx, entry, "scale up"):
        return False
    replicas = services.target(env).status().desired + services.config.canary.scale_step
    services.target(env).scale(replicas, ctx.log)
    _notify(services, env, ctx, image, f"scaled up to {replicas}: {entry.line()}", "warning", "monitor.scale_up")
    return True


def _final(services: Services, ctx: StepContext, check: Check, checks: int, observe_only: bool = False,
           step: str = "", last: bool = True) -> str:
    """At the end of a step's pause (or the watch): it goes on only on fresh data, and on enough of it
    for the judge. `step` names a progressive canary's step ("step 2/3 (25%)"), which stops there.

    A dry run (`observe_only`) ends by saying what the rules would have done, and when.
    """
    stopped = f"stopped at {step}: " if step else ""
    held = "not promoted" if last else "not advanced"
    resume = ("resume to check this step again (journal resume), promote or abort the canary",) if step else ()
    if check.missing:
        raise StepFailed(f"{stopped}{held}: the last check (of {checks}) had no fresh canary data",
                         ("check the metrics source", "watch again, or abort the canary", *resume))
    judged = check.judged
    assert judged is not None
    if judged.outcome == "nodata":  # never a pass, whatever the judge's mode
        raise StepFailed(f"{stopped}{held}: not enough data: {judged.describe()}",
                         ("watch longer for more samples (a longer pause)", "or abort the canary", *resume))
    entry = next(e for e in check.entries if e.rule == "judge")
    if judged.outcome != "pass" and _wants(services, ctx, entry, f"hold the promotion ({judged.outcome})"):
        raise StepFailed(f"{stopped}{held}: the judge says {judged.describe()}",
                         ("read the decision trace", "watch longer, or abort the canary", *resume))
    if observe_only:
        would = "; ".join(f"{what} at check {number}" for what, number in ctx.state.get("would", {}).items())
        return (f"dry run, nothing acted on: {checks} checks; "
                f"{'the rules would ' + would if would else 'no rule called for anything'}; judge {judged.describe()}")
    return f"{checks} checks passed; judge {judged.describe()}"


def _notify(services: Services, env: str, ctx: StepContext, image: str, reason: str, severity: str,
            event: str) -> None:
    """Tell the team (routed and sent in the background); a notifier that refuses is logged, and never
    stops what it reports."""
    try:
        services.notifier.notify(Notification(env, version_of(image), reason, severity, event, "canary", ctx.op_id))
        ctx.log(f"team notified: {reason}")
    except Exception as err:  # noqa: BLE001 - the action happened; say the notice did not go out
        ctx.log(f"could not notify the team ({err}): {reason}", "error")
