"""The environments pane's 2 s poll of a Docker host over ssh://: connections and status() latency.

The same DockerHostTarget, the same host (the rig's sshd in front of the rig's engine), the same
one running sample-app container, in the same run, two ways:

- before (the yardstick): a new ssh connection for every call, as the target did until it kept
  one: close() after every status() ends the connection, the next call makes one again;
- after: the one connection the target keeps while the console runs.

The poll is the pane's: status(), then 2 s, then the next (never overlapping). SSH connections
are counted where the sshd accepts them, through a counting relay in front of it (the sshd is
shared; nobody else's connections are counted).

    uv run python bench/ssh_session.py [seconds]   # default 60 per way; needs the rig (RC_SSH_DOCKER_URL)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import docker  # noqa: E402
from _common import docker_host_release, start_nginx  # noqa: E402
from conftest import Nginx  # noqa: E402
from rig.sample_app import prepare_context  # noqa: E402
from rig.tcp_count import CountingRelay  # noqa: E402

from services.adapters.docker_target import APP, DockerHostTarget  # noqa: E402
from services.core import config as config_module  # noqa: E402

POLL_S = 2.0  # the environments pane's


def target_for(app: str, repo: str, server: Nginx, docker_url: str, low: int) -> DockerHostTarget:
    return DockerHostTarget(config_module.parse(docker_host_release(app, repo, server, docker_url, low), {}),
                            "production")


def poll(target: DockerHostTarget, seconds: float, anew: bool) -> tuple[list[float], float]:
    """status() every POLL_S for `seconds`: each call's latency, and the time it all took."""
    latencies: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        begun = time.perf_counter()
        status = target.status()
        latencies.append(time.perf_counter() - begun)
        if status.ready != 1:
            raise SystemExit(f"unexpected status: {status}")
        if anew:
            target.close()
        time.sleep(POLL_S)
    return latencies, time.monotonic() - started


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    engine_url = os.environ.get("RC_DOCKER_URL", "unix:///var/run/docker.sock")
    registry = os.environ.get("RC_REGISTRY", "127.0.0.1:5000")
    ssh_url = os.environ.get("RC_SSH_DOCKER_URL")
    if not ssh_url:
        raise SystemExit("RC_SSH_DOCKER_URL is not set: run it under the rig (tests/rig/run starts sshd)")
    sshd = urlsplit(ssh_url)
    client = docker.DockerClient(base_url=engine_url, timeout=300)
    repo = f"{registry}/rc-bench-ssh-{uuid.uuid4().hex[:8]}"
    app = f"rc-bench-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="rc-bench-ssh-") as scratch:
        work = Path(scratch)
        client.images.build(path=str(prepare_context(work / "context")), tag=f"{repo}:1.0.0",
                                       network_mode="host", rm=True)
        for line in client.images.push(repo, "1.0.0", stream=True, decode=True):
            if "error" in line:
                raise SystemExit(f"push failed: {line}")
        server = start_nginx(work / "nginx")
        low = 22000 + (uuid.uuid4().int % 400) * 20
        results: dict[str, tuple[list[float], float, int]] = {}
        try:
            target_for(app, repo, server, engine_url, low).deploy(f"{repo}:1.0.0", lambda line: None)
            for name, anew in (("before", True), ("after", False)):
                with CountingRelay((str(sshd.hostname), int(sshd.port or 22))) as relay:
                    target = target_for(app, repo, server, f"ssh://{sshd.username}@127.0.0.1:{relay.port}", low)
                    latencies, took = poll(target, seconds, anew)
                    target.close()
                    results[name] = (latencies, took, relay.accepted)
                print(f"{name}: {len(latencies)} polls, {relay.accepted} ssh connections", flush=True)
        finally:
            subprocess.run([*server.base, "-s", "stop"], capture_output=True, check=False)
            for container in client.containers.list(all=True, filters={"label": f"{APP}={app}"}):
                container.remove(force=True)
            client.images.remove(f"{repo}:1.0.0")  # untagged only: the build cache may share the image
    report(results, seconds)


def report(results: dict[str, tuple[list[float], float, int]], seconds: float) -> None:
    print(f"\nthe pane's poll (status(), then {POLL_S:g} s) over ssh:// for {seconds:g} s each way:\n")
    print("| | ssh connections per minute | status() median | status() p90 | first status() |")
    print("| --- | --- | --- | --- | --- |")
    for name, label in (("before", "a new connection per call (before, the yardstick)"),
                        ("after", "one connection kept per environment (after)")):
        latencies, took, accepted = results[name]
        ordered = sorted(latencies)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        print(f"| {label} | {accepted * 60 / took:.1f} | {1000 * statistics.median(latencies):.0f} ms |"
              f" {1000 * p90:.0f} ms | {1000 * latencies[0]:.0f} ms |")
    before, after = (statistics.median(results[n][0]) for n in ("before", "after"))
    print(f"\nstatus() median after/before: {after / before:.2f}x")


if __name__ == "__main__":
    main()
