"""The release pipeline: the app's checks, build, image policy, push and deploy, as one operation.

`build` (build + policy) and `push` (build + policy + push) are the same steps, shorter.
Tags come from the app's git repository (the SourceTree port) when its build context is in one,
else from the version. Everything a later step needs is in ctx.state (JSON), journaled after
each step, so a resumed operation picks up where it stopped.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.core.actions import Param, action
from services.core.no_target import NoDeployTarget
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.ports import BuildRequest, BuiltImage, CommandNotFound, NotAGitRepository
from services.core.processes import shown
from services.core.references import check_tag, pinned
from services.release.deploy import deploy_steps
from services.release.image_policy import check_image, failures

if TYPE_CHECKING:
    from services.core.container import Services

_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
VERSION = Param("version", "the image tag when the app's build context is not in a git repository",
                default_is="the tags from git")


def context_dir(services: Services) -> Path:
    """The app's build context: app.context, relative to the config file (else to the cwd)."""
    config = services.config
    base = config.source.parent if config.source else Path.cwd()
    return (base / config.app.context).resolve()


def image_tags(services: Services, version: str) -> tuple[list[str], str]:
    """(tags to build and push, the one to deploy). From git in a repository, else from the version."""
    image = services.config.app.image
    context = context_dir(services)
    tags = services.source.image_tags(image)
    if tags is not None:
        semver = [t for t in tags if _SEMVER.match(t.rsplit(":", 1)[1])]
        if version:
            tags.append(f"{image}:{version}")
        # Deploy an immutable-ish reference: the version asked for, the release tag, or branch-sha.
        deploy = f"{image}:{version}" if version else (semver[0] if semver else tags[-1])
        return list(dict.fromkeys(tags)), deploy
    if not version:
        raise StepFailed(f"{context} is not in a git repository, so there is nothing to tag the image from",
                         ("pass --version", f"or `git init` in {context}"))
    return [f"{image}:{version}"], f"{image}:{version}"


def oci_labels(source: str, revision: str, version: str, created: datetime | None = None) -> dict[str, str]:
    """The org.opencontainers.image.* labels docker/metadata-action sets; unknown ones are left out."""
    when = (created or datetime.now(UTC)).astimezone(UTC)
    labels = {"source": source, "revision": revision, "version": version,
              "created": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"}
    return {f"org.opencontainers.image.{name}": value for name, value in labels.items() if value}


def _version(services: Services, params: dict[str, Any]) -> str:
    """The tag asked for (checked before anything starts: a ValueError), or none: git tags then."""
    version = str(params.get("version") or services.source.default_version())
    return check_tag(version) if version else version


def _checks(services: Services) -> list[Step]:
    """[app] checks, in order: the first that fails stops the pipeline before anything is built."""

    def check(name: str, argv: list[str]) -> Step:
        def run(ctx: StepContext) -> str:
            try:
                code = services.commands.run(argv, ctx.log)
            except CommandNotFound as missing:
                raise StepFailed(f"check {name} could not start: {missing}", (
                    f"install {missing.program} on this host (or put it on the PATH), then retry this step",
                    f"or change [app] checks.{name} in release.toml", "abandon")) from None
            if code != 0:
                # 127 is what a shell or a script runner (npm run) says when a program it calls is missing.
                why = ": a program it runs was not found" if code == 127 else ""
                raise StepFailed(f"check {name} failed with exit code {code}{why} (`{shown(argv)}`)",
                                 ("fix and retry this step", "abandon"))
            return "passed"

        return Step(f"check-{name}", f"Run {name}", run)

    return [check(name, argv) for name, argv in services.config.app.checks.items()]


def _image_steps(services: Services, env: str, version: str, push: bool) -> list[Step]:
    app = services.config.app
    production = services.config.environment(env).production

    def build(ctx: StepContext) -> str:
        try:
            tags, deploy_ref = image_tags(services, version)
        except NotAGitRepository as err:
            raise StepFailed(str(err), ("pass --version", "check app.context in release.toml")) from None
        for tag in tags:
            ctx.log(f"tag {tag}")
        labels = oci_labels(*services.source.provenance(), deploy_ref.rsplit(":", 1)[1])
        request = BuildRequest(str(context_dir(services)), app.dockerfile, app.target, app.build_args, tuple(tags),
                               labels)
        image = services.builder.build(request, ctx.log)
        ctx.state["image"] = {"id": image.id, "size": image.size_bytes, "layers": image.layers,
                              "tags": list(image.tags), "deploy": deploy_ref}
        return f"{image.id[:19]} {image.size_bytes / 1e6:.0f} MB, {image.layers} layers"

    def policy(ctx: StepContext) -> str:
        built = ctx.state["image"]
        inspected = services.builder.inspect(built["id"])
        results = check_image(inspected, inspected.get("History"), services.config.build.require_init,
                              app.build_args, services.source.read(app.dockerfile))
        failed = failures(results)
        for result in results:
            ctx.log(result.line, "info" if result.passed else "error" if production else "warning")
        ctx.state["policy"] = [r.to_json() for r in results]
        summary = f"{len(results) - len(failed)}/{len(results)} passed"
        if not failed:
            return summary
        names = ", ".join(r.name for r in failed)
        if production:
            reason = ctx.ask_reason(f"Image policy failed in PRODUCTION ({names}). Give a reason to push anyway.")
            ctx.log(f"policy overridden: {reason}", "warning")
            ctx.state["policy_override"] = {"failed": [r.name for r in failed], "reason": reason}
            return f"{summary}; overridden: {names}"
        ctx.log(f"policy: {len(failed)} failed ({names}); not production, so going on", "warning")
        return f"{summary}; warned: {names}"

    def push_image(ctx: StepContext) -> str:
        built = ctx.state["image"]
        image = BuiltImage(built["id"], built["size"], built["layers"], tuple(built["tags"]))
        digest = services.registry.push(
            image, lambda done, total: ctx.progress(round(done / 1e6, 1), round(total / 1e6, 1), "MB"), ctx.log)
        ctx.state["digest"] = digest
        ctx.state["released"] = built["deploy"]  # only now: a tag that never reached the registry is no release
        return f"{len(image.tags)} tags, {digest[:19]}"

    steps = [Step("build", "Build image", build), Step("policy", "Check image policy", policy)]
    if push:
        steps.append(Step("push", "Push to registry", push_image))
    return steps


def _has_target(services: Services, env: str) -> bool:
    return not isinstance(services.target(env), NoDeployTarget)


@action("release", "Release pipeline: checks, build, push, deploy", confirm_before="deploy",
        params=(replace(VERSION, form=False),))
def release(services: Services, env: str, params: dict[str, Any]) -> Operation:
    version = _version(services, params)

    def deploy(ctx: StepContext) -> str:
        reference = ctx.state.get("released")
        if not reference:
            raise StepFailed("nothing was pushed, so there is nothing to deploy", ("retry the push step",))
        # The digest this pipeline pushed, not whatever the tag points at by now.
        ctx.state["image"] = reference = pinned(reference, ctx.state["digest"])
        services.target(env).deploy(reference, ctx.log)
        return f"{reference} serving"

    steps = _checks(services) + _image_steps(services, env, version, push=True)
    title = f"Deploy to {env}" if _has_target(services, env) else f"Deploy to {env}: no deploy target configured"
    # The same record and health steps as `deploy`, after this pipeline's own deploy step.
    steps += [Step("deploy", title, deploy), *deploy_steps(services, env, "deploy")[1:]]
    return Operation("release", env, f"Release {version or 'from git'} to {env}", steps, {"version": version})


@action("build", "Build the image and check its policy", changes_env=False, params=(VERSION,))
def build_image(services: Services, env: str, params: dict[str, Any]) -> Operation:
    version = _version(services, params)
    return Operation("build", env, f"Build {version or 'from git'}", _image_steps(services, env, version, push=False),
                     {"version": version}, takes_lock=False)


@action("push", "Build the image, check its policy, push it", changes_env=False, params=(VERSION,))
def push_image(services: Services, env: str, params: dict[str, Any]) -> Operation:
    version = _version(services, params)
    return Operation("push", env, f"Build and push {version or 'from git'}",
                     _image_steps(services, env, version, push=True), {"version": version}, takes_lock=False)
