"""The progressive canary end to end on the Kubernetes target: the catalog's `canary` operation (its
monitor steps, rules and judge) against the API emulator, with real containers and real metrics.

The emulator runs no pods, so the rig stands in for the cluster's moving parts, each reading only the
Kubernetes API: rig.kube_pods runs each Deployment as a sample-app container on the rig's dockerd (the
emulator counts its pods ready once the container serves), and rig.kube_ingress routes each request by the
split object's weights (the canary Ingress's annotation for ingress-nginx, the HTTPRoute's backendRefs for
gateway-api). Load goes through that proxy; a private Prometheus scrapes the containers found as
kubernetes_sd would label them (namespace, app, version), and the environment's selectors pick the stable
and the canary series by those labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rig import config_builder as toml
from rig.canary_steps import STEPPED, assert_each_step_analysed, ladder
from rig.helpers import KubeAPI, wait_until
from rig.kube_cluster import SECRETS, Cluster, N, container
from rig.kube_ingress import Ingress
from rig.kube_pods import Nodes
from rig.opkit import run
from rig.prometheus import Prometheus
from rig.traffic import Load, get_version

from services import factory
from services.canary import trace
from services.core import config as config_module
from services.core.events import CanaryStepChanged, Event, Outcome
from services.core.references import version_of

QUIET = {"SYNTHETIC_RPS": "0", "LATENCY_MS": "0"}  # only the requests through the ingress count


@pytest.fixture
def cluster(kube_emulator: KubeAPI) -> Cluster:
    return Cluster(kube_emulator)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    yield from cluster.temporary_namespace()


@pytest.fixture
def nodes(docker_client: Any, cluster: Cluster, namespace: str, prometheus: Prometheus) -> Iterator[Nodes]:
    with Nodes(docker_client, cluster, namespace, prometheus.targets, env=QUIET) as running:
        yield running


@pytest.fixture(params=["ingress-nginx", "gateway-api"])
def ingress(request: pytest.FixtureRequest, cluster: Cluster, namespace: str, nodes: Nodes) -> Iterator[Ingress]:
    with Ingress(cluster, namespace, request.param, nodes) as proxy:
        yield proxy


def selector(namespace: str, track: str) -> str:
    return f'namespace="{namespace}",app="{N}",version="{track}"'


@pytest.fixture
def services(tmp_path: Path, cluster: Cluster, namespace: str, ingress: Ingress, prometheus: Prometheus,
             repository: str, pg_database: str) -> factory.Services:
    """Staging on the emulator, 1.0.0 deployed (its container serving through the ingress stand-in)."""
    target = toml.kubernetes_target(namespace, api_url=cluster.url, token=toml.secret("KUBE_TOKEN"),
                                    traffic_split=ingress.split, host="food.example.test", ready_timeout_s=60)
    metrics = toml.prometheus(prometheus.url, selectors={t: selector(namespace, t) for t in ("stable", "canary")})
    staging = toml.environment(api_url=f"{ingress.url}/api", redis_url=toml.RIG_REDIS, target=target,
                               metrics=metrics)
    path = toml.release({"staging": staging}, image=repository, app={"port": 3000, "health_path": "/api/health"},
                        metrics={"window": "5s", "min_samples": 8, "timeout_s": 1}, canary=STEPPED,
                        backup=toml.backup(), migrations={"dir": "migrations"}).write(tmp_path / "release.toml")
    (tmp_path / "migrations").mkdir()
    env = {**SECRETS, "KUBE_TOKEN": cluster.api.token or "", "TEST_DB": pg_database}
    built = factory.build(config_module.load(path, env), state=tmp_path / "state")
    result, _, _ = run(built, "deploy", "staging", {"version": "1.0.0"}, typed="yes")
    assert result.outcome is Outcome.SUCCEEDED, (result.detail, nodes_problems(ingress))
    return built


def nodes_problems(ingress: Ingress) -> list[str]:
    return ingress.problems[-3:] + ingress.nodes.problems[-3:]


Running = Callable[..., tuple[Any, list[Any], list[Any]]]


@pytest.fixture
def canary(services: factory.Services, ingress: Ingress, prometheus: Prometheus, namespace: str) -> Running:
    """Run the canary op with load going through the ingress stand-in; wait until stable's metrics are in."""

    def go(version: str, **answers: Any) -> tuple[Any, list[Any], list[Any]]:
        with Load(ingress) as load:
            query = f"sum(rate(http_requests_total{{{selector(namespace, 'stable')}}}[5s]))"
            wait_until(lambda: prometheus.has_data(query), timeout=30, what="Prometheus to see stable's requests")
            result = run(services, "canary", "staging", {"version": version}, **answers)
        assert load.sent > 100, f"only {load.sent} requests went through the ingress stand-in"
        return result

    return go


def test_a_three_step_canary_advances_10_25_50_then_100_on_kubernetes(
        services: factory.Services, canary: Running, cluster: Cluster, namespace: str, ingress: Ingress) -> None:
    seen: list[tuple[int, int, int]] = []  # (the step's weight, what the API serves, what the target reports)

    def split_at_each_step(event: Event) -> None:  # on the operation's thread, as each step begins
        if isinstance(event, CanaryStepChanged) and event.status == "running":
            served = cluster.weights(namespace, ingress.split)["canary"]
            seen.append((event.weights[event.index], served, services.target("staging").status().canary_weight or 0))

    result, events, _ = canary("2.0.0", typed="yes", on_event=split_at_each_step)

    assert result.outcome is Outcome.SUCCEEDED, (result.detail, nodes_problems(ingress))
    assert seen == [(10, 10, 10), (25, 25, 25), (50, 50, 50)]  # each step's weight, in the split object
    assert_each_step_analysed(services, result.op_id, events)
    stable = container(cluster.deployment(namespace, "stable"))
    assert version_of(stable["image"]) == "2.0.0", stable["image"]  # promoted: the stable Deployment runs it
    assert cluster.weights(namespace, ingress.split) == {"stable": 100, "canary": 0}
    ingress.read_again()
    assert {get_version(ingress) for _ in range(30)} == {"2.0.0"}  # all traffic on the new version
    assert services.revisions("staging").list()[-1].action == "promote"


def test_a_bad_version_stops_and_rolls_back_at_its_first_step_on_kubernetes(
        services: factory.Services, canary: Running, cluster: Cluster, namespace: str, ingress: Ingress) -> None:
    result, events, _ = canary("bad", typed="yes")  # 5 % of its requests fail

    assert result.outcome is Outcome.FAILED and result.failed_step == "monitor", result.detail
    assert " in step 1/3 (10%): " in result.detail, result.detail
    assert ladder(events) == [(0, "running"), (0, "rolled back")]  # never on to 25 %
    record = services.journal.get(result.op_id)
    assert record.state["decision"]["action"] == "rollback"
    assert {e.threshold for e in trace.entries(record) if e.rule == "traffic_share"} == {10.0}
    assert cluster.weights(namespace, ingress.split) == {"stable": 100, "canary": 0}
    canary_deployment = cluster.deployment(namespace, "canary")
    assert canary_deployment is None or canary_deployment["spec"]["replicas"] == 0, canary_deployment
    stable = container(cluster.deployment(namespace, "stable"))
    assert version_of(stable["image"]) == "1.0.0", stable["image"]
    ingress.read_again()
    assert {get_version(ingress) for _ in range(30)} == {"1.0.0"}  # all traffic back on stable
