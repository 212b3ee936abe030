"""The Prometheus scrape config that docs/operations.md documents for a Docker host, loaded by a
real Prometheus (the rig's binary, a second process with that config) against the rig's dockerd:
it discovers the sample app's stable container deployed by the console's Docker target, labels it
`track` and `env`, scrapes it, and the console's Prometheus metrics source reads its series.

The config is cut from the docs file itself, so the docs cannot drift from what works. Only the
app's name (the docs' example, food-management) and the Docker host are put in for the rig's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Nginx
from rig import config_builder as toml
from rig.helpers import free_port, wait_until
from rig.opkit import run

from services import factory
from services.adapters.docker_fleet import APP
from services.adapters.prometheus import PrometheusMetrics
from services.core import config as config_module
from services.core.events import Outcome

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "operations.md"
DOCUMENTED_HOST = "unix:///var/run/docker.sock"
RPS = 50  # the containers' own synthetic requests a second: the series have rates


def documented_docker_sd_job() -> str:
    """The ```yaml block of docs/operations.md that holds docker_sd_configs, as written there."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    [job] = [block for block in blocks if "docker_sd_configs" in block]
    return job


def prometheus_config(job: str, app: str, docker_url: str) -> str:
    assert "food-management" in job and DOCUMENTED_HOST in job  # what is put in for the rig's
    ours = job.replace("food-management", app).replace(DOCUMENTED_HOST, docker_url)
    indented = "".join(f"  {line}\n" for line in ours.splitlines())
    # Only the scrape cadence is the test's: the docs' job keeps Prometheus' own defaults otherwise.
    return f"global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n{indented}"


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def app(nginx: Nginx, repository: str, pg_database: str, tmp_path: Path,
        docker_client: Any) -> Iterator[tuple[str, factory.Services]]:
    """The sample app deployed to staging by the console's Docker target: a running stable container."""
    name = f"rc-sd-{uuid.uuid4().hex[:8]}"
    low = 23000 + (uuid.uuid4().int % 400) * 20
    staging = toml.rig_staging(nginx, os.environ["RC_DOCKER_URL"], low, env={"SYNTHETIC_RPS": str(RPS)})
    path = toml.release({"staging": staging}, name=name, image=repository, backup=toml.backup(),
                        migrations={"dir": "migrations"}).write(tmp_path / "release.toml")
    (tmp_path / "migrations").mkdir()
    services = factory.build(config_module.load(path, {"TEST_DB": pg_database}), state=tmp_path / "state")
    result = run(services, "deploy", "staging", {"version": "1.0.0"}, typed="yes")[0]
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    yield name, services
    for container in docker_client.containers.list(all=True, filters={"label": f"{APP}={name}"}):
        container.remove(force=True)


@pytest.fixture
def documented_prometheus(app: tuple[str, factory.Services], tmp_path: Path) -> Iterator[str]:
    """A second Prometheus (the binary the rig runs) with the documented job; the rig's own is
    left as other rig runs use it. Started after the deploy: docker_sd's first refresh finds it."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is missing: run the tests through tests/rig/run", pytrace=False)
    root = tmp_path / "prometheus"
    root.mkdir()
    config = root / "prometheus.yml"
    config.write_text(prometheus_config(documented_docker_sd_job(), app[0], os.environ["RC_DOCKER_URL"]))
    # The rig's package ships promtool beside prometheus: its message says what is wrong in the text.
    checked = subprocess.run([str(Path(binary).with_name("promtool")), "check", "config", str(config)],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    url = f"http://127.0.0.1:{free_port()}"
    with (root / "prometheus.log").open("ab") as log:
        process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
                                    f"--web.listen-address={url.removeprefix('http://')}"],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: ready(url), timeout=60, what="the documented-config Prometheus")
        yield url
    finally:
        process.terminate()
        process.wait(30)


def test_the_documented_docker_sd_config_finds_the_app_and_the_console_reads_its_series(
        app: tuple[str, factory.Services], documented_prometheus: str, docker_client: Any) -> None:
    name, _ = app
    [stable] = docker_client.containers.list(filters={"label": f"{APP}={name}"})
    assert re.fullmatch(rf"{name}-staging-stable-\d+", stable.name), stable.name
    port = stable.labels["release-console.port"]

    def discovered() -> list[dict[str, Any]] | None:
        active = httpx.get(f"{documented_prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        up = [t for t in active if t["health"] == "up"]
        return up or None

    [target] = wait_until(discovered, timeout=60, what="Prometheus to discover and scrape the stable container")
    assert target["labels"]["job"] == name
    assert target["labels"]["instance"] == f"127.0.0.1:{port}"
    assert (target["labels"]["track"], target["labels"]["env"]) == ("stable", "staging")

    # The docs: "the default queries then work with the default selectors plus env".
    metrics = toml.prometheus(documented_prometheus, selectors={"stable": 'track="stable",env="staging"',
                                                                "canary": 'track="canary",env="staging"'})
    staging = toml.environment(api_url="http://127.0.0.1", database_url="postgresql://x", metrics=metrics)
    config = toml.release({"staging": staging}, name=name, metrics={"window": "5s", "timeout_s": 5}).parse({})
    source = PrometheusMetrics(config, "staging")

    def stable_at_its_rate() -> dict[str, Any] | None:
        """The container's own RPS, once its series is older than the window (before, a rate over the
        first scrapes reads low)."""
        snapshot = source.sample()
        rate = snapshot.series["stable"].get("requests_per_s")
        return snapshot.series if rate is not None and rate == pytest.approx(RPS, rel=0.2) else None

    series = wait_until(stable_at_its_rate, timeout=60, interval=1, what=f"the stable container's {RPS} requests/s")
    assert series["stable"]["error_rate"] == 0.0
    assert series["stable"]["memory_percent"] is not None
    assert all(value is None for value in series["canary"].values())  # no canary container: nothing matched
    source.close()
