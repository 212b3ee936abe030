"""The post-deploy monitor on the real rig: detection, requests lost to its rollback, its start-up cost.

The flow of tests/integration/test_after_deploy_e2e.py: the sample app (1.0.0) on the Docker host
target behind a private nginx, a private Prometheus scraping the containers every 0.5 s, PostgreSQL
for revisions and locks. Each run is the console's `deploy` operation (build_operation + runner.run):

1. detection: a deploy of `bad` (5 % of "/" fails); t_breach is the first Prometheus sample, at the
   scrape step, in which the trace's query (the new version's error rate) is above the threshold of
   the check that rolled back; detection = the "ROLLING BACK" line (the rollback's start) - t_breach.
   Yardstick: one check interval + 5 s. The rate window is the check interval, as in
   bench/canary_detection.py.
2. failed requests: GET /api/health through nginx one after another on new connections
   (tests/rig/traffic.py) during every deploy of 1 and its rollback. /api/health never fails in
   `bad`: a failure there is one the switch or the rollback made. Yardstick: zero.
3. start-up cost: a deploy of a good tag with the monitor (op start to the monitor step's start,
   so the baseline step is in) against the same deploy with `[monitor] after_deploy = "off"` (op
   start to its end), in turn on the same app, 2.0.0 and 1.0.0 each both ways. Yardstick: 1.1x.

    RC_PG_DSN=postgresql://... uv run python bench/post_deploy_monitor.py [runs] [interval_s]

Default: 3 runs of each, a 10 s interval. Needs what bench/canary_detection.py needs.
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
from pathlib import Path

import docker
import psycopg
from _common import start_nginx
from canary_detection import SCRAPE_S, SLACK_S, first_breach, push_images
from conftest import Nginx
from integration.test_canary_e2e import Discovery, Load, Prometheus, _has_data
from rig import config_builder as toml
from rig.helpers import wait_until
from rig.opkit import run
from rig.traffic import Traffic

from services import factory
from services.adapters.docker_fleet import APP
from services.canary import trace
from services.core import config as config_module
from services.core.events import LogLine, OperationStarted, Outcome, StepFinished, StepStarted


def config_text(repository: str, nginx: Nginx, prometheus: Prometheus, interval: int, mode: str) -> str:
    low = 24000 + (uuid.uuid4().int % 400) * 20
    docker_url = os.environ.get("RC_DOCKER_URL", "unix:///var/run/docker.sock")
    environments = {"staging": toml.rig_staging(nginx, docker_url, low, metrics=toml.prometheus(prometheus.url))}
    sections = {"metrics": {"window": f"{interval}s", "min_samples": 8, "timeout_s": 1},
                "monitor": {"after_deploy": mode, "check_interval_s": interval, "duration_s": interval * 3},
                "backup": toml.backup(), "migrations": {"dir": "migrations"}}
    return toml.release(environments, name=f"rc-bench-monitor-{uuid.uuid4().hex[:8]}", image=repository,
                        **sections).text()


def detect(services: factory.Services, prometheus: Prometheus, nginx: Nginx) -> tuple[float, int, int, int]:
    """(detection s, the check that rolled back, requests sent, requests failed) of one deploy of `bad`."""
    with Traffic(nginx) as traffic:
        result, events, _ = run(services, "deploy", "staging", {"version": "bad"}, typed="yes")
    if not result.detail.startswith("rolled back"):
        raise RuntimeError(f"not rolled back: {result.outcome} {result.detail}")
    record = services.journal.get(result.op_id)
    why = [e for e in trace.entries(record) if e.action == "rollback"][-1]
    assert why.threshold is not None and why.rule == "error_rate", why
    switching = next(e.at for e in events if isinstance(e, StepStarted) and e.step_id == "apply")
    rolling = next(e.at for e in events if isinstance(e, LogLine) and e.text.startswith("ROLLING BACK"))
    breach = first_breach(prometheus, why.query, why.threshold, switching, rolling)
    return rolling - breach, why.check, traffic.sent, len(traffic.failures)


def until_first_check(services: factory.Services, version: str, monitored: bool) -> float:
    """Seconds from the operation's start to the monitor's first check starting (or, without the
    monitor, to the deploy's end)."""
    result, events, _ = run(services, "deploy", "staging", {"version": version}, typed="yes")
    began = next(e.at for e in events if isinstance(e, OperationStarted))
    started = {e.step_id: e.at for e in events if isinstance(e, StepStarted)}
    ended = {e.step_id: e.at for e in events if isinstance(e, StepFinished)}
    print("  steps (s): " + ", ".join(f"{step} {ended[step] - at:.3f}" for step, at in started.items()
                                      if step in ended), flush=True)
    if monitored:
        return started["monitor"] - began
    if result.outcome is not Outcome.SUCCEEDED:
        raise RuntimeError(f"deploy of {version} failed: {result.detail}")
    return events[-1].at - began


def app_for(work: Path, repo: str, nginx: Nginx, prometheus: Prometheus, interval: int, dsn: str,
            databases: list[str]) -> factory.Services:
    """The app (its own database; `[monitor] after_deploy = "act"`), 1.0.0 deployed."""
    folder = work / "app"
    (folder / "migrations").mkdir(parents=True)
    # A window of 3 checks: `bad` is rolled back within it, a good deploy's passes after 3 checks.
    (folder / "release.toml").write_text(config_text(repo, nginx, prometheus, interval, "act"))
    databases.append(f"rc_bench_{uuid.uuid4().hex[:10]}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{databases[-1]}"')
    db = urllib.parse.urlsplit(dsn)._replace(path=f"/{databases[-1]}").geturl()
    services = factory.build(config_module.load(folder / "release.toml", {"TEST_DB": db}), state=folder / "state")
    if run(services, "deploy", "staging", {"version": "1.0.0"}, typed="yes")[0].outcome is not Outcome.SUCCEEDED:
        raise SystemExit("the first deploy failed")
    return services


def remove(client: docker.DockerClient, app: str) -> None:
    for container in client.containers.list(all=True, filters={"label": f"{APP}={app}"}):
        container.remove(force=True)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    interval = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    dsn = os.environ.get("RC_PG_DSN") or sys.exit("RC_PG_DSN is not set (see the docstring)")
    client = docker.DockerClient(base_url=os.environ.get("RC_DOCKER_URL", "unix:///var/run/docker.sock"),
                                 timeout=300)
    detections: list[tuple[float, int, int, int]] = []
    timings: dict[bool, list[float]] = {True: [], False: []}
    databases, apps = [], []
    with tempfile.TemporaryDirectory(prefix="rc-bench-monitor-") as scratch:
        work = Path(scratch)
        repo = push_images(client, os.environ.get("RC_REGISTRY", "127.0.0.1:5000"), work)
        pulled = client.images.pull(repo, "1.0.0")
        pulled.tag(repo, "2.0.0")  # the sample app's VERSION comes from the tag
        client.images.push(repo, "2.0.0")
        nginx, prometheus = start_nginx(work / "nginx"), Prometheus(work / "prometheus")
        prometheus.start()
        try:
            services = app_for(work, repo, nginx, prometheus, interval, dsn, databases)
            apps.append(services.config.app.name)
            with Discovery(client, services.config.app.name, prometheus.targets), Load(nginx):
                wait_until(lambda: _has_data(prometheus, 'sum(rate(http_requests_total{track="stable"}[5s]))'),
                           timeout=60, what="Prometheus to see stable's requests")
                for n in range(runs):
                    time.sleep(interval + 2)  # the last run's samples leave the rate window
                    detections.append(detect(services, prometheus, nginx))
                    print(f"detection run {n + 1}: {detections[-1]}", flush=True)
                # The same app, the same history: with and without the monitor in turn, 1 check each.
                for n in range(2 * runs):
                    monitored = n % 4 in (0, 3)  # act, off, off, act: each version both ways
                    mode = "act" if monitored else "off"
                    watch = services.config.monitor.model_copy(update={"after_deploy": mode, "duration_s": interval})
                    services.config = services.config.model_copy(update={"monitor": watch})
                    timings[monitored].append(until_first_check(services, ("2.0.0", "1.0.0")[n % 2],
                                                                monitored))
                    print(f"{mode} run {len(timings[monitored])}: {timings[monitored][-1]:.2f} s", flush=True)
        finally:
            prometheus.stop()
            subprocess.run([*nginx.base, "-s", "stop"], capture_output=True, check=False)
            for app in apps:
                remove(client, app)
            with psycopg.connect(dsn, autocommit=True) as conn:
                for database in databases:
                    conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    report(detections, timings, interval)


def report(detections: list[tuple[float, int, int, int]], timings: dict[bool, list[float]], interval: int) -> None:
    seconds = [d[0] for d in detections]
    limit = interval + SLACK_S
    print("\n| figure | runs | median | max | yardstick | verdict |\n| --- | --- | --- | --- | --- | --- |")
    print(f"| detection to rollback start, {interval} s checks (scrape {SCRAPE_S:g} s) | {len(seconds)} |"
          f" {statistics.median(seconds):.2f} s | {max(seconds):.2f} s | {limit:g} s |"
          f" {'within' if max(seconds) <= limit else '**over**'} |")
    sent, failed = sum(d[2] for d in detections), sum(d[3] for d in detections)
    print(f"| failed requests over each bad deploy and its rollback | {len(detections)} | - | {failed} of {sent} |"
          f" 0 | {'within' if failed == 0 else '**over**'} |")
    on, off = statistics.median(timings[True]), statistics.median(timings[False])
    print(f"| deploy up to the first check: with the monitor {on:.2f} s, alone {off:.2f} s | {len(timings[True])} |"
          f" {on / off:.3f}x | {max(timings[True]) / min(timings[False]):.3f}x | 1.1x |"
          f" {'within' if on / off <= 1.1 else '**over**'} |")
    print(f"checks that rolled back: {[d[1] for d in detections]}; with: {timings[True]}; alone: {timings[False]}")


if __name__ == "__main__":
    main()
