"""`revision adopt`: record what runs as a new revision, after a change made outside the console.

A hotfix applied by hand (`docker run`, `kubectl set image`) leaves the history claiming the old
image, and the environments pane and `status` say DRIFT (services/environments/drift.py). Adopting
is the explicit, audited way to make the history true again: it reads the image the target runs,
shows what differs, asks (production: the environment's name typed), and records the running image
and its digest as a revision with the action "adopt" (so a rollback can go back to it or past it).

It records; it changes nothing that runs. Replicas or a canary weight changed by hand are the
console's again with its own `scale` or `canary step` / `canary abort`, which this says when it
sees them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.core.actions import action, confirm_step
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.references import digest_of, parts_of
from services.environments.drift import drift_of
from services.release.deploy import record_revision

if TYPE_CHECKING:
    from services.core.container import Services


@action("adopt", "Adopt what runs as a new revision (after a change outside the console)",
        confirm_before="record")
def adopt(services: Services, env: str, params: dict[str, Any]) -> Operation:
    def read(ctx: StepContext) -> str:
        status = services.target(env).status()
        references = list(dict.fromkeys(r.reference for r in status.running))
        if not references:
            raise StepFailed(f"nothing runs in {env}: there is no image to adopt", ("deploy a version instead",))
        if len(references) > 1:
            raise StepFailed(f"{env}'s stable replicas run {len(references)} different images "
                             f"({', '.join(references)}): which one to adopt is not clear",
                             ("deploy the one you want: release-console deploy --env " + env,))
        running = status.running[0]
        name, tag, pinned = parts_of(running.reference)
        image = f"{name}:{tag}" if tag else name
        digest = pinned or running.digest or _registry_digest(services, ctx, image)
        ctx.state["image"], ctx.state["digest"] = image, digest or ""
        drift = drift_of(services, env, status)
        for line in drift.lines:
            ctx.log(f"drift: {line}")
        if not any(d.what == "image" for d in drift.differences) and services.revisions(env).list():
            ctx.state["same"] = True
            if drift:
                ctx.log("replicas and weight are not revisions: `scale` or `canary step` / `canary abort` set"
                        " them as the console's again")
            return f"{running.reference} is already the recorded revision: nothing to adopt"
        return f"runs {running.reference}" + (f" ({digest})" if digest and digest not in running.reference else "")

    confirm = confirm_step(services, env, lambda ctx: f"Record {ctx.state['image']} (what runs now) as a new revision",
                           "Adopt what runs",
                           unless=lambda ctx: "skipped: nothing to adopt" if ctx.state.get("same") else None)

    def record(ctx: StepContext) -> str:
        if ctx.state.get("same"):
            return "nothing recorded"
        revision = record_revision(services, env, ctx, ctx.state["image"], "adopt")
        return f"revision {revision.number}: {revision.image} {revision.digest or '(no digest)'}"

    return Operation("adopt", env, f"Adopt what runs in {env} as a revision", [
        Step("read", "Read what runs and what differs", read),
        confirm,
        Step("record", "Record it as a revision", record),
    ], params)


def _registry_digest(services: Services, ctx: StepContext, image: str) -> str | None:
    try:
        return services.registry.digest(image) or digest_of(image)
    except Exception as err:  # noqa: BLE001 - the revision is recorded without it, said so
        ctx.log(f"the registry's digest of {image} is not known: {err}", "warning")
        return None
