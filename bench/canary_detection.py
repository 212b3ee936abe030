"""Detection: from the first breached sample to the start of the rollback, vs one check interval + 5 s.

The flow of tests/integration/test_canary_e2e.py, on the real rig: the sample app's stable
(1.0.0) on the Docker host target behind a private nginx, requests through it all along, a
private Prometheus scraping the containers every 0.5 s (file_sd targets written from the
target's container labels, labelled by track), PostgreSQL for revisions and locks. Each run is
the console's `canary` operation (services.catalog.build_operation + services.runner.run, built
by services.factory.build) for `bad`, the sample app with ENV ERROR_RATE=0.05, and:

- t_rollback: the rollback decision the operation journals (record.state["decision"]["at"]);
- t_breach: the first Prometheus sample, over the canary's lifetime at the scrape step
  (query_range, step 0.5 s), in which the PromQL the console used for the canary's error rate
  (the trace's query, PrometheusMetrics.query_for) is above the threshold of the check that
  rolled back (max(1.5x stable's baseline, the 0.1 % floor));
- detection = t_rollback - t_breach, split into waiting for the next check (the check's sample
  time - t_breach) and the check itself (querying, judging, deciding).

The rate window ([metrics] window) is set to the check interval, so that each check sees the
requests since the one before; t_breach is read with the same query and window, so the lag the
window adds to a change (the average has to move past the threshold) is not in the figure.

    RC_PG_DSN=postgresql://... uv run python bench/canary_detection.py [runs] [interval_s ...]

Default: 5 runs at a 10 s interval and 3 at the strategy's 30 s; intervals named on the command
line get `runs` each. Needs the rig's dockerd and
registry (RC_DOCKER_URL, RC_REGISTRY; defaults: the local socket, 127.0.0.1:5000), the
prometheus and nginx binaries, and a PostgreSQL superuser DSN (RC_PG_DSN): `bash tests/rig/run`
installs them and writes them to $RC_RIG_DIR/rig.env.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import psycopg
from _common import start_nginx
from conftest import Nginx
from integration.test_canary_e2e import Discovery, Load, Prometheus, _has_data
from rig import config_builder as toml
from rig.helpers import wait_until
from rig.opkit import finished, run
from rig.sample_app import build_derived, prepare_context

from services import factory
from services.adapters.docker_fleet import APP
from services.canary import trace
from services.core import config as config_module
from services.core.events import LogLine, Outcome, StepStarted

SCRAPE_S = 0.5  # the private Prometheus' scrape_interval (integration.test_canary_e2e.Prometheus)
SLACK_S = 5.0  # the yardstick: one interval plus this
TAGS = ("1.0.0", "bad")


@dataclass
class Detection:
    interval: int
    check: int  # the check that rolled back
    breach_after_start: float  # t_breach - the canary's start step finished (it takes traffic)
    wait: float  # the check's sample time - t_breach
    deciding: float  # t_rollback - the check's sample time
    abort_line: float  # the "ROLLING BACK" log line - t_rollback

    @property
    def detection(self) -> float:
        return self.wait + self.deciding


def config_text(repository: str, nginx: Nginx, prometheus: Prometheus, interval: int) -> str:
    """The release.toml of test_canary_e2e, with the check interval and window under test."""
    low = 23000 + (uuid.uuid4().int % 400) * 20
    docker_url = os.environ.get("RC_DOCKER_URL", "unix:///var/run/docker.sock")
    staging = toml.rig_staging(nginx, docker_url, low, metrics=toml.prometheus(prometheus.url))
    return toml.release(
        {"staging": staging}, name=f"rc-bench-canary-{uuid.uuid4().hex[:8]}", image=repository,
        metrics={"window": f"{interval}s", "min_samples": 8, "timeout_s": 1},
        canary={"weight_percent": 10, "check_interval_s": interval, "duration_s": interval * 20, "ask_timeout_s": 2},
        backup=toml.backup(), migrations={"dir": "migrations"},
    ).text()


def push_images(client: Any, registry: str, work: Path) -> str:
    """REPO:1.0.0 (the sample app) and REPO:bad (5 % of requests fail) in the registry, not local."""
    repo = f"{registry}/rc-bench-canary-{uuid.uuid4().hex[:8]}"
    image, _ = client.images.build(path=str(prepare_context(work / "context")), tag=f"{repo}:1.0.0",
                                   network_mode="host", rm=True)
    build_derived(client, image.id, f"{repo}:bad", "ENV ERROR_RATE=0.05")
    for tag in TAGS:
        for line in client.images.push(repo, tag, stream=True, decode=True):
            if "error" in line:
                raise SystemExit(f"push failed: {line}")
    for tag in reversed(TAGS):
        client.images.remove(f"{repo}:{tag}")  # the target pulls them
    return repo


def first_breach(prometheus: Prometheus, query: str, threshold: float, start: float, end: float) -> float:
    """The time of the first sample (at the scrape step) in which `query` is above `threshold`."""
    answer = httpx.get(f"{prometheus.url}/api/v1/query_range", timeout=30, params={
        "query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{SCRAPE_S}"}).json()
    for series in answer["data"]["result"]:
        for at, value in series["values"]:
            if float(value) > threshold:
                return float(at)
    raise RuntimeError(f"no sample of {query} above {threshold} between {start} and {end}: {answer}")


def measure(services: factory.Services, prometheus: Prometheus, interval: int) -> Detection:
    result, events, _ = run(services, "canary", "staging", {"version": "bad"}, typed="yes")
    if result.outcome is not Outcome.FAILED or not result.detail.startswith("rolled back"):
        raise RuntimeError(f"the canary was not rolled back: {result.outcome} {result.detail}")
    record = services.journal.get(result.op_id)
    decided, reason = float(record.state["decision"]["at"]), record.state["decision"]["reason"]
    if not reason.startswith("error_rate"):
        raise RuntimeError(f"rolled back by another rule: {reason}")
    why = [e for e in trace.entries(record) if e.action == "rollback" and e.rule == "error_rate"][-1]
    assert why.threshold is not None
    # the PromQL the console sent, as PrometheusMetrics renders it
    assert why.query == services.metrics("staging").query_for("canary", "error_rate")  # type: ignore[attr-defined]
    # from the start step on: the last run's canary left the rate window before this one started
    starting = next(e.at for e in events if isinstance(e, StepStarted) and e.step_id == "start")
    took_traffic = finished(events)["start"].at
    breach = first_breach(prometheus, why.query, why.threshold, starting, decided)
    aborted = next(e.at for e in events if isinstance(e, LogLine) and e.text.startswith("ROLLING BACK"))
    return Detection(interval, why.check, breach - took_traffic, why.at - breach, decided - why.at, aborted - decided)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    # Named intervals get `runs` each; by default 10 s gets `runs` and 30 s about half (each takes ~80 s).
    counts = {int(a): runs for a in sys.argv[2:]} or {10: runs, 30: max(2, (runs + 1) // 2)}
    dsn = os.environ.get("RC_PG_DSN") or sys.exit("RC_PG_DSN is not set (see the docstring)")
    client = docker.DockerClient(base_url=os.environ.get("RC_DOCKER_URL", "unix:///var/run/docker.sock"),
                                 timeout=300)
    results: list[Detection] = []
    databases: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rc-bench-canary-") as scratch:
        work = Path(scratch)
        repo = push_images(client, os.environ.get("RC_REGISTRY", "127.0.0.1:5000"), work)
        nginx, prometheus = start_nginx(work / "nginx"), Prometheus(work / "prometheus")
        prometheus.start()
        apps: list[str] = []
        try:
            for interval, count in counts.items():
                folder = work / f"every-{interval}s"
                (folder / "migrations").mkdir(parents=True)
                (folder / "release.toml").write_text(config_text(repo, nginx, prometheus, interval))
                databases.append(f"rc_bench_{uuid.uuid4().hex[:10]}")  # revisions and locks, per app
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{databases[-1]}"')
                db = urllib.parse.urlsplit(dsn)._replace(path=f"/{databases[-1]}").geturl()
                config = config_module.load(folder / "release.toml", {"TEST_DB": db})
                apps.append(config.app.name)
                services = factory.build(config, state=folder / "state")
                deployed = run(services, "deploy", "staging", {"version": "1.0.0"}, typed="yes")[0]
                if deployed.outcome is not Outcome.SUCCEEDED:
                    raise SystemExit(f"deploying stable failed: {deployed.detail}")
                with Discovery(client, config.app.name, prometheus.targets), Load(nginx):
                    wait_until(lambda: _has_data(prometheus, 'sum(rate(http_requests_total{track="stable"}[5s]))'),
                               timeout=60, what="Prometheus to see stable's requests")
                    for n in range(1, count + 1):
                        time.sleep(interval + 2)  # the last canary's samples leave the rate window
                        found = measure(services, prometheus, interval)
                        results.append(found)
                        print(f"interval {interval}s run {n}: detection {found.detection:.2f}s (waiting for the"
                              f" check {found.wait:.2f}s + the check {found.deciding:.2f}s), rolled back at check"
                              f" {found.check}; breach {found.breach_after_start:.2f}s after the canary took"
                              f" traffic", flush=True)
                for container in client.containers.list(all=True, filters={"label": f"{APP}={config.app.name}"}):
                    container.remove(force=True)
        finally:
            prometheus.stop()
            subprocess.run([*nginx.base, "-s", "stop"], capture_output=True, check=False)
            for app in apps:
                for container in client.containers.list(all=True, filters={"label": f"{APP}={app}"}):
                    container.remove(force=True)
            for tag in TAGS:
                try:
                    client.images.remove(f"{repo}:{tag}", force=True)
                except docker.errors.NotFound:
                    pass
            with psycopg.connect(dsn, autocommit=True) as conn:
                for database in databases:
                    conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    report(results)


def report(results: list[Detection]) -> None:
    print(f"\ndetection, from the first breached sample (scrape every {SCRAPE_S:g} s) to the rollback decision;"
          f" yardstick: one check interval + {SLACK_S:g} s\n")
    print("| check interval (rate window) | runs | detection, median | max | waiting for the check, median |"
          " the check itself, median | yardstick | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for interval in dict.fromkeys(r.interval for r in results):
        mine = [r for r in results if r.interval == interval]
        detections = [r.detection for r in mine]
        limit = interval + SLACK_S
        print(f"| {interval} s ({interval}s) | {len(mine)} | {statistics.median(detections):.2f} s |"
              f" {max(detections):.2f} s | {statistics.median(r.wait for r in mine):.2f} s |"
              f" {statistics.median(r.deciding for r in mine):.3f} s | {limit:g} s |"
              f" {'within' if max(detections) <= limit else '**over**'} |")
    print("\nper run (s): " + "; ".join(f"{r.interval}s: {r.detection:.2f} (check {r.check}, abort line"
                                        f" +{r.abort_line * 1000:.0f} ms)" for r in results))


if __name__ == "__main__":
    main()
