"""The release pipeline: the app's checks, build, push and deploy, as one operation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.catalog import action
from services.operations import Operation, Step, StepContext, StepFailed
from services.ports import BuildRequest, BuiltImage

if TYPE_CHECKING:
    from services.factory import Services


@action("release", "Release pipeline: checks, build, push, deploy", confirm_before="deploy")
def release(services: Services, env: str, params: dict[str, Any]) -> Operation:
    app = services.config.app
    version = str(params.get("version") or "1.5.0")
    tags = (f"{app.image}:{version}", f"{app.image}:main-{version.replace('.', '')[:7]}")

    def check(name: str, argv: list[str]) -> Step:
        def run(ctx: StepContext) -> str:
            code = services.commands.run(argv, ctx.log)
            if code != 0:
                raise StepFailed(f"{name} failed with exit code {code}", ("fix and retry this step", "abandon"))
            return "passed"

        return Step(f"check-{name}", f"Run {name}", run)

    def build(ctx: StepContext) -> str:
        request = BuildRequest(app.context, app.dockerfile, app.target, app.build_args, tags)
        image = services.builder.build(request, ctx.log)
        ctx.state["image"] = {"id": image.id, "size": image.size_bytes, "layers": image.layers, "tags": list(tags)}
        return f"{image.id[:19]} {image.size_bytes / 1e6:.0f} MB, {image.layers} layers"

    def push(ctx: StepContext) -> str:
        built = ctx.state["image"]
        image = BuiltImage(built["id"], built["size"], built["layers"], tuple(built["tags"]))
        digest = services.registry.push(image, lambda done, total: ctx.progress(done, total, "layers"), ctx.log)
        ctx.state["digest"] = digest
        return digest[:19]

    def deploy(ctx: StepContext) -> str:
        revision = services.target(env).deploy(tags[0], ctx.log)
        return f"revision {revision.number}: {revision.image}"

    steps = [check(name, argv) for name, argv in app.checks.items()]
    steps += [Step("build", "Build image", build), Step("push", "Push to registry", push)]
    steps.append(Step("deploy", f"Deploy to {env}", deploy))
    return Operation("release", env, f"Release {version} to {env}", steps, {"version": version})
