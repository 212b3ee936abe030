"""The app's logs and resource use from real containers on the rig's dockerd, over the local socket and
over ssh://root@127.0.0.1:2222: `logs` printed and followed, stable and canary told apart, the app's own
DATABASE_URL masked and its escape sequences stripped; `top` from the Docker stats API.

One stable and one canary container (the sample app's image, its command a shell loop printing lines)
serve the whole module; each test reads them through a fresh Services."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rig import config_builder as toml
from rig.helpers import wait_until

from console import cli
from services import factory
from services.adapters.docker_fleet import APP, ENV, PORT, ROLE, VERSION
from services.core import config as config_module
from services.core.container import Services
from services.environments.logs import Line, follow_logs, resource_use

SECRET_DB = "postgresql://app:pl4nted-s3cret@127.0.0.1:5432/food"
# A boot line that prints the secret, one that tries to retitle the terminal and clear it, then ticks.
SCRIPT = ('echo "boot DATABASE_URL=$DATABASE_URL"; printf "evil \\033]0;pwned\\007\\033[2Jafter\\n"; i=0; '
          'while true; do echo "tick $ROLE $i"; i=$((i+1)); sleep 0.2; done')


@pytest.fixture(scope="module")
def app(docker_client: Any, sample_app_image: Any) -> Iterator[str]:
    """A stable and a canary container of a unique app in environment production, ticking."""
    name = f"rc-logs-{uuid.uuid4().hex[:8]}"
    started = []
    try:
        for port, role in ((21001, "stable"), (21002, "canary")):
            started.append(docker_client.containers.run(
                sample_app_image.id, entrypoint=["/bin/sh", "-c", SCRIPT], detach=True, network_mode="host",
                name=f"{name}-production-{role}-{port}", environment={"ROLE": role, "DATABASE_URL": SECRET_DB},
                labels={APP: name, ENV: "production", ROLE: role, PORT: str(port), VERSION: "1.0.0"}))
        for container in started:
            wait_until(lambda c=container: b"tick" in c.logs(), timeout=15, interval=0.1,
                       what=f"{container.name} printing")
        yield name
    finally:
        for container in started:
            container.remove(force=True)


@pytest.fixture(params=["unix", "ssh"])
def config_path(request: pytest.FixtureRequest, app: str, tmp_path: Path) -> Path:
    url = str(request.getfixturevalue("ssh_docker_url")) if request.param == "ssh" else os.environ["RC_DOCKER_URL"]
    split = toml.nginx_split(tmp_path / "upstream.conf", upstream="app", reload=["true"])
    target = toml.docker_target(split, docker_url=url, ports=(21000, 21019))
    production = toml.environment(database_url=toml.secret("DB"), target=target)
    return toml.release({"production": production}, name=app, image="unused").write(tmp_path / "release.toml")


@pytest.fixture
def services(config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.setenv("DB", SECRET_DB)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    made = factory.build(config_module.load(config_path, {"DB": SECRET_DB}), state=tmp_path / "state")
    yield made
    made.close()


def test_logs_prints_both_roles_masked_and_clean_then_exits(config_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DB", SECRET_DB)
    code = cli.main(["--config", str(config_path), "logs", "--env", "production", "--since", "all"])
    out = capsys.readouterr().out
    assert code == 0
    assert "[stable]" in out and "[canary]" in out
    assert "tick stable 0" in out and "tick canary 0" in out
    assert "pl4nted-s3cret" not in out and "boot DATABASE_URL=postgresql://app:**********@" in out
    assert "\x1b" not in out and "\x07" not in out and "evil after" in out
    canary_only = cli.main(["--config", str(config_path), "logs", "--env", "production", "--role", "canary"])
    lines = capsys.readouterr().out.splitlines()
    assert canary_only == 0 and lines and all(line.startswith("[canary]") for line in lines)


def test_follow_sees_new_lines_of_both_roles_and_stops_when_cancelled(services: Services) -> None:
    cancel, seen, done = threading.Event(), [], threading.Event()

    def follow() -> None:
        for line in follow_logs(services, "production", since_s=1, follow=True, cancel=cancel):
            seen.append(line)
        done.set()

    threading.Thread(target=follow, daemon=True).start()

    def both_ticked() -> bool:
        ticks = [line for line in list(seen) if "tick" in line.text]
        return {line.role for line in ticks} == {"stable", "canary"} and len(ticks) >= 6

    wait_until(both_ticked, timeout=15, interval=0.1, what="followed lines of both roles")
    cancel.set()
    assert done.wait(10), "the follow did not end after cancel"
    assert all(isinstance(line, Line) and "\x1b" not in line.text for line in seen)


def test_top_reads_cpu_and_memory_from_docker_stats(services: Services, config_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    report = resource_use(services, "production")
    assert report.source == "docker stats" and not report.note
    assert sorted(row.role for row in report.rows) == ["canary", "stable"]
    for row in report.rows:
        assert row.cpu_percent is not None and row.cpu_percent >= 0
        assert row.memory_bytes is not None and row.memory_bytes > 0
    assert cli.main(["--config", str(config_path), "top", "--env", "production", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["rows"]) == 2 and all(row["memory_bytes"] > 0 for row in shown["rows"])
