"""The app's logs and resource use on Kubernetes, through the real `kubernetes` client against the rig's
emulator: pods found by the target's labels, their log endpoint read and followed (lines the test
plants), masked and cleaned; CPU and memory from metrics.k8s.io when the cluster serves it, and a plain
"metrics-server is not installed" when it answers 404, in `top` and in the environment's detail (`h`)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from rig.helpers import KubeAPI, wait_until
from rig.kube_cluster import SECRETS, N, release_config
from textual.widgets import DataTable, Label

from console import cli
from console.app import make_app
from console.screens.main import MainScreen
from services import factory
from services.core.container import Services
from services.environments.logs import Line, follow_logs, resource_use
from widgets.health import HealthScreen
from widgets.resources import ResourceTable

DB_SECRET = SECRETS["STAGING_DATABASE_URL"]


@pytest.fixture(scope="module")
def pods(kube_emulator: KubeAPI) -> Iterator[str]:
    """A namespace with one stable and one canary pod of the app (and one of another app), with lines."""
    core = client.CoreV1Api(kube_emulator.api_client)
    namespace = f"rc-logs-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    for name, labels in ((f"{N}-stable-a", {"app": N, "version": "stable"}),
                         (f"{N}-canary-a", {"app": N, "version": "canary"}),
                         ("other-app-a", {"app": "other", "version": "stable"})):
        core.create_namespaced_pod(namespace, {"metadata": {"name": name, "labels": labels},
                                               "spec": {"containers": [{"name": "app", "image": "x"}]}})
    emulator = kube_emulator.emulator
    assert emulator is not None
    emulator.pod_logs.plant(namespace, f"{N}-stable-a", "an hour ago", when=time.time() - 3600)
    emulator.plant_log(namespace, f"{N}-stable-a", "stable started")
    emulator.plant_log(namespace, f"{N}-canary-a", f"boot DATABASE_URL={DB_SECRET} \x1b[2J\x1b]0;pwned\x07cleared")
    emulator.plant_log(namespace, "other-app-a", "not ours")
    yield namespace


@pytest.fixture
def config_path(pods: str, kube_emulator: KubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in {**SECRETS, "KUBE_TOKEN": kube_emulator.token or ""}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    release_config(tmp_path, kube_emulator.host, pods, "ingress-nginx", token=kube_emulator.token)
    return tmp_path / "release.toml"


@pytest.fixture
def services(config_path: Path, kube_emulator: KubeAPI, tmp_path: Path) -> Iterator[Services]:
    config = factory.load_config(str(config_path), False)
    made = factory.build(config, state=tmp_path / "state")
    yield made
    made.close()


def test_logs_of_the_apps_pods_since_masked_and_clean(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(config_path), "logs", "--env", "staging", "--since", "10m"]) == 0
    out = capsys.readouterr().out
    assert "[stable] " in out and f"{N}-stable-a: stable started" in out
    assert "[canary] " in out and "boot DATABASE_URL=postgresql://app:**********@db.internal/food cleared" in out
    assert "db-s3cret" not in out and "\x1b" not in out and "\x07" not in out
    assert "not ours" not in out and "an hour ago" not in out  # another app's pod; older than --since
    assert cli.main(["--config", str(config_path), "logs", "--env", "staging", "--since", "2h"]) == 0
    assert "an hour ago" in capsys.readouterr().out


def test_follow_a_pods_log_as_lines_come(services: Services, pods: str, kube_emulator: KubeAPI) -> None:
    cancel, seen, done = threading.Event(), [], threading.Event()

    def follow() -> None:
        for line in follow_logs(services, "staging", role="stable", since_s=600, follow=True, cancel=cancel):
            seen.append(line)
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    wait_until(lambda: any("stable started" in line.text for line in seen), timeout=10, interval=0.05,
               what="the kept lines")
    assert kube_emulator.emulator is not None
    kube_emulator.emulator.plant_log(pods, f"{N}-stable-a", "new request served")
    wait_until(lambda: any("new request served" in line.text for line in seen), timeout=10, interval=0.05,
               what="a line planted while following")
    cancel.set()
    assert done.wait(10), "the follow did not end after cancel"
    assert all(isinstance(line, Line) and line.role == "stable" for line in seen)


def test_resource_use_without_and_with_metrics_server(services: Services, pods: str, kube_emulator: KubeAPI,
                                                       config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emulator = kube_emulator.emulator
    assert emulator is not None
    emulator.metrics_server = False
    absent = resource_use(services, "staging")
    assert absent.rows == () and "metrics-server is not installed" in absent.note
    assert cli.main(["--config", str(config_path), "top", "--env", "staging"]) == 0
    assert "metrics-server is not installed" in capsys.readouterr().out
    emulator.plant_metrics(pods, f"{N}-stable-a", "app", "250m", "64Mi")
    emulator.plant_metrics(pods, f"{N}-canary-a", "app", "1500000000n", "1Gi")
    emulator.plant_metrics(pods, "other-app-a", "app", "1", "1Gi")
    emulator.metrics_server = True
    try:
        present = resource_use(services, "staging")
    finally:
        emulator.metrics_server = False
    assert present.note == "" and present.source == "metrics.k8s.io"
    assert [(r.source, r.role, r.cpu_percent, r.memory_bytes) for r in present.rows] == [
        (f"{N}-stable-a", "stable", 25.0, 64 << 20), (f"{N}-canary-a", "canary", 150.0, 1 << 30)]


@pytest.mark.asyncio
async def test_the_environments_detail_says_when_metrics_server_is_absent_then_shows_the_pods(
        pods: str, kube_emulator: KubeAPI, config_path: Path, tmp_path: Path) -> None:
    """The console itself (not the sandbox) on the emulator: `h` opens staging's detail, whose resource
    table reads metrics.k8s.io through the real client and says plainly that metrics-server is absent;
    once the cluster serves it, the table's next poll shows the app's pods."""
    emulator = kube_emulator.emulator
    assert emulator is not None
    emulator.metrics_server = False
    app = make_app(factory.load_config(str(config_path), False), sandbox=False, state=tmp_path / "tui-state")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.query("#env-table"),
                        "the main screen")
            await pilot.press("h")
            await until(pilot, lambda: isinstance(app.screen, HealthScreen), "the environment's detail")
            table = app.screen.query_one(ResourceTable)
            note = table.query_one("#resources-note", Label)
            await until(pilot, lambda: "metrics-server is not installed" in str(note.render()), "the plain note")
            assert table.query_one(DataTable).row_count == 0
            emulator.plant_metrics(pods, f"{N}-stable-a", "app", "250m", "64Mi")
            emulator.metrics_server = True
            table.poll()
            cells = table.query_one(DataTable)
            await until(pilot, lambda: cells.row_count, "the pods' figures")
            rows = {str(cells.get_row_at(i)[0]): [str(cell) for cell in cells.get_row_at(i)]
                    for i in range(cells.row_count)}
            assert rows[f"{N}-stable-a"] == [f"{N}-stable-a", "stable", "25.0%", "64.0MiB"]
            assert "other-app-a" not in rows  # another app's pod in the namespace
            assert str(note.render()) == "CPU and memory from metrics.k8s.io"
    finally:
        emulator.metrics_server = False  # the console closes its services as it quits


async def until(pilot: Any, predicate: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)
