"""Deploy on a Docker host: the console's DockerHostTarget vs `docker compose pull && up -d --no-deps app`.

Same engine, same registry, same sample app image (tests/fixtures/sample-app) under a new tag
for every deploy, in the same run. Requests go one after another (a new connection each)
through a private nginx all along, and every failed one is counted:

- the target: pull, start beside the old container, health (GET /api/health answers 2xx on its
  port), switch the nginx upstream, drain (until nginx has no connection left to the old one, at
  most drain_s: 2 s, the default), stop the old, prune; the median time of each step's end is
  printed as a timeline;
- the baseline: Debian's docker-compose 1.29 (installed with apt if missing) recreates the
  `app` service on one fixed port, behind the same nginx; timed until compose returns and
  until the app answers /api/health again;
- a rollback on the target: deploying the previous tag starts its stopped container again.

    uv run python bench/deploy.py [rounds]     # default 5; needs dockerd and the registry
    bash tests/rig/run --exec uv run --frozen python bench/deploy.py 5    # the rig starts both

With RC_SSH_DOCKER_URL (the rig's sshd in front of the same engine), the target also deploys
over ssh:// in the same run.

`bash tests/rig/run` starts both (RC_DOCKER_URL, RC_REGISTRY; defaults: the local socket, 127.0.0.1:5000).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import docker  # noqa: E402
from _common import docker_host_release, start_nginx  # noqa: E402
from conftest import Nginx  # noqa: E402
from integration.test_docker_target import Traffic, get_version  # noqa: E402
from rig.helpers import free_port, wait_until  # noqa: E402
from rig.sample_app import prepare_context  # noqa: E402

from services.adapters.docker_target import APP, DockerHostTarget  # noqa: E402
from services.core import config as config_module  # noqa: E402

COMPOSE_FILE = """services:
  app:
    image: "{repo}:${{TAG}}"
    network_mode: host
    environment:
      PORT: "{port}"
      VERSION: "${{TAG}}"
      LATENCY_MS: "0"
"""


def compose_argv() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") is None:
        print("installing docker-compose (apt-get install -y docker-compose)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "docker-compose"], check=True, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return ["docker-compose"]


def point_nginx(server: Nginx, port: int) -> None:
    server.upstream_file.write_text(f"upstream {server.upstream} {{\n    server 127.0.0.1:{port};\n}}\n")
    subprocess.run(server.reload, check=True, capture_output=True)


Run = tuple[float, int, int, float]  # seconds, requests sent, requests failed, first to last failure (s)


class TimedTraffic(Traffic):
    """The tests' client thread, noting when each failure happened."""

    def __init__(self, server: Nginx) -> None:
        super().__init__(server)
        self.failed_at: list[float] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sent += 1
            try:
                self.versions[get_version(self.nginx)] += 1
            except Exception as exc:  # noqa: BLE001 - counted
                self.failed_at.append(time.perf_counter())
                self.failures.append(f"{type(exc).__name__}: {exc}")


def timed(action: Callable[[], Any], server: Nginx) -> Run:
    with TimedTraffic(server) as traffic:
        time.sleep(0.5)  # requests flow before it starts
        started = time.perf_counter()
        action()
        elapsed = time.perf_counter() - started
        time.sleep(0.5)
    window = traffic.failed_at[-1] - traffic.failed_at[0] if traffic.failed_at else 0.0
    return elapsed, traffic.sent, len(traffic.failures), window


# The deploy's steps, as its log lines say each is done (the first line that starts with, or holds, the text).
STEPS = (("pulled, container started", " as stable"), ("healthy", " healthy after "),
         ("nginx reloaded", "nginx reloaded"), ("drained", "drain"), ("old one stopped", "stopped "),
         ("pruned, returned", "deployed "))


class Switched:
    """on_line for a deploy: when nginx was reloaded onto the new container, and each step's end, from the start."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.at: list[float] = []
        self.lines: list[tuple[float, str]] = []

    def deploy(self, target: DockerHostTarget, image: str) -> None:
        """target.deploy, timed from its call (timed() lets traffic flow for 0.5 s first: until 2026-12-06
        that lead-in was counted in "new version serves after")."""
        self.started = time.perf_counter()
        target.deploy(image, self)

    def __call__(self, line: str) -> None:
        now = time.perf_counter() - self.started
        self.lines.append((now, line))
        if line.startswith("nginx reloaded"):
            self.at.append(now)

    def steps(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for step, text in STEPS:
            at = next((at for at, line in self.lines if text in line), None)
            if at is not None:
                found[step] = at
        return found


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    engine_url = os.environ.get("RC_DOCKER_URL", "unix:///var/run/docker.sock")
    registry = os.environ.get("RC_REGISTRY", "127.0.0.1:5000")
    client = docker.DockerClient(base_url=engine_url, timeout=300)
    compose = compose_argv()
    repo = f"{registry}/rc-bench-deploy-{uuid.uuid4().hex[:8]}"
    tags = [f"1.0.{n}" for n in range(3 * rounds + 2)]
    app = f"rc-bench-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="rc-bench-deploy-") as scratch:
        work = Path(scratch)
        anchor = f"rc-bench-deploy:{uuid.uuid4().hex[:8]}"  # keeps the image while its registry tags go
        image, _ = client.images.build(path=str(prepare_context(work / "context")), tag=anchor,
                                       network_mode="host", rm=True)
        for tag in tags:
            image.tag(repo, tag)
            for line in client.images.push(repo, tag, stream=True, decode=True):
                if "error" in line:
                    raise SystemExit(f"push failed: {line}")
            client.images.remove(f"{repo}:{tag}")  # pulled for real by both sides
        server = start_nginx(work / "nginx")
        try:
            results = run_both(client, engine_url, compose, repo, tags, app, server, work, rounds)
        finally:
            subprocess.run([*server.base, "-s", "stop"], capture_output=True, check=False)
            for container in client.containers.list(all=True, filters={"label": f"{APP}={app}"}):
                container.remove(force=True)
            subprocess.run([*compose, "-p", app, "-f", str(work / "compose.yml"), "down"], capture_output=True,
                           check=False, cwd=work)
            try:
                client.images.remove(image.id, force=True)
            except docker.errors.APIError as err:  # another image built on it (a shared engine): kept
                print(f"kept the sample image: {err.explanation}")
    report(results, rounds)


TIMELINES: dict[str, list[dict[str, float]]] = {"target": [], "ssh": []}


def run_both(client: Any, engine_url: str, compose: list[str], repo: str, tags: list[str], app: str,
             server: Nginx, work: Path, rounds: int) -> dict[str, list[Run]]:
    low = 21000 + (uuid.uuid4().int % 400) * 20
    raw = docker_host_release(app, repo, server, engine_url, low)
    target = DockerHostTarget(config_module.parse(raw, {}), "production")
    results: dict[str, list[Run]] = {name: [] for name in (
        "target", "target_switched", "rollback", "rollback_switched", "ssh", "ssh_switched", "compose",
        "compose_healthy")}
    quiet: Callable[[str], None] = lambda line: None  # noqa: E731
    target.deploy(f"{repo}:{tags[0]}", quiet)  # untimed: the first has nothing to replace
    wait_until(lambda: get_version(server) == tags[0], timeout=10, what="the first deploy to serve")
    for n in range(1, rounds + 1):
        for name, tag in (("target", tags[n]), ("rollback", tags[n - 1])):
            switched = Switched()
            results[name].append(timed(lambda tag=tag, on=switched: on.deploy(target, f"{repo}:{tag}"), server))
            results[f"{name}_switched"].append((switched.at[-1], 0, 0, 0.0))
            if name == "target":
                TIMELINES["target"].append(switched.steps())
        target.deploy(f"{repo}:{tags[n]}", quiet)  # forward again, untimed
        print(f"round {n}: deploy {results['target'][-1][0]:.2f}s, rollback {results['rollback'][-1][0]:.2f}s",
              flush=True)
    if ssh_url := os.environ.get("RC_SSH_DOCKER_URL"):  # the same engine and containers, through sshd
        over_ssh = DockerHostTarget(config_module.parse(docker_host_release(app, repo, server, ssh_url, low), {}),
                                    "production")
        for n in range(2 * rounds + 2, 3 * rounds + 2):
            switched = Switched()
            results["ssh"].append(timed(lambda n=n, on=switched: on.deploy(over_ssh, f"{repo}:{tags[n]}"), server))
            results["ssh_switched"].append((switched.at[-1], 0, 0, 0.0))
            TIMELINES["ssh"].append(switched.steps())
            print(f"over ssh: deploy {results['ssh'][-1][0]:.2f}s", flush=True)
        over_ssh.close()
    for container in client.containers.list(all=True, filters={"label": f"{APP}={app}"}):
        container.remove(force=True)

    port = free_port()
    (work / "compose.yml").write_text(COMPOSE_FILE.format(repo=repo, port=port))
    base = [*compose, "-p", app, "-f", str(work / "compose.yml")]

    def up(tag: str) -> None:
        env = {**os.environ, "TAG": tag, "DOCKER_HOST": engine_url}
        for step in (["pull", "app"], ["up", "-d", "--no-deps", "app"]):
            done = subprocess.run([*base, *step], env=env, cwd=work, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(step)} failed: {done.stderr[-1000:]}")

    def healthy(tag: str) -> bool:
        try:
            return get_version(server) == tag
        except Exception:  # noqa: BLE001 - not yet
            return False

    up(tags[rounds + 1])
    point_nginx(server, port)
    wait_until(lambda: healthy(tags[rounds + 1]), timeout=30, interval=0.05, what="compose's first app")
    for n in range(rounds):
        tag = tags[n]

        def until_healthy(tag: str = tag) -> None:
            started = time.perf_counter()
            up(tag)
            results["compose"].append((time.perf_counter() - started, 0, 0, 0.0))
            wait_until(lambda: healthy(tag), timeout=30, interval=0.02, what=f"compose's app {tag}")

        results["compose_healthy"].append(timed(until_healthy, server))
        print(f"compose {n + 1}: up {results['compose'][-1][0]:.2f}s, answering "
              f"{results['compose_healthy'][-1][0]:.2f}s", flush=True)
    return results


def report(results: dict[str, list[Run]], rounds: int) -> None:
    def median(name: str) -> str:
        return f"{statistics.median(run[0] for run in results[name]):.2f} s"

    def requests(name: str) -> str:
        runs = results[name]
        sent, failed = sum(run[1] for run in runs), sum(run[2] for run in runs)
        windows = ", ".join(f"{run[3]:.2f}" for run in runs)
        return f"{failed} failed of {sent}" + (f"; errors for {windows} s" if failed else "")

    print(f"\n{rounds} rounds each, medians; requests through nginx, one after another, during all rounds:\n")
    print("| | returns after | new version serves after | requests during |")
    print("| --- | --- | --- | --- |")
    print(f"| DockerHostTarget.deploy, new tag | {median('target')} | {median('target_switched')} |"
          f" {requests('target')} |")
    print(f"| DockerHostTarget.deploy, previous tag (rollback) | {median('rollback')} |"
          f" {median('rollback_switched')} | {requests('rollback')} |")
    if results["ssh"]:
        print(f"| DockerHostTarget.deploy, new tag, over {os.environ.get('RC_SSH_DOCKER_URL')} | {median('ssh')} |"
              f" {median('ssh_switched')} | {requests('ssh')} |")
    print(f"| compose pull && up -d --no-deps app | {median('compose')} | {median('compose_healthy')} |"
          f" {requests('compose_healthy')} |")
    for name, runs in TIMELINES.items():
        if runs:
            print(f"\ntimeline of a deploy of a new tag ({name}), medians, s from the call: " + ", ".join(
                f"{step} {statistics.median(run[step] for run in runs if step in run):.2f}"
                for step, _text in STEPS if any(step in run for run in runs)))
    print("\nall times (s):")
    for name, runs in results.items():
        print(f"  {name}: " + ", ".join(f"{run[0]:.2f}" for run in runs))


if __name__ == "__main__":
    main()
