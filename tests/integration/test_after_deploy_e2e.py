"""The post-deploy monitor end to end on the rig: a plain deploy on the Docker host target behind real
nginx, real requests through it, a real Prometheus scraping the containers, PostgreSQL for the
revisions and the lock, and a local webhook receiver for the notifications.

- a deploy of `bad` (5 % of requests fail) is rolled back to the previous revision by the monitor;
  the trace names the query, the value and the threshold; the CLI exits 5;
- a deploy of a healthy version completes its (short) window with no rollback, and "monitor passed"
  goes out.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_canary_e2e
from conftest import Nginx
from rig import config_builder as toml
from rig.helpers import Discovery, wait_until
from rig.opkit import finished, run
from rig.prometheus import Prometheus
from rig.traffic import Load, get_version
from test_canary_e2e import Webhook

from console import cli
from services import factory
from services.adapters.docker_fleet import APP
from services.canary import trace
from services.core import config as config_module
from services.core.events import Outcome

webhook = test_canary_e2e.webhook  # its fixture, used here too
MONITOR = {"after_deploy": "act", "check_interval_s": 2, "duration_s": 12}  # 6 checks


@pytest.fixture
def release_toml(tmp_path: Path, nginx: Nginx, prometheus: Prometheus, repository: str, pg_database: str,
                 docker_client: Any, webhook: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    app, low = f"rc-monitor-{uuid.uuid4().hex[:8]}", 22000 + (uuid.uuid4().int % 400) * 20
    sections = {"metrics": {"window": "5s", "min_samples": 8, "timeout_s": 1}, "monitor": MONITOR,
                "canary": {"check_interval_s": 2, "duration_s": 30, "ask_timeout_s": 2},
                "notify": {"webhook_url": toml.secret("WEBHOOK"), "channel": "#deployments"},
                "backup": toml.backup(), "migrations": {"dir": "migrations"}}
    environments = {"staging": toml.rig_staging(nginx, os.environ["RC_DOCKER_URL"], low,
                                                metrics=toml.prometheus(prometheus.url))}
    path = toml.release(environments, name=app, image=repository, **sections).write(tmp_path / "release.toml")
    (tmp_path / "migrations").mkdir()
    monkeypatch.setenv("TEST_DB", pg_database)
    monkeypatch.setenv("WEBHOOK", webhook)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    yield path
    for container in docker_client.containers.list(all=True, filters={"label": f"{APP}={app}"}):
        container.remove(force=True)


def services_of(path: Path, state: Path) -> factory.Services:
    return factory.build(config_module.load(path, dict(os.environ)), state=state)


def first_deploy(services: factory.Services) -> None:
    """1.0.0, before Prometheus sees anything: no baseline, so it is not watched (said so)."""
    result, events, _ = run(services, "deploy", "staging", {"version": "1.0.0"}, typed="yes")
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert finished(events)["monitor"].detail.startswith("not watched: no baseline for error_rate")


def test_a_plain_deploy_of_the_bad_image_is_rolled_back_by_the_monitor_and_the_cli_exits_5(
        release_toml: Path, tmp_path: Path, nginx: Nginx, prometheus: Prometheus, docker_client: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    services = services_of(release_toml, tmp_path / "xdg-state" / "release-console")
    first_deploy(services)
    app = services.config.app.name
    with Discovery(docker_client, app, prometheus.targets), Load(nginx) as load:
        wait_until(lambda: prometheus.has_data('sum(rate(http_requests_total{track="stable"}[5s]))'),
                   timeout=30, what="Prometheus to see stable's requests")
        code = cli.main(["--config", str(release_toml), "--json", "deploy", "--env", "staging", "--version", "bad",
                         "--yes"])
    assert load.sent > 100, f"only {load.sent} requests went through nginx"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert code == cli.EXIT_ROLLED_BACK, lines[-1]
    assert lines[-1]["type"] == "Finished" and lines[-1]["detail"].startswith("rolled back at check ")

    record = trace.latest(services.journal)
    assert record is not None and record.kind == "deploy" and record.state["decision"]["action"] == "rollback"
    why = [e for e in trace.entries(record) if e.action == "rollback" and e.rule == "error_rate"]
    assert why and why[-1].value is not None and why[-1].threshold is not None
    assert why[-1].value > why[-1].threshold and why[-1].mode == "act" and why[-1].series == "new"
    assert 'track="stable"' in why[-1].query and "http_requests_total" in why[-1].query
    assert "| error_rate | new |" in trace.as_markdown(record)
    assert {get_version(nginx) for _ in range(30)} == {"1.0.0"}  # the previous revision serves everything
    assert services.revisions("staging").list()[-1].action == "rollback"
    [notice] = [m for m in Webhook.received if "automatic rollback" in m["text"]]
    assert notice["text"].startswith("[critical] staging bad: post-deploy monitor: automatic rollback to revision 1:"
                                     " error_rate: ")


def test_a_good_deploy_completes_its_window_and_the_monitor_passed_goes_out(
        release_toml: Path, tmp_path: Path, nginx: Nginx, prometheus: Prometheus, docker_client: Any) -> None:
    services = services_of(release_toml, tmp_path / "state")
    first_deploy(services)
    with Discovery(docker_client, services.config.app.name, prometheus.targets), Load(nginx):
        wait_until(lambda: prometheus.has_data('sum(rate(http_requests_total{track="stable"}[5s]))'),
                   timeout=30, what="Prometheus to see stable's requests")
        result, events, asked = run(services, "deploy", "staging", {"version": "2.0.0"}, typed="yes")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert finished(events)["monitor"].detail.startswith("6 checks passed; judge "), finished(events)["monitor"]
    assert [q for q in asked if q.timeout_s] == []
    assert {get_version(nginx) for _ in range(30)} == {"2.0.0"}
    services.close()  # flushes what the background sender still holds
    [notice] = [m for m in Webhook.received if "monitor passed" in m["text"]]
    assert notice["text"].startswith("[info] staging 2.0.0: post-deploy monitor passed: 6 checks passed")
    assert not [m for m in Webhook.received if "rollback" in m["text"]]
