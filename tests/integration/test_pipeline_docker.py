"""The release pipeline against the rig's real Docker engine and registry: build the sample
app, check the image policy, push, and stop at a clear step where no deploy target exists. The
app's checks run as real processes: one that fails, or whose program is missing, stops the
pipeline before anything is built."""

from __future__ import annotations

import os
import re
import shlex
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from rig import config_builder as toml
from rig.sample_app import prepare_context

from services import factory
from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import Event, Finished, LogLine, Outcome, Progress, StepStarted
from services.core.operations import Result
from services.release.pipeline import context_dir


def release_toml(tmp_path: Path, registry: str, name: str, docker_url: str,
                 checks: dict[str, list[str]] | None = None) -> Path:
    context = prepare_context(tmp_path / "app")
    app = {"context": context.name, "target": "runner", "checks": checks,
           "build_args": {"NEXT_PUBLIC_API_URL": "http://127.0.0.1:3000/api"}}
    return toml.release(toml.staging_and_production(), image=f"{registry}/{name}", app=app,
                        build={"engine_url": docker_url}, migrations={"dir": "migrations"},
                        ).write(tmp_path / "release.toml")


def python(code: str) -> list[str]:
    """A check that is a real program run as an argument list: this Python, with `code`."""
    return [sys.executable, "-c", code]


PASSES = python("import os; print('checked in', os.getcwd())")
FAILS = python("import sys; print('2 failed, 40 passed'); sys.exit(3)")
MISSING = ["no-such-binary-xyz", "--fix"]


@pytest.fixture
def make_services(tmp_path: Path, registry: str, docker_client: Any, pg_database: str
                  ) -> Callable[..., factory.Services]:
    """Release locks live in the environment's database: a real one, from the rig."""

    def make(checks: dict[str, list[str]] | None = None) -> factory.Services:
        name = f"rc-pipeline-{uuid.uuid4().hex[:8]}"
        url = os.environ["RC_DOCKER_URL"]  # docker_client has checked it answers
        toml_path = release_toml(tmp_path, registry, name, url, checks)
        return factory.build(config_module.load(toml_path, {"TEST_DB": pg_database}), state=tmp_path / "s")

    return make


@pytest.fixture
def services(make_services: Callable[..., factory.Services]) -> factory.Services:
    return make_services()


def run(services: factory.Services, kind: str, env: str, answer: str | None = "yes", **params: Any
        ) -> tuple[Result, list[Event]]:
    events: list[Event] = []
    result = services.runner.run(build_operation(services, kind, env, params), events.append, lambda q: answer)
    return result, events


def test_push_builds_checks_the_policy_and_pushes_to_the_registry(services: factory.Services, registry: str,
                                                                   docker_client: Any) -> None:
    result, events = run(services, "push", "staging", version="1.5.0")
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    lines = [e.text for e in events if isinstance(e, LogLine)]
    assert any(line.startswith("BuildKit: ") for line in lines)  # [build] builder defaults to BuildKit
    assert any(re.match(r"#\d+ \[runner \d+/\d+\] ", line) for line in lines)  # the build streamed its steps
    assert any("PASS non-root user" in line for line in lines) and any("PASS healthcheck" in line for line in lines)
    assert any(isinstance(e, Progress) and e.unit == "MB" and e.done == e.total for e in events)
    name = services.config.app.image.split("/", 1)[1]
    tags = httpx.get(f"http://{registry}/v2/{name}/tags/list", timeout=10).json()["tags"]
    assert "1.5.0" in tags
    docker_client.images.remove(f"{services.config.app.image}:1.5.0", force=True)


def test_release_stops_at_a_clear_deploy_step_without_a_target(services: factory.Services,
                                                               docker_client: Any) -> None:
    result, events = run(services, "release", "staging", version="1.5.1")
    assert result.outcome is Outcome.FAILED and result.failed_step == "deploy"
    assert "no deploy target configured for staging" in result.detail
    docker_client.images.remove(f"{services.config.app.image}:1.5.1", force=True)


def started(events: list[Event]) -> list[str]:
    return [e.step_id for e in events if isinstance(e, StepStarted)]


def nothing_built_or_pushed(services: factory.Services, registry: str, docker_client: Any) -> bool:
    name = services.config.app.image.split("/", 1)[1]
    tags = httpx.get(f"http://{registry}/v2/{name}/tags/list", timeout=10)
    return docker_client.images.list(name=services.config.app.image) == [] and tags.status_code == 404


def test_a_failing_check_stops_the_release_at_that_check(make_services: Callable[..., factory.Services],
                                                         registry: str, docker_client: Any) -> None:
    services = make_services({"where": PASSES, "test": FAILS, "lint": python("print('never run')")})
    result, events = run(services, "release", "staging", version="1.5.2")

    assert result.outcome is Outcome.FAILED and result.failed_step == "check-test"
    assert result.detail == f"check test failed with exit code 3 (`{shlex.join(FAILS)}`)"
    assert started(events) == ["check-where", "check-test"]  # lint, build, push and deploy never started
    lines = {(e.step_id, e.text) for e in events if isinstance(e, LogLine)}
    assert {("check-where", f"checked in {context_dir(services)}"), ("check-test", "2 failed, 40 passed")} <= lines
    assert nothing_built_or_pushed(services, registry, docker_client)


def test_a_missing_check_program_is_named_with_what_to_do(make_services: Callable[..., factory.Services],
                                                          registry: str, docker_client: Any) -> None:
    services = make_services({"lint": MISSING, "test": PASSES})
    result, events = run(services, "release", "staging", version="1.5.3")

    assert result.outcome is Outcome.FAILED and result.failed_step == "check-lint"
    assert result.detail == "check lint could not start: `no-such-binary-xyz` was not found on this host's PATH"
    final = events[-1]
    assert isinstance(final, Finished) and final.next_options[:2] == (
        "install no-such-binary-xyz on this host (or put it on the PATH), then retry this step",
        "or change [app] checks.lint in release.toml")
    assert started(events) == ["check-lint"]
    assert nothing_built_or_pushed(services, registry, docker_client)
