"""Steering a canary by hand: start it, step its weight, promote or abort it, scale stable.

Each one plans first (what will change), confirms, then applies through the deploy target.
The monitored canary (rules, rollback) is services/canary.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from services.core.actions import Param, action, confirm_step
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.ports import Abort, Change, Promote, Scale, SetWeight, StartCanary
from services.release.deploy import DRY_RUN, deploy_steps, image_reference, plan_step, resolve_step

if TYPE_CHECKING:
    from services.core.container import Services


WEIGHT = Param("weight", "its share of traffic, in percent", from_config="canary.weight_percent")
WEIGHTS = Param("weights", "the weights in order, comma-separated", "10,25,50,100")
PAUSE_S = Param("pause_s", "seconds to hold each weight before the next", "60")


def _operation(services: Services, env: str, kind: str, title: str, params: dict[str, Any],
               change: Change | Callable[[StepContext], Change], apply: list[Step], what: str) -> Operation:
    """Plan, then (unless a dry run) confirm and apply. `change` may be worked out from earlier steps."""
    steps = [plan_step(services, env, change if callable(change) else lambda ctx: change)]
    if not params.get("dry_run"):
        steps += [confirm_step(services, env, what), *apply]
    return Operation(kind, env, title, steps, params, takes_lock=not params.get("dry_run"))


def _weight(value: Any) -> int:
    """Bad input is a ValueError: refused before the operation starts."""
    try:
        weight = int(str(value).strip().rstrip("%"))
    except ValueError:
        raise ValueError(f"a weight is a whole percentage 0-100, got {value!r} (e.g. --weights 10,25,50,100)") \
            from None
    if not 0 <= weight <= 100:
        raise ValueError(f"a weight is a percentage 0-100, got {weight} (e.g. --weights 10,25,50,100)")
    return weight


def _canary(services: Services, env: str) -> str:
    status = services.target(env).status()
    if not status.canary_image:
        raise StepFailed(f"{env} has no canary running", ("start one: release-console canary start --version TAG",))
    return status.canary_image


@action("canary-start", "Start a canary beside stable at the configured weight", confirm_before="apply", params=(
    Param("version", "the tag to run as the canary (or a full image reference)", required=True, example="1.5.0"),
    WEIGHT, DRY_RUN))
def canary_start(services: Services, env: str, params: dict[str, Any]) -> Operation:
    image = image_reference(services, str(params.get("version") or ""))
    weight = _weight(WEIGHT.value(params, services.config))

    def start(ctx: StepContext) -> str:  # the digest the resolve step found, whatever the tag says now
        services.target(env).start_canary(ctx.state["image"], weight, ctx.log)
        return f"canary {ctx.state['image']} takes {weight}% of traffic"

    operation = _operation(services, env, "canary-start", f"Start canary {image} in {env}", params,
                           lambda ctx: StartCanary(ctx.state["image"], weight),
                           [Step("apply", "Start the canary", start)],
                           f"Start canary {image} at {weight}%")
    operation.steps.insert(0, resolve_step(services, lambda ctx: image))
    return operation


@action("step", "Step the canary's weight (e.g. 10, 25, 50, 100) with pauses", confirm_before="apply", params=(
    WEIGHTS, PAUSE_S, DRY_RUN))
def step(services: Services, env: str, params: dict[str, Any]) -> Operation:
    weights = [_weight(w) for w in WEIGHTS.value(params, services.config).split(",") if w.strip()]
    try:
        pause = float(PAUSE_S.value(params, services.config))
    except ValueError:
        raise ValueError(f"pause_s must be a number of seconds, got {params.get('pause_s')!r}") from None
    if not weights:
        raise ValueError("no weights given (e.g. --weights 10,25,50,100)")

    def run(ctx: StepContext) -> str:
        _canary(services, env)
        for i, weight in enumerate(weights, 1):
            services.target(env).set_weight(weight, ctx.log)
            ctx.progress(i, len(weights), "weights")
            if i < len(weights):
                ctx.log(f"holding {weight}% for {pause:g}s")
                ctx.sleep(services.real_seconds(pause))
        return f"canary at {weights[-1]}%"

    return _operation(services, env, "step", f"Step the canary in {env}: {' → '.join(map(str, weights))}%", params,
                      SetWeight(weights[0]), [Step("apply", f"Set weights {', '.join(map(str, weights))}", run)],
                      f"Step the canary's weight through {', '.join(map(str, weights))}%")


@action("promote", "Promote the canary to stable", confirm_before="apply", params=(DRY_RUN,))
def promote(services: Services, env: str, params: dict[str, Any]) -> Operation:
    def apply(ctx: StepContext) -> str:
        ctx.state["image"] = _canary(services, env)
        services.target(env).promote(ctx.log)
        return f"{ctx.state['image']} is stable; canary removed"

    steps = deploy_steps(services, env, "promote")
    steps[0] = Step("apply", "Promote: the canary's image becomes stable", apply)
    return _operation(services, env, "promote", f"Promote the canary in {env}", params, Promote(), steps,
                      "Promote the canary to stable")


@action("abort", "Abort the canary (weight 0, scale to 0)", destructive=True, params=(DRY_RUN,))
def abort(services: Services, env: str, params: dict[str, Any]) -> Operation:
    def apply(ctx: StepContext) -> str:
        services.target(env).abort(ctx.log)
        return "canary aborted: weight 0, scaled to 0"

    operation = _operation(services, env, "abort", f"Abort the canary in {env}", params, Abort(),
                           [Step("apply", "Abort", apply)], "Abort the canary")
    operation.takes_lock = False  # an abort must never wait behind the release it is stopping
    return operation


@action("scale", "Scale stable to a number of replicas", confirm_before="apply", params=(
    Param("replicas", "how many stable replicas", required=True), DRY_RUN))
def scale(services: Services, env: str, params: dict[str, Any]) -> Operation:
    try:
        replicas = int(params.get("replicas") or "")
    except ValueError:
        raise ValueError(f"replicas must be a whole number, got {params.get('replicas')!r}") from None
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas} (to stop the app, abort or restore)")

    def apply(ctx: StepContext) -> str:
        services.target(env).scale(replicas, ctx.log)
        return f"stable at {replicas} replicas"

    return _operation(services, env, "scale", f"Scale {env} to {replicas}", params, Scale(replicas),
                      [Step("apply", "Scale", apply)], f"Scale stable to {replicas} replicas")
