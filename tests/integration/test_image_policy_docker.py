"""The image policy on images the rig's dockerd built, read back as the pipeline reads them:
the Docker adapter's inspect (GET /images/{id}/json and /history). The leaks are in the
Dockerfile only, never in release.toml, so every finding comes from the inspected image."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rig import config_builder as toml

from services import factory
from services.adapters.docker_build import DockerBuilder
from services.catalog import build_operation
from services.core import masking
from services.core.events import Event, LogLine, Outcome, StepFinished
from services.release.image_policy import check_image, failures

DOCKERFILE = Path(__file__).resolve().parents[1] / "fixtures" / "sample-app" / "Dockerfile"
ARGS = {"NEXT_PUBLIC_API_URL": "http://127.0.0.1:3000/api"}
SECRETS = ("npm_live_42", "s3cr3t_env")

# Both FROM the sample app image, in two stages. LEAKY bakes in what `docker history` shows to
# whoever pulls it: an ARG default a RUN used, an ENV set then cleared, and it switches to root.
CLEAN = """\
FROM {base} AS assets
RUN echo built > /tmp/asset
FROM {base} AS runner
COPY --from=assets /tmp/asset /tmp/asset
"""
LEAKY = """\
FROM {base} AS assets
RUN echo built > /tmp/asset
FROM {base} AS runner
ARG NPM_TOKEN=npm_live_42
RUN echo "$NPM_TOKEN" | wc -c > /tmp/token-length
ENV API_SECRET=s3cr3t_env
ENV API_SECRET=
COPY --from=assets /tmp/asset /tmp/asset
USER root
"""


def test_sample_app_passes_all_but_init_when_required(sample_app_image: Any) -> None:
    inspected = DockerBuilder(os.environ["RC_DOCKER_URL"], 50).inspect(sample_app_image.id)
    assert inspected["Id"] == sample_app_image.id
    assert inspected["History"], "dockerd returned no history"
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")

    results = check_image(inspected, inspected["History"], False, ARGS, dockerfile)
    assert failures(results) == [], "\n".join(r.line for r in results)
    assert not any(r.skipped for r in results)
    checked = {r.name: r for r in results}
    assert checked["non-root user"].detail == "runs as app"
    assert checked["multi-stage build"].detail.startswith("2 stages; the final one: FROM scratch AS runner")
    assert checked["healthcheck"].detail.startswith("HEALTHCHECK /bin/sh -c wget")

    required = check_image(inspected, inspected["History"], True, ARGS, dockerfile)
    assert [r.name for r in failures(required)] == ["init process"]
    init = failures(required)[0]
    assert "tini" in init.fix and init.line.startswith("FAIL init process: no init in ENTRYPOINT")


@pytest.fixture
def build(tmp_path: Path, registry: str, pg_database: str, docker_client: Any, sample_app_image: Any,
          sample_app_tag: str) -> Iterator[Callable[[str], tuple[list[Event], str]]]:
    """Run the `build` operation (build, then the policy step) on a Dockerfile FROM the sample app
    image; returns its events and the built tag. The images are removed afterwards.

    Secrets registered by earlier tests in this process (one is the word "secret") are forgotten
    first: the policy's own words must not be masked by another test's config."""
    masking.forget()
    built: list[str] = []

    def run(dockerfile: str) -> tuple[list[Event], str]:
        name = f"rc-policy-{uuid.uuid4().hex[:8]}"
        context = tmp_path / name
        context.mkdir()
        (context / "Dockerfile").write_text(dockerfile.format(base=sample_app_tag))
        config = toml.release(toml.staging_and_production(), name=name, image=f"{registry}/{name}",
                              app={"context": name}, build={"engine_url": os.environ["RC_DOCKER_URL"]},
                              ).load(tmp_path / f"{name}.toml", {"TEST_DB": pg_database})
        services = factory.build(config, state=tmp_path / "state")
        events: list[Event] = []
        operation = build_operation(services, "build", "staging", {"version": "1.0.0"})
        result = services.runner.run(operation, events.append, lambda q: None)
        assert result.outcome is Outcome.SUCCEEDED, result.detail  # staging: a failed policy warns
        built.append(f"{config.app.image}:1.0.0")
        return events, built[-1]

    yield run
    for tag in built:
        docker_client.images.remove(tag, force=True)


def policy_lines(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, LogLine) and e.step_id == "policy"]


def test_leaks_baked_into_the_history_are_found_there_and_never_shown(
        build: Callable[[str], tuple[list[Event], str]], docker_client: Any) -> None:
    events, tag = build(LEAKY)

    image = docker_client.images.get(tag)
    history = " | ".join(str(entry["CreatedBy"]) for entry in image.history())
    assert "NPM_TOKEN=npm_live_42" in history and "ENV API_SECRET=s3cr3t_env" in history  # what dockerd keeps
    assert "API_SECRET=" in image.attrs["Config"]["Env"]  # cleared: the image's ENV no longer has it
    lines = policy_lines(events)
    assert "FAIL non-root user: USER root is root -- fix:" in " ".join(lines)
    [secrets] = [re.sub(r"\*+", "****", line) for line in lines if line.startswith("FAIL no secrets:")]
    assert secrets.startswith("FAIL no secrets: ENV API_SECRET=**** recorded in the history,"  # newest first
                              " build arg NPM_TOKEN=**** recorded in the history -- fix: pass build-time secrets")
    done = {e.step_id: e.detail for e in events if isinstance(e, StepFinished)}
    assert done["policy"] == "4/6 passed; warned: non-root user, no secrets"
    shown = " ".join(str(vars(e)) for e in events)
    assert not any(secret in shown for secret in SECRETS)


def test_the_same_image_without_the_leaks_passes(build: Callable[[str], tuple[list[Event], str]]) -> None:
    events, _ = build(CLEAN)
    lines = policy_lines(events)
    assert [line.split(":", 1)[0] for line in lines] == [
        "PASS non-root user", "PASS healthcheck", "PASS multi-stage build", "PASS no build toolchain",
        "PASS no secrets", "PASS init process"], lines
    assert "PASS no build toolchain: none in the final stage's" in " ".join(lines)
    assert {e.step_id: e.detail for e in events if isinstance(e, StepFinished)}["policy"] == "6/6 passed"
