"""The development stack against real compose (Debian's docker-compose, v1) and the rig's dockerd:
up, status by compose labels, restart, logs (followed and stopped) and down, each audited.

No image can be pulled here, so the stack is the sample app plus PostgreSQL 15 and Redis containers
of one tiny image built on the rig: the sample app's busybox image with the host's /usr mounted
read-only, so `postgres` and `redis-server` are the host's own binaries. Every container runs on the
host network on free ports; the project name is unique per run and always taken down after.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from rig import config_builder as toml
from rig.helpers import free_port, unique_name
from rig.sample_app import build_derived

from console import cli
from services import factory
from services.adapters.compose import PROJECT_LABEL, compose_cli
from services.core.container import Services
from services.core.events import ConfirmationNeeded, Outcome
from services.core.operations import Cancelled, Operation, cancelled_by
from services.environments import dev_stack

# /lib and /lib64 lead into the mounted /usr (Debian's merged /usr); the binaries run as the image's app user.
HOST_BINARIES = """USER root
RUN ln -s usr/lib /lib && ln -s usr/lib64 /lib64
USER app
ENV PATH=/usr/lib/postgresql/15/bin:/usr/bin:/bin
HEALTHCHECK NONE"""


@pytest.fixture(scope="module")
def host_image(docker_client: Any, sample_app_image: Any) -> Iterator[str]:
    """Built once per module (its layers are cached), under a tag of this run's own: an overlapping
    run removing its tag never takes this one's."""
    digest = hashlib.sha256(f"{sample_app_image.id}\n{HOST_BINARIES}".encode()).hexdigest()[:12]
    tag = f"rc-devstack-host:{digest}-{uuid.uuid4().hex[:8]}"
    build_derived(docker_client, sample_app_image.id, tag, HOST_BINARIES)
    yield tag
    try:
        docker_client.images.remove(tag, noprune=True)
    except Exception:  # noqa: BLE001, S110 - in use by an overlapping run, or gone: fine
        pass


def compose_file(directory: Path, app_image: str, host_image: str, ports: dict[str, int]) -> Path:
    pg, redis, app = ports["postgres"], ports["redis"], ports["app"]
    health = {"interval": "1s", "timeout": "3s", "retries": 60}
    host = {"image": host_image, "network_mode": "host", "volumes": ["/usr:/usr:ro"]}
    stack = {"services": {
        "app": {"image": app_image, "network_mode": "host",
                "environment": {"PORT": str(app), "VERSION": "dev-stack",
                                "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg}/postgres",
                                "REDIS_URL": f"redis://127.0.0.1:{redis}"},
                "depends_on": {"postgres": {"condition": "service_healthy"},
                               "redis": {"condition": "service_healthy"}}},
        "postgres": {**host, "command": ["/bin/sh", "-c", "initdb -D /tmp/pgdata -U postgres -A trust >/dev/null && "
                                         f"exec postgres -D /tmp/pgdata -p {pg} -k /tmp -c listen_addresses=127.0.0.1"],
                     "healthcheck": {"test": ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", str(pg)], **health}},
        "redis": {**host, "command": ["redis-server", "--port", str(redis), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"],
                  "healthcheck": {"test": ["CMD", "redis-cli", "-p", str(redis), "ping"], **health}},
    }}
    path = directory / "docker-compose.yml"
    path.write_text(yaml.safe_dump(stack, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def stack(tmp_path: Path, docker_client: Any, sample_app_tag: str, host_image: str, pg_database: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Services, Path, dict[str, int]]]:
    ports = {name: free_port() for name in ("app", "postgres", "redis")}
    path = compose_file(tmp_path, sample_app_tag, host_image, ports)
    project = unique_name("rcdev").replace("-", "")
    engine = os.environ["RC_DOCKER_URL"]  # the docker_client fixture has checked it
    release = toml.release({"development": toml.environment()},
                           dev={"compose_file": path.name, "project": project, "environment": "development",
                                "studio_url": f"http://127.0.0.1:{ports['app']}", "engine_url": engine,
                                "timeout_s": 120})
    monkeypatch.setenv("TEST_DB", pg_database)  # for the CLI, which reads the file as an operator's would
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    config = release.load(tmp_path / "release.toml", {"TEST_DB": pg_database})
    services = factory.build(config, state=tmp_path / "state")
    try:
        yield services, tmp_path / "release.toml", ports
    finally:
        services.close()
        subprocess.run([*compose_cli(), "-f", str(path), "-p", project, "down", "-v", "--remove-orphans",
                        "--timeout", "1"], capture_output=True, timeout=120, check=False)
        for left in docker_client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"}):
            left.remove(force=True)


def run(services: Services, operation: Operation) -> tuple[Outcome, str, list[str]]:
    asked: list[str] = []

    def confirm(question: ConfirmationNeeded) -> str:
        asked.append(question.prompt)
        return "yes"

    result = services.runner.run(operation, lambda event: None, confirm)
    return result.outcome, result.detail, asked


def started_at(docker_client: Any, project: str, service: str) -> str:
    found = docker_client.containers.list(filters={"label": [f"{PROJECT_LABEL}={project}",
                                                              f"com.docker.compose.service={service}"]})
    assert len(found) == 1, found
    return str(found[0].attrs["State"]["StartedAt"])


def test_up_status_restart_logs_down(stack: tuple[Services, Path, dict[str, int]], docker_client: Any,
                                     host_image: str, capsys: pytest.CaptureFixture[str]) -> None:
    services, config_path, ports = stack
    assert services.config.dev is not None
    project = services.config.dev.project
    assert {row.state for row in dev_stack.status(services)} == {"absent"}

    outcome, detail, asked = run(services, dev_stack.up(services))
    assert (outcome, asked) == (Outcome.SUCCEEDED, []), detail
    rows = {row.name: row for row in dev_stack.status(services)}
    assert {name: row.state for name, row in rows.items()} == dict.fromkeys(("app", "postgres", "redis"), "running")
    assert (rows["postgres"].health, rows["redis"].health) == ("healthy", "healthy")  # up waited for them
    assert rows["app"].containers == 1 and rows["redis"].image == host_image
    health = httpx.get(f"http://127.0.0.1:{ports['app']}/api/health", timeout=5).json()
    assert health["version"] == "dev-stack"

    # The CLI, as an operator runs it, reads the same labels.
    assert cli.main(["--config", str(config_path), "dev", "status", "--json"]) == cli.EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert [(row["name"], row["state"]) for row in shown["services"]] == [
        ("app", "running"), ("postgres", "running"), ("redis", "running")]

    before = started_at(docker_client, project, "redis")
    outcome, detail, asked = run(services, dev_stack.restart(services, "redis"))
    assert outcome is Outcome.SUCCEEDED, detail
    assert asked == ["Restart redis of the development stack in development?"]
    assert started_at(docker_client, project, "redis") != before

    lines: list[str] = []
    dev_stack.logs(services, "postgres", lines.append)
    assert any("database system is ready to accept connections" in line for line in lines), lines[-20:]
    # Followed, the log runs until it is cancelled: here as soon as Redis says it is ready.
    stop, followed = threading.Event(), []

    def seen(line: str) -> None:
        followed.append(line)
        if "Ready to accept connections" in line:
            stop.set()

    with cancelled_by(stop), pytest.raises(Cancelled):
        dev_stack.logs(services, "redis", seen, follow=True, tail=50)
    assert any("Ready to accept connections" in line for line in followed)

    outcome, detail, asked = run(services, dev_stack.down(services))
    assert outcome is Outcome.SUCCEEDED, detail
    assert asked == [f"Stop and remove every container of the compose project {project} (volumes are kept) "
                     "in development?"]
    assert {row.state for row in dev_stack.status(services)} == {"absent"}
    audited = [(r["action"], r["params"].get("service"), r["outcome"].split(":")[0])
               for r in services.audit.tail(50) if r["action"].startswith("dev-") and r["env"] == "development"]
    assert [a for a in audited if a[2] != "started"] == [
        ("dev-up", None, "succeeded"), ("dev-restart", "redis", "succeeded"), ("dev-down", None, "succeeded")]
