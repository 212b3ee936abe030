"""The image policy on the real sample app image (tests/fixtures/sample-app), as dockerd reports it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.release.image_policy import check_image, failures, inspect_image

DOCKERFILE = Path(__file__).resolve().parents[1] / "fixtures" / "sample-app" / "Dockerfile"
ARGS = {"NEXT_PUBLIC_API_URL": "http://127.0.0.1:3000/api"}


def test_sample_app_passes_all_but_init_when_required(docker_client: Any, sample_app_image: Any) -> None:
    inspected = inspect_image(docker_client, sample_app_image.id)
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


def test_secret_build_arg_is_seen_in_the_real_history(docker_client: Any, sample_app_image: Any) -> None:
    """A secret passed as a build arg is flagged, named and masked."""
    inspected = inspect_image(docker_client, sample_app_image.id)
    results = check_image(inspected, inspected["History"], False, {**ARGS, "NPM_TOKEN": "npm_live_42"}, None)
    secrets = {r.name: r for r in results}["no secrets"]
    assert not secrets.passed and secrets.detail == "build arg NPM_TOKEN=****"
    assert "npm_live_42" not in " ".join(r.line for r in results)
