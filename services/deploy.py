"""Deploy and rollback through the environment's deploy target."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from services.catalog import action, confirm_step
from services.operations import Operation, Step, StepContext, StepFailed

if TYPE_CHECKING:
    from services.factory import Services


@action("rollback", "Roll back to the previous revision", destructive=True)
def rollback(services: Services, env: str, params: dict[str, Any]) -> Operation:
    target = services.target(env)

    def choose(ctx: StepContext) -> str:
        history = target.history()
        if len(history) < 2 and "revision" not in params:
            raise StepFailed(f"{env} has no earlier revision to roll back to", ("deploy a fixed version instead",))
        chosen = int(params.get("revision") or history[-2].number)
        match = next((r for r in history if r.number == chosen), None)
        if match is None:
            raise StepFailed(f"{env} has no revision {chosen}; known: {[r.number for r in history]}")
        ctx.state["revision"] = chosen
        return f"revision {chosen}: {match.image}"

    def roll(ctx: StepContext) -> str:
        revision = target.rollback(ctx.state["revision"], ctx.log)
        return f"now at revision {revision.number}: {revision.image}"

    def verify(ctx: StepContext) -> str:
        return _health(services, env, ctx)

    return Operation("rollback", env, f"Roll back {env}", [
        Step("choose", "Choose the revision", choose),
        confirm_step(services, env, "Roll back"),
        Step("rollback", "Roll back", roll),
        Step("health", "Health-check", verify),
    ], params)


def _health(services: Services, env: str, ctx: StepContext) -> str:
    url = health_url(services, env)
    result = services.health(env).check(url)
    ctx.log(f"GET {url} -> {result.status}: {result.detail}")
    if not result.ok:
        raise StepFailed(f"health check failed: {result.detail}", ("retry this step", "roll back"))
    return f"{result.status} OK"


def health_url(services: Services, env: str) -> str:
    parts = urlsplit(services.config.environment(env).api_url)
    return f"{parts.scheme}://{parts.netloc}{services.config.app.health_path}"
