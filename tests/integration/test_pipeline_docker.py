"""The release pipeline against the rig's real Docker engine and registry: build the sample
app, check the image policy, push, and stop at a clear step where no deploy target exists."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from rig import config_builder as toml
from rig.sample_app import prepare_context

from services import factory
from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import Event, LogLine, Outcome, Progress
from services.core.operations import Result


def release_toml(tmp_path: Path, registry: str, name: str, docker_url: str) -> Path:
    context = prepare_context(tmp_path / "app")
    app = {"context": context.name, "target": "runner",
           "build_args": {"NEXT_PUBLIC_API_URL": "http://127.0.0.1:3000/api"}}
    return toml.release(toml.staging_and_production(), image=f"{registry}/{name}", app=app,
                        build={"engine_url": docker_url}, migrations={"dir": "migrations"},
                        ).write(tmp_path / "release.toml")


@pytest.fixture
def services(tmp_path: Path, registry: str, docker_client: Any, pg_database: str) -> factory.Services:
    """Release locks live in the environment's database: a real one, from the rig."""
    name = f"rc-pipeline-{uuid.uuid4().hex[:8]}"
    url = os.environ["RC_DOCKER_URL"]  # docker_client has checked it answers
    config = config_module.load(release_toml(tmp_path, registry, name, url), {"TEST_DB": pg_database})
    return factory.build(config, state=tmp_path / "s")


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
    assert any(line.startswith("Step ") for line in lines)  # the build streamed its steps
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
