"""The post-deploy monitor on the Kubernetes target, against the API emulator: a deploy to production
whose new version errors is rolled back by the monitor to the previous revision's digest, the
Deployment's template patched back.

Nothing runs pods on the emulator, so what the monitor reads stands in for them: an app's /metrics
served over real HTTP here (the `scrape` metrics source reads it as it would a pod's), which starts
failing 10 % of its requests once the switch has begun; a sample app container stands for what the
ingress serves (the health check's answer; it reports no version).
"""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from rig import config_builder as toml
from rig.opkit import finished, run

from services import factory
from services.canary import trace
from services.core import config as config_module
from services.core.events import Event, Outcome, StepStarted


class App(http.server.BaseHTTPRequestHandler):
    """The Prometheus text of an app whose counters grow at each scrape; `bad`: 10 % of requests fail."""

    bad = False
    served = {"ok": 0, "errors": 0}

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        App.served["ok"] += 90 if App.bad else 100
        App.served["errors"] += 10 if App.bad else 0
        total = App.served["ok"] + App.served["errors"]
        body = "\n".join([
            f'http_requests_total{{status="200"}} {App.served["ok"]}',
            f'http_requests_total{{status="500"}} {App.served["errors"]}',
            f'http_request_duration_seconds_bucket{{le="0.05"}} {total}',
            f'http_request_duration_seconds_bucket{{le="+Inf"}} {total}',
            f"process_cpu_seconds_total {total / 10000}",
            "process_resident_memory_bytes 104857600", "app_memory_limit_bytes 1073741824", ""]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def app_metrics() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    App.bad, App.served = False, {"ok": 0, "errors": 0}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()


@pytest.mark.parametrize("split", ["ingress-nginx", "gateway-api"])
def test_a_deploy_that_errors_on_kubernetes_is_rolled_back_by_the_monitor(
        tmp_path: Path, kube_emulator: Any, pg_database: str, repository: str, run_sample_app: Any,
        app_metrics: str, split: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kube_emulator.emulator.reset()
    monkeypatch.setenv("TEST_DB", pg_database)
    monkeypatch.setenv("KUBE_TOKEN", kube_emulator.token)
    ingress = run_sample_app(VERSION="")
    target = toml.kubernetes_target("default", api_url=kube_emulator.host, token=toml.secret("KUBE_TOKEN"),
                                    traffic_split=split, host="food.example.com", ready_timeout_s=5)
    production = toml.environment(api_url=f"http://127.0.0.1:{ingress.port}/api", redis_url=toml.RIG_REDIS,
                                  production=True, target=target, metrics=toml.scrape(stable=[app_metrics], canary=[]))
    monitor = {"after_deploy": "act", "check_interval_s": 1, "duration_s": 4}
    path = toml.release({"production": production}, image=repository, metrics={"timeout_s": 2},
                        monitor=monitor).write(tmp_path / "release.toml")
    services = factory.build(config_module.load(path, os.environ), state=tmp_path / "state")

    first, _, _ = run(services, "deploy", "production", {"version": "1.0.0"}, typed="production")
    assert first.outcome is Outcome.SUCCEEDED, first.detail  # its baseline: the scrape's first reading, no rate
    services.metrics("production").sample()  # a reading to compare the next one with, as the pane's poll makes

    def switch(event: Event) -> None:
        if isinstance(event, StepStarted) and event.step_id == "apply":
            App.bad = True  # the new version serves from here

    result, events, _ = run(services, "deploy", "production", {"version": "2.0.0"}, typed="production",
                            on_event=switch)

    assert result.outcome is Outcome.FAILED and result.detail.startswith("rolled back at check 1: error_rate:")
    assert finished(events)["baseline"].detail.startswith("error_rate 0,")
    record = services.journal.get(result.op_id)
    [why] = [e for e in trace.entries(record) if e.action == "rollback"]
    assert why.rule == "error_rate" and why.value == pytest.approx(0.1) and why.threshold == pytest.approx(0.001)
    assert why.query == f"error_rate of stable from a scrape of {app_metrics}"
    history = services.revisions("production").list()
    assert [(r.image.rsplit(":", 1)[1], r.action) for r in history] == [
        ("1.0.0", "deploy"), ("2.0.0", "deploy"), ("1.0.0", "rollback")]
    apps = kubernetes.client.AppsV1Api(kube_emulator.api_client)
    stable = apps.read_namespaced_deployment("food-management-stable", "default")
    assert stable.spec.template.spec.containers[0].image.endswith(f":1.0.0@{history[0].digest}")
