"""The Docker host deploy target against the rig's real engine, registry, nginx and sshd.

Every flow runs over the local socket and over ssh://root@127.0.0.1:2222. A client thread
sends requests through nginx (a new connection each) all along, and must see no failure.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import stat
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from conftest import Nginx
from rig import config_builder as toml
from rig.helpers import wait_until
from rig.tcp_count import CountingRelay
from rig.traffic import Traffic, get_version, shares

from services.adapters.docker_target import APP, DockerHostTarget
from services.adapters.nginx_split import LocalHost, SshHost, canary_weight, parse, render, split
from services.core.operations import StepFailed
from services.core.ports import Deploy, Promote, StartCanary, TargetStatus

SECRET_DB = "postgresql://app:s3cret-pw@127.0.0.1:5432/food"


# --- images in the registry --------------------------------------------------------------------


@pytest.fixture(params=["unix", "ssh"])
def docker_url(request: pytest.FixtureRequest, docker_client: Any) -> str:
    if request.param == "ssh":
        return str(request.getfixturevalue("ssh_docker_url"))
    return os.environ["RC_DOCKER_URL"]


@pytest.fixture
def make_target(docker_url: str, nginx: Nginx, docker_client: Any, tmp_path: Path
                ) -> Iterator[Callable[..., DockerHostTarget]]:
    """Factory of targets for one app (unique name) in environment production; its containers go after."""
    app = f"rc-target-{uuid.uuid4().hex[:8]}"
    low = 20000 + (uuid.uuid4().int % 600) * 20  # below the ephemeral range that free_port() draws from

    made: list[DockerHostTarget] = []

    def make(docker_url: str = docker_url, reload: list[str] | None = None, **target: Any) -> DockerHostTarget:
        docker = toml.rig_docker_target(nginx, docker_url, low, reload=reload, **{"env": {"LATENCY_MS": "0"}, **target})
        production = toml.environment(api_url=nginx.url + "/api", database_url=toml.secret("DB"),
                                      redis_url=toml.RIG_REDIS, production=True, features={"analytics": True},
                                      target=docker)
        config = toml.release({"production": production}, name=app, image="unused").parse({"DB": SECRET_DB})
        made.append(DockerHostTarget(config, "production"))
        return made[-1]

    yield make
    for each in made:  # an ssh:// target's connection
        each.close()
    for container in docker_client.containers.list(all=True, filters={"label": f"{APP}={app}"}):
        container.remove(force=True)


def containers(docker_client: Any, target: DockerHostTarget) -> list[Any]:
    return docker_client.containers.list(all=True, filters={"label": f"{APP}={target.config.app.name}"})


# --- requests through nginx ----------------------------------------------------------------------


def first_deploy(target: DockerHostTarget, image: str, nginx: Nginx) -> None:
    """The first deploy: nothing served before it, so no request need succeed until nginx's new workers run."""
    target.deploy(image, print)
    version = image.rsplit(":", 1)[1]

    def settled() -> bool:  # nginx's old workers (with the empty upstream) may answer for a moment
        try:
            return all(get_version(nginx) == version for _ in range(30))
        except RuntimeError:  # a 502 from an old worker
            return False

    wait_until(settled, timeout=15, what=f"nginx to serve {version} from every worker")


def deploy(target: DockerHostTarget, image: str, nginx: Nginx) -> list[str]:
    """Deploy with requests flowing through nginx all along; none may fail. The log lines."""
    lines: list[str] = []
    with Traffic(nginx) as traffic:
        target.deploy(image, lines.append)
    traffic.check()
    return lines


def assert_status(status: TargetStatus, version: str, ready: int = 1, canary: str | None = None) -> None:
    assert (status.version, status.ready, status.desired, status.canary_version) == (version, ready, ready, canary)


# --- the flows -------------------------------------------------------------------------------------


def test_deploy_rollback_and_plan_without_a_failed_request(
        make_target: Callable[..., DockerHostTarget], repository: str, nginx: Nginx, docker_client: Any) -> None:
    target = make_target()
    assert target.status().version == "-"
    first_deploy(target, f"{repository}:1.0.0", nginx)
    assert_status(target.status(), "1.0.0")

    plan = target.plan(Deploy(f"{repository}:2.0.0"))
    actions = Counter(c.action for c in plan.changes)
    assert actions == Counter({"create": 1, "stop": 1, "update": 1}), plan.changes
    text = "\n".join(c.diff for c in plan.changes)
    assert f'+  image: "{repository}:2.0.0"' in text and "weight=1;  # stable 2.0.0" in text
    assert "s3cret-pw" not in text
    assert 'DATABASE_URL: "**********"' in text
    assert len(containers(docker_client, target)) == 1  # a plan applies nothing

    deploy(target, f"{repository}:2.0.0", nginx)
    assert_status(target.status(), "2.0.0")
    first = {c.labels["release-console.version"]: c for c in containers(docker_client, target)}
    assert first["1.0.0"].status == "exited"  # kept, stopped, as the previous revision

    lines = deploy(target, f"{repository}:1.0.0", nginx)  # the rollback: one fast action
    assert not any(line.startswith("pulling") for line in lines), lines
    assert get_version(nginx) == "1.0.0"
    status = target.status()
    assert_status(status, "1.0.0")
    assert any("start" in event for event in status.events), status.events
    after = {c.labels["release-console.version"]: c for c in containers(docker_client, target)}
    assert after["1.0.0"].id == first["1.0.0"].id and after["1.0.0"].status == "running"  # the same container
    assert after["2.0.0"].status == "exited"
    env = dict(item.split("=", 1) for item in after["1.0.0"].attrs["Config"]["Env"])
    assert env["DATABASE_URL"] == SECRET_DB and env["VERSION"] == "1.0.0" and env["FEATURE_ANALYTICS"] == "true"
    assert env["PORT"] == after["1.0.0"].labels["release-console.port"] and env["LOG_LEVEL"] == "info"


def test_canary_split_follows_the_weight_then_promote(
        make_target: Callable[..., DockerHostTarget], repository: str, nginx: Nginx, docker_client: Any) -> None:
    target = make_target()
    first_deploy(target, f"{repository}:1.0.0", nginx)
    with Traffic(nginx) as traffic:
        target.start_canary(f"{repository}:2.0.0", 20, print)
    traffic.check()
    status = target.status()
    assert (status.canary_version, status.canary_weight, status.canary_ready) == ("2.0.0", 20, 1)
    for weight in (20, 50):
        if weight != 20:
            target.set_weight(weight, print)
            assert target.status().canary_weight == weight
        seen = shares(nginx)
        share = 100 * seen["2.0.0"] / sum(seen.values())
        assert abs(share - weight) <= 5, f"canary got {share:.1f}% of 1000 requests at weight {weight}: {seen}"

    with Traffic(nginx) as traffic:
        target.promote(print)
    traffic.check()
    assert_status(target.status(), "2.0.0")
    assert target.status().canary_weight == 0
    assert set(shares(nginx, 50)) == {"2.0.0"}
    states = {c.labels["release-console.version"]: c.status for c in containers(docker_client, target)}
    assert states == {"1.0.0": "exited", "2.0.0": "running"}
    names = {c.labels["release-console.version"]: c.name for c in containers(docker_client, target)}
    assert "-stable-" in names["2.0.0"]  # renamed when promoted: the role it serves now, for docker_sd

    with Traffic(nginx) as traffic:  # a canary that goes wrong: abort puts all traffic back
        target.start_canary(f"{repository}:3.0.0", 30, print)
        target.abort(print)
    traffic.check()
    assert set(shares(nginx, 50)) == {"2.0.0"}
    assert target.status().canary_version is None
    assert "3.0.0" not in {c.labels["release-console.version"] for c in containers(docker_client, target)}


# --- faults -----------------------------------------------------------------------------------------


def test_image_not_in_registry_and_health_never_reached_leave_the_old_serving(
        make_target: Callable[..., DockerHostTarget], repository: str, nginx: Nginx, docker_client: Any) -> None:
    target = make_target(ready_timeout_s=5)
    first_deploy(target, f"{repository}:1.0.0", nginx)
    with Traffic(nginx) as traffic:
        with pytest.raises(StepFailed) as missing:
            target.deploy(f"{repository}:9.9.9", print)
        with pytest.raises(StepFailed) as broken:
            target.deploy(f"{repository}:broken", print)
    traffic.check()
    assert f"{repository}:9.9.9 is not in the registry" in str(missing.value)
    assert "the upstream is unchanged: traffic goes to stable 1.0.0" in str(missing.value)
    assert "did not become healthy within 5s" in str(broken.value)
    assert "removed " in str(broken.value) and "traffic goes to stable 1.0.0" in str(broken.value)
    assert [c.labels["release-console.version"] for c in containers(docker_client, target)] == ["1.0.0"]
    assert_status(target.status(), "1.0.0")


def test_a_failing_reload_puts_the_old_upstream_back(
        make_target: Callable[..., DockerHostTarget], repository: str, nginx: Nginx, docker_client: Any) -> None:
    first_deploy(make_target(), f"{repository}:1.0.0", nginx)
    before = nginx.upstream_file.read_text()
    bad = make_target(reload=[*nginx.base, "-g", "no_such_directive on;", "-s", "reload"])
    with Traffic(nginx) as traffic, pytest.raises(StepFailed) as failed:
        bad.deploy(f"{repository}:2.0.0", print)
    traffic.check()
    message = str(failed.value)
    assert "nginx reload failed" in message and "no_such_directive" in message
    assert "the old " in message and "is back" in message and "traffic goes to stable 1.0.0" in message
    assert nginx.upstream_file.read_text() == before
    assert [c.labels["release-console.version"] for c in containers(docker_client, bad)] == ["1.0.0"]
    assert get_version(nginx) == "1.0.0"


def test_an_image_without_healthcheck_is_checked_over_http(
        make_target: Callable[..., DockerHostTarget], repository: str, nginx: Nginx) -> None:
    target = make_target()
    lines: list[str] = []
    target.deploy(f"{repository}:nocheck", lines.append)
    assert any("healthy after" in line for line in lines), lines
    wait_until(lambda: get_version(nginx) == "nocheck", timeout=5, what="nginx to serve nocheck")


def _seconds(lines: list[tuple[float, str]], text: str) -> float:
    """N from the first log line that says `text` N s ("... healthy after 0.3s", "drained after 1.52s: ...")."""
    found = next(re.search(rf"{text} ([0-9.]+)s", line) for _at, line in lines if re.search(rf"{text} [0-9.]+s", line))
    assert found is not None
    return float(found[1])


def test_ready_at_the_first_health_answer_and_the_drain_waits_for_requests_in_flight(
        make_target: Callable[..., DockerHostTarget], repository: str, nginx: Nginx, docker_client: Any) -> None:
    """A deploy switches once GET health_path answers, before the image's HEALTHCHECK has run even once
    (its interval is 2 s); then the old container serves what it has begun: a 3 s request through nginx,
    begun before the switch, ends 200 from the old version, and the old one is stopped only after it.
    With nothing in flight the drain ends soon after the reload, far inside drain_s (20 s here)."""
    target = make_target(env={"LATENCY_MS": "3000"}, drain_s=20)  # GET / takes 3 s; /api/health answers at once
    first_deploy(target, f"{repository}:1.0.0", nginx)
    answers: list[tuple[int, str, float]] = []

    def slow_request() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
        try:
            connection.request("GET", "/")
            answer = connection.getresponse()
            answers.append((answer.status, json.loads(answer.read())["version"], time.monotonic()))
        finally:
            connection.close()

    lines: list[tuple[float, str]] = []
    healthchecks_run_when_ready: list[int] = []

    def progress(line: str) -> None:
        lines.append((time.monotonic(), line))
        if " healthy after " in line:
            new = next(c for c in containers(docker_client, target) if c.labels["release-console.version"] == "2.0.0")
            new.reload()
            healthchecks_run_when_ready.append(len(new.attrs["State"]["Health"]["Log"]))

    (old,) = containers(docker_client, target)
    in_flight = threading.Thread(target=slow_request)
    with Traffic(nginx) as traffic:
        in_flight.start()
        wait_until(lambda: _working(old), timeout=10, what="the slow request to reach the 1.0.0 container")
        target.deploy(f"{repository}:2.0.0", progress)
        in_flight.join(10)
    traffic.check()
    assert [(status, version) for status, version, _at in answers] == [(200, "1.0.0")], lines
    stopped = next(at for at, line in lines if line.startswith("stopped "))
    assert answers[0][2] <= stopped, "the old container was stopped before its request ended"
    assert healthchecks_run_when_ready == [0], lines  # ready before the HEALTHCHECK's first run
    assert _seconds(lines, "drained after") < 20, lines

    lines = []
    with Traffic(nginx) as traffic:  # nothing long in flight: the drain ends soon after the new workers run
        target.deploy(f"{repository}:1.0.0", lambda line: lines.append((time.monotonic(), line)))
    traffic.check()
    assert _seconds(lines, "drained after") < 10, lines  # not drain_s (20 s): it counted nothing in flight


def _working(container: Any) -> bool:
    """The sample app's GET / is at work in `container`: its CGI sleeps LATENCY_MS (3 s here)."""
    return any(row[-1].startswith("sleep 3") for row in container.top()["Processes"])


def test_unreachable_engine(make_target: Callable[..., DockerHostTarget], docker_url: str) -> None:
    url = "ssh://root@127.0.0.1:1" if docker_url.startswith("ssh://") else "unix:///nonexistent/docker.sock"
    with pytest.raises(StepFailed) as failed:
        make_target(docker_url=url).deploy("127.0.0.1:5000/x:1", print)
    assert f"cannot reach the Docker engine at {url}" in str(failed.value)
    assert "nothing was changed" in str(failed.value)


def _ssh_master(target: DockerHostTarget) -> int | None:
    """The pid of the target's ssh connection (its control master, in the background), if it runs."""
    control = cast(SshHost, target.host).control_path
    if control is None:
        return None
    done = subprocess.run(["ssh", "-o", f"ControlPath={control}", "-O", "check", "--", "127.0.0.1"],
                          capture_output=True, text=True, check=False, timeout=10)
    found = re.search(r"Master running \(pid=(\d+)\)", done.stderr)
    return int(found[1]) if found else None


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # exited, not reaped
    except OSError:
        return True


@pytest.mark.parametrize("docker_url", ["ssh"], indirect=True)
def test_ssh_drop_mid_deploy_then_a_retry_converges(
        make_target: Callable[..., DockerHostTarget], repository: str, nginx: Nginx, docker_client: Any,
        ssh_docker_url: str) -> None:
    target = make_target()
    first_deploy(target, f"{repository}:1.0.0", nginx)
    killed: list[int] = []

    def drop_while_waiting(line: str) -> None:
        if line.startswith("waiting up to") and not killed and (pid := _ssh_master(target)):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    with Traffic(nginx) as traffic:
        with pytest.raises(StepFailed) as dropped:
            target.deploy(f"{repository}:2.0.0", drop_while_waiting)
        assert killed, f"no ssh tunnel to drop; the deploy stopped with: {dropped.value}"
        message = str(dropped.value)
        assert f"lost the connection to {ssh_docker_url} while deploying" in message
        assert "may still be running" in message
        assert "the upstream is unchanged: traffic goes to stable 1.0.0" in message
        running = {c.labels["release-console.version"] for c in containers(docker_client, target)
                   if c.status == "running"}
        assert running == {"1.0.0", "2.0.0"}  # the leftover of the dropped attempt
        assert get_version(nginx) == "1.0.0"
        lines: list[str] = []
        target.deploy(f"{repository}:2.0.0", lines.append)
    traffic.check()
    assert any(line.startswith("reusing ") for line in lines), lines
    states = sorted((c.labels["release-console.version"], c.status) for c in containers(docker_client, target))
    assert states == [("1.0.0", "exited"), ("2.0.0", "running")]
    assert_status(target.status(), "2.0.0")


@pytest.mark.parametrize("docker_url", ["ssh"], indirect=True)
def test_one_ssh_connection_per_environment_for_the_session(
        make_target: Callable[..., DockerHostTarget], repository: str, nginx: Nginx, ssh_docker_url: str) -> None:
    """A deploy and the environments pane's status polls share one ssh connection, counted where the
    sshd accepts them (a relay in front of it); close() ends it, and the next call makes one again."""
    sshd = urlsplit(ssh_docker_url)
    with CountingRelay((str(sshd.hostname), int(sshd.port or 22))) as relay:
        target = make_target(docker_url=f"ssh://{sshd.username}@127.0.0.1:{relay.port}")
        first_deploy(target, f"{repository}:1.0.0", nginx)
        for _ in range(5):
            assert_status(target.status(), "1.0.0")
        assert relay.accepted == 1
        master = _ssh_master(target)
        assert master is not None
        target.close()
        wait_until(lambda: _gone(master), timeout=10, what="the ssh connection to end")
        assert_status(target.status(), "1.0.0")
        assert relay.accepted == 2
        target.close()


@pytest.mark.parametrize("docker_url", ["unix"], indirect=True)
def test_a_changed_config_is_never_lost_to_a_reused_container(
        make_target: Callable[..., DockerHostTarget], repository: str, nginx: Nginx, docker_client: Any) -> None:
    first_deploy(make_target(), f"{repository}:1.0.0", nginx)
    deploy(make_target(), f"{repository}:2.0.0", nginx)  # 1.0.0 is kept, stopped, as the previous revision
    changed = make_target(env={"LATENCY_MS": "0", "FEATURE_X": "on"})  # e.g. a new flag in release.toml
    deploy(changed, f"{repository}:2.0.0", nginx)  # the same image: replaced, to take the new setting
    deploy(changed, f"{repository}:1.0.0", nginx)  # the rollback: the stopped 1.0.0 is not reused
    running = [c for c in containers(docker_client, changed) if c.status == "running"]
    assert [c.labels["release-console.version"] for c in running] == ["1.0.0"]
    assert "FEATURE_X=on" in running[0].attrs["Config"]["Env"]
    assert get_version(nginx) == "1.0.0"


@pytest.mark.parametrize("docker_url", ["unix"], indirect=True)
def test_scale_stop_start_and_a_canary_plan(
        make_target: Callable[..., DockerHostTarget], repository: str, nginx: Nginx, docker_client: Any) -> None:
    target = make_target()
    first_deploy(target, f"{repository}:1.0.0", nginx)
    with Traffic(nginx) as traffic:
        target.scale(2, print)
        assert_status(target.status(), "1.0.0", ready=2)
        assert nginx.upstream_file.read_text().count("# stable 1.0.0") == 2
        target.scale(1, print)
    traffic.check()
    assert_status(target.status(), "1.0.0")
    assert len(containers(docker_client, target)) == 1  # scaled-down containers are removed, not kept

    plan = target.plan(StartCanary(f"{repository}:2.0.0", 10))
    by_action = {c.action: c for c in plan.changes}
    assert set(by_action) == {"create", "unchanged", "update"}
    assert 'role: "canary"' in by_action["create"].diff
    assert "weight=9;  # stable 1.0.0" in by_action["update"].diff and "# canary 2.0.0" in by_action["update"].diff
    with pytest.raises(StepFailed, match="there is no canary"):
        target.plan(Promote())

    target.stop(print)
    status = target.status()
    assert (status.version, status.ready, status.desired) == ("1.0.0 (stopped)", 0, 1)
    target.start(print)
    assert_status(target.status(), "1.0.0")
    wait_until(lambda: get_version(nginx) == "1.0.0", timeout=5, what="nginx to serve again")


def test_the_upstream_file_is_written_private_locally_and_over_ssh(tmp_path: Path, ssh_docker_url: str) -> None:
    """0600 under a umask of 022, by this host's write and by the ssh host's (the rig's sshd is this
    machine, so the remote file is read back here), a file there before included."""
    old = os.umask(0o022)
    hosts = {"local.upstream": LocalHost(), "remote.upstream": SshHost(ssh_docker_url)}
    try:
        for name, host in hosts.items():
            target = tmp_path / name
            target.write_text("# an older file, 0644\n")
            host.write(str(target), "upstream food { server 127.0.0.1:3100; }\n")
            assert target.read_text() == "upstream food { server 127.0.0.1:3100; }\n"
            assert stat.S_IMODE(target.stat().st_mode) == 0o600, (name, oct(target.stat().st_mode))
    finally:
        os.umask(old)
        for host in hosts.values():
            host.close()


def test_split_weights_give_the_canary_its_share() -> None:
    for stable, canary, weight in ((1, 1, 10), (9, 1, 10), (3, 2, 25), (2, 1, 0), (1, 1, 100)):
        servers = split([(3100 + i, "1") for i in range(stable)], [(3200 + i, "2") for i in range(canary)], weight)
        assert canary_weight(parse(render("u", servers, "test"))) == weight
        assert all(s.down for s in servers if s.role == "canary") == (weight == 0)
        assert all(s.down for s in servers if s.role == "stable") == (weight == 100)
