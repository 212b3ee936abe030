"""Cancel to stopped: ctrl+x while the Docker host target waits for a container that never gets healthy.

An operation whose step deploys the sample app's `broken` image (no server: its HEALTHCHECK
never passes) is cancelled 1.3 s into the health wait, from another thread, as ctrl+x does.
Timed from the cancel until the operation has returned cancelled, the container put back
(removed) included. In the same run, the yardstick: the same deploy with the cancel invisible to
the target's wait, as before pause() (an uninterruptible time.sleep(POLL_S) loop): it stops
only at ready_timeout_s, when the deploy fails and puts back.

    uv run python bench/cancel_wait.py [rounds]   # default 5; needs dockerd and the registry (the rig)

With RC_SSH_DOCKER_URL it also runs over ssh:// (one kept connection) in the same run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import docker  # noqa: E402
from _common import docker_host_release, start_nginx  # noqa: E402
from rig.sample_app import build_derived, prepare_context  # noqa: E402

from services.adapters.docker_target import APP, DockerHostTarget  # noqa: E402
from services.core import config as config_module  # noqa: E402
from services.core.audit import AuditLog  # noqa: E402
from services.core.events import Event, Outcome  # noqa: E402
from services.core.journal import Journal  # noqa: E402
from services.core.locks import FileLocks  # noqa: E402
from services.core.operations import Operation, Runner, Step, StepContext, shielded  # noqa: E402

READY_TIMEOUT_S = 10
INTO_THE_WAIT_S = 1.3  # not a multiple of the old POLL_S (0.5 s)


def cancel_once(runner: Runner, target: DockerHostTarget, image: str, old_way: bool) -> tuple[float, Outcome]:
    cancel, waiting = threading.Event(), threading.Event()

    def on_line(line: str) -> None:
        if line.startswith("waiting up to"):
            waiting.set()

    def deploy(ctx: StepContext) -> str:
        if old_way:
            with shielded():  # the wait cannot see the cancel: time.sleep, as before
                target.deploy(image, on_line)
        else:
            target.deploy(image, on_line)
        return "deployed"

    operation = Operation("deploy", "production", f"Deploy {image}", [Step("apply", "Deploy", deploy)],
                          takes_lock=False)
    outcomes: list[Outcome] = []

    def emit(event: Event) -> None:
        pass

    worker = threading.Thread(target=lambda: outcomes.append(
        runner.run(operation, emit, lambda question: None, cancel).outcome))
    worker.start()
    if not waiting.wait(120):
        raise SystemExit("the deploy never reached its health wait")
    time.sleep(INTO_THE_WAIT_S)
    begun = time.perf_counter()
    cancel.set()
    worker.join()
    return time.perf_counter() - begun, outcomes[0]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    engine_url = os.environ.get("RC_DOCKER_URL", "unix:///var/run/docker.sock")
    registry = os.environ.get("RC_REGISTRY", "127.0.0.1:5000")
    client = docker.DockerClient(base_url=engine_url, timeout=300)
    repo = f"{registry}/rc-bench-cancel-{uuid.uuid4().hex[:8]}"
    app = f"rc-bench-{uuid.uuid4().hex[:6]}"
    engines = {"local socket": engine_url}
    if ssh_url := os.environ.get("RC_SSH_DOCKER_URL"):
        engines[ssh_url] = ssh_url
    with tempfile.TemporaryDirectory(prefix="rc-bench-cancel-") as scratch:
        work = Path(scratch)
        os.environ["XDG_STATE_HOME"] = str(work / "state")
        base, _ = client.images.build(path=str(prepare_context(work / "context")), tag=f"{repo}:base",
                                      network_mode="host", rm=True)
        build_derived(client, base.id, f"{repo}:broken", 'CMD ["/bin/sleep", "3600"]')
        for line in client.images.push(repo, "broken", stream=True, decode=True):
            if "error" in line:
                raise SystemExit(f"push failed: {line}")
        server = start_nginx(work / "nginx")
        runner = Runner(Journal(work / "journal.sqlite3"), AuditLog(work / "audit.jsonl"), FileLocks(work / "locks"))
        low = 23000 + (uuid.uuid4().int % 400) * 20
        results: dict[tuple[str, bool], list[float]] = {}
        try:
            for where, url in engines.items():
                raw = docker_host_release(app, repo, server, url, low, ready_timeout_s=READY_TIMEOUT_S)
                target = DockerHostTarget(config_module.parse(raw, {}), "production")
                for n in range(rounds):
                    for old_way in (False, True):
                        took, outcome = cancel_once(runner, target, f"{repo}:broken", old_way)
                        expected = Outcome.FAILED if old_way else Outcome.CANCELLED
                        if outcome is not expected:
                            raise SystemExit(f"{where}: {outcome} where {expected} was expected")
                        results.setdefault((where, old_way), []).append(took)
                    print(f"{where} round {n + 1}: cancelled in {results[where, False][-1]:.3f} s,"
                          f" the old way {results[where, True][-1]:.2f} s", flush=True)
                target.close()
        finally:
            subprocess.run([*server.base, "-s", "stop"], capture_output=True, check=False)
            for container in client.containers.list(all=True, filters={"label": f"{APP}={app}"}):
                container.remove(force=True)
            for tag in ("broken", "base"):  # untagged only: the build cache may share the image with others
                client.images.remove(f"{repo}:{tag}")
    print(f"\n{rounds} rounds, cancelled {INTO_THE_WAIT_S} s into the health wait (ready_timeout_s"
          f" {READY_TIMEOUT_S}), medians (min-max):\n")
    print("| | cancel to stopped, put back done |")
    print("| --- | --- |")
    for where in engines:
        for old_way, label in ((False, "pause() wakes on cancel (after)"),
                               (True, "uninterruptible time.sleep(POLL_S) loop (before, the yardstick)")):
            runs = results[where, old_way]
            print(f"| {where}: {label} | {statistics.median(runs):.3f} s ({min(runs):.3f}-{max(runs):.3f}) |")


if __name__ == "__main__":
    main()
