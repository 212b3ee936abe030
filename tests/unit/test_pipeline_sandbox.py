"""The release pipeline in the sandbox: steps, image policy, production override, push, deploy, resume;
and the tags it builds with from a real git repository."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rig.opkit import IMAGE, finished, logs, run, sandbox_services, steps
from rig.wiring import rewire

from services.adapters.git_source import GitSource
from services.catalog import all_actions, build_operation
from services.core.events import Event, Outcome, StepStatus
from services.core.no_target import NoDeployTarget
from services.core.operations import StepContext, StepFailed
from services.factory import EXAMPLE_CONFIG, Services, load_config
from services.release.pipeline import image_tags
from services.sandbox.adapters import SandboxBuilder

REASON = "CVE hotfix; USER fixed in 1.5.1"
CHECKS = ["check-test", "check-type-check", "check-lint"]


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    return sandbox_services(tmp_path, monkeypatch)


def pushed(services: Services, reference: str) -> bool:
    """Pushed: the sandbox's registry has a digest for it (a built, unpushed tag has none)."""
    assert services.world is not None
    return bool(services.world.images.get(reference))


def fail_policy(services: Services) -> None:
    assert isinstance(services.builder, SandboxBuilder)
    services.builder.user = "root"


def test_release_runs_checks_build_policy_push_deploy(services: Services) -> None:
    result, events, asked = run(services, "release", "development", typed="yes")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert steps(events) == [*CHECKS, "build", "policy", "push", "confirm", "deploy", "record", "health"]
    assert asked == [] or all(not q.free_text for q in asked)
    lines = logs(events, "policy")
    assert [text.split(":")[0] for text, _ in lines] == [
        "PASS non-root user", "PASS healthcheck", "SKIP multi-stage build", "PASS no build toolchain",
        "PASS no secrets", "PASS init process"]
    assert all(level == "info" for _, level in lines)
    assert finished(events)["policy"].detail == "6/6 passed"
    assert ("tag ghcr.io/example/food-management:1.5.0", "info") in logs(events, "build")

    state = services.journal.get(result.op_id).state
    json.dumps(state)  # journaled as JSON: a resume can read it back
    assert state["released"] == f"{IMAGE}:1.5.0"
    assert state["image"] == f"{IMAGE}:1.5.0@{state['digest']}"  # deployed: the digest this run pushed
    assert finished(events)["deploy"].detail == f"{IMAGE}:1.5.0@{state['digest']} serving"
    assert services.revisions("development").list()[-1].digest == state["digest"]
    assert [r["name"] for r in state["policy"]][0] == "non-root user"
    assert services.world is not None
    assert services.world.envs["development"].version == "1.5.0"
    assert pushed(services, f"{IMAGE}:1.5.0")


def test_failing_policy_warns_outside_production(services: Services) -> None:
    fail_policy(services)
    result, events, asked = run(services, "release", "staging", params={"version": "1.5.1"}, typed="yes")

    assert result.outcome is Outcome.SUCCEEDED
    assert not any(q.free_text for q in asked)
    lines = logs(events, "policy")
    assert ("FAIL non-root user: USER root is root -- fix: " in lines[0][0]) and lines[0][1] == "warning"
    assert lines[-1] == ("policy: 1 failed (non-root user); not production, so going on", "warning")
    assert finished(events)["policy"].detail == "5/6 passed; warned: non-root user"
    assert services.world is not None and services.world.envs["staging"].version == "1.5.1"


def test_failing_policy_in_production_needs_an_override_reason(services: Services) -> None:
    fail_policy(services)
    result, events, asked = run(services, "release", "production", reason=REASON, typed="production")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    # The typed confirmation comes right before deploy; the override, at the policy step.
    assert steps(events) == [*CHECKS, "build", "policy", "push", "confirm", "deploy", "record", "health"]
    assert [(q.step_id, q.free_text) for q in asked] == [("policy", True), ("confirm", False)]
    assert "Image policy failed in PRODUCTION (non-root user)" in asked[0].prompt
    assert ("FAIL non-root user" in logs(events, "policy")[0][0]) and logs(events, "policy")[0][1] == "error"
    assert (f"policy overridden: {REASON}", "warning") in logs(events, "policy")
    assert finished(events)["policy"].detail == "5/6 passed; overridden: non-root user"
    state = services.journal.get(result.op_id).state
    assert state["policy_override"] == {"failed": ["non-root user"], "reason": REASON}
    record = services.audit.tail(1)[0]
    assert record["override_reason"] == REASON and record["outcome"].startswith("succeeded")


def test_no_override_reason_stops_before_push(services: Services) -> None:
    fail_policy(services)
    result, events, _ = run(services, "release", "production", params={"version": "1.6.0"}, reason=None,
                            typed="production")

    assert result.outcome is Outcome.DECLINED
    assert result.failed_step == "policy"
    assert "push" not in finished(events) and "deploy" not in finished(events)
    assert not pushed(services, f"{IMAGE}:1.6.0")  # built, never pushed
    assert "released" not in services.journal.get(result.op_id).state
    assert services.world is not None and services.world.envs["production"].version != "1.6.0"


def test_build_and_push_actions(services: Services) -> None:
    specs = all_actions()
    assert [p.name for p in specs["build"].params] == ["version"] == [p.name for p in specs["push"].params]
    assert not specs["build"].changes_env and not specs["push"].changes_env

    built, events, _ = run(services, "build", "production", params={"version": "2.0.0"})
    assert built.outcome is Outcome.SUCCEEDED
    assert steps(events) == ["build", "policy"]
    assert not pushed(services, f"{IMAGE}:2.0.0")

    push_result, events, asked = run(services, "push", "production", params={"version": "2.0.0"})
    assert push_result.outcome is Outcome.SUCCEEDED
    assert steps(events) == ["build", "policy", "push"]
    assert asked == []  # nothing deployed: no typed confirmation
    assert pushed(services, f"{IMAGE}:2.0.0")
    assert services.world is not None and services.world.envs["production"].version != "2.0.0"


def test_deploy_without_a_target_stops_at_a_clear_step(services: Services) -> None:
    rewire(services, target=lambda env: NoDeployTarget(env))
    op = build_operation(services, "release", "development", {"version": "1.7.0"})
    assert [s.id for s in op.steps[-3:]] == ["deploy", "record", "health"]
    assert op.steps[-3].title == "Deploy to development: no deploy target configured"
    events: list[Event] = []
    result = services.runner.run(op, events.append, lambda q: "yes")

    assert result.outcome is Outcome.FAILED
    assert result.failed_step == "deploy"
    assert result.detail == "no deploy target configured for development"
    assert finished(events)["push"].status is StepStatus.DONE
    assert pushed(services, f"{IMAGE}:1.7.0")  # pushed: deploy can be retried once a target exists


def test_resume_at_deploy_uses_the_journaled_push(services: Services) -> None:
    real_target = services.per_env.target
    rewire(services, target=lambda env: NoDeployTarget(env))
    first = services.runner.run(build_operation(services, "release", "staging", {"version": "1.8.0"}),
                                lambda e: None, lambda q: "yes")
    assert first.failed_step == "deploy"

    record = services.journal.get(first.op_id)
    rewire(services, target=real_target)  # the target is configured now
    op = build_operation(services, "release", "staging", dict(record.params))
    events: list[Event] = []
    resumed = services.runner.run(op, events.append, lambda q: "yes", start_at=record.resume_index,
                                  state=record.state)

    assert resumed.outcome is Outcome.SUCCEEDED
    assert steps(events)[record.resume_index] == "deploy"
    assert list(finished(events)) == ["deploy", "record", "health"]  # nothing rebuilt or pushed again
    assert services.world is not None and services.world.envs["staging"].version == "1.8.0"
    latest = services.revisions("staging").list()[-1]
    assert (latest.image, latest.action) == (f"{IMAGE}:1.8.0", "deploy")
    assert latest.digest == services.world.images[f"{IMAGE}:1.8.0"]


def test_deploy_refuses_without_a_push(services: Services) -> None:
    deploy = build_operation(services, "release", "development", {}).steps[-3]
    ctx = StepContext("op", "deploy", "development", {}, {}, lambda e: None, lambda q: None, threading.Event())
    with pytest.raises(StepFailed, match="nothing was pushed"):
        deploy.run(ctx)


# --- tags from the app's git repository -----------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def real_services(tmp_path: Path, context: str) -> Any:
    """What image_tags reads: the config (its app.context relative to the file) and the git source."""
    config = load_config(str(EXAMPLE_CONFIG), True, {})
    config = config.model_copy(update={"app": config.app.model_copy(update={"context": context}),
                                       "source": tmp_path / "release.toml"})
    return SimpleNamespace(config=config, source=GitSource((tmp_path / context).resolve()))


def test_tags_from_git_when_the_context_is_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_REF", raising=False)
    app = tmp_path / "app"
    app.mkdir()
    git(app, "init", "--quiet", "--initial-branch=main")
    (app / "package.json").write_text("{}", encoding="utf-8")
    git(app, "add", ".")
    git(app, "-c", "user.email=d@example.com", "-c", "user.name=D", "-c", "commit.gpgsign=false",
        "commit", "--quiet", "-m", "first")
    sha = git(app, "rev-parse", "--short=7", "HEAD")
    services = real_services(tmp_path, "app")

    assert image_tags(services, "") == ([f"{IMAGE}:main", f"{IMAGE}:main-{sha}"], f"{IMAGE}:main-{sha}")
    git(app, "tag", "v1.9.0")
    tags, deploy = image_tags(services, "")
    assert tags == [f"{IMAGE}:main", f"{IMAGE}:1.9.0", f"{IMAGE}:1.9", f"{IMAGE}:main-{sha}"]
    assert deploy == f"{IMAGE}:1.9.0"
    # A version asked for is one more tag, and the one deployed.
    assert image_tags(services, "1.9.0-rc1") == ([*tags, f"{IMAGE}:1.9.0-rc1"], f"{IMAGE}:1.9.0-rc1")


def test_tags_from_the_version_outside_a_repository(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    services = real_services(tmp_path, "plain")
    assert image_tags(services, "1.5.0") == ([f"{IMAGE}:1.5.0"], f"{IMAGE}:1.5.0")
    with pytest.raises(StepFailed, match="not in a git repository"):
        image_tags(services, "")
