"""The Kubernetes deploy target against faults only the emulator can make: RBAC denials, a writer racing
the console (409), a bad token, an unreachable API, and pods with restarts written into their status.

These read the emulator's request log and store (``kube_emulator`` is always the emulator, whatever
RC_REAL_KUBE says); the behaviour that holds on a real cluster is in test_kube_target.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from rig.helpers import KubeAPI, free_port
from rig.kube_cluster import SPLITS, V1, V2, V3, Cluster, Lines, N, container, release_config
from rig.kube_emulator import KubeEmulator

from services.adapters.kube_target import KubernetesDeployTarget
from services.core.operations import StepFailed


@pytest.fixture
def emu(kube_emulator: KubeAPI) -> Iterator[KubeEmulator]:
    emulator: KubeEmulator = kube_emulator.emulator
    emulator.clear_faults()
    yield emulator
    emulator.clear_faults()


@pytest.fixture
def cluster(kube_emulator: KubeAPI, emu: KubeEmulator) -> Cluster:
    return Cluster(kube_emulator)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    yield from cluster.temporary_namespace()


@pytest.fixture(params=SPLITS)
def split(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_target(tmp_path: Path, emu: KubeEmulator, namespace: str, split: str) -> KubernetesDeployTarget:
    return KubernetesDeployTarget(release_config(tmp_path, emu.url, namespace, split, 5, emu.token), "staging")


@pytest.fixture
def target(tmp_path: Path, emu: KubeEmulator, namespace: str, split: str) -> Iterator[KubernetesDeployTarget]:
    made = make_target(tmp_path, emu, namespace, split)
    yield made
    made.close()


def writes(emu: KubeEmulator) -> list[tuple[str, str, str | None, int]]:
    """(verb, resource, name, status) of every changing request since the last reset."""
    return [(r.verb, r.resource, r.name, r.status) for r in emu.writes()]


def deployed(target: KubernetesDeployTarget, emu: KubeEmulator, image: str = V1) -> None:
    target.deploy(image, Lines())
    emu.reset_requests()


def test_status_counts_restarts_of_our_pods_and_shows_our_events_newest_last(
    tmp_path: Path, kube_emulator: KubeAPI, emu: KubeEmulator, namespace: str
) -> None:
    target = make_target(tmp_path, emu, namespace, "ingress-nginx")
    target.deploy(V1, Lines())
    core = client.CoreV1Api(kube_emulator.api_client)

    def pod(name: str, app: str, restarts: list[int]) -> None:
        core.create_namespaced_pod(namespace, {"metadata": {"name": name, "labels": {"app": app}},
                                               "spec": {"containers": [{"name": "app", "image": V1}]}})
        statuses = [{"name": f"c{i}", "restartCount": n, "ready": True, "image": V1, "imageID": "",
                     "started": True} for i, n in enumerate(restarts)]
        core.patch_namespaced_pod_status(name, namespace, {"status": {"containerStatuses": statuses}})

    pod(f"{N}-stable-6d4cf-a1b2c", N, [2])
    pod(f"{N}-stable-6d4cf-d3e4f", N, [1, 2])
    pod("other-app-1", "other-app", [7])  # not ours

    def event(name: str, kind: str, obj: str, when: str, kind_of: str, reason: str, message: str) -> None:
        core.create_namespaced_event(namespace, {
            "metadata": {"name": name}, "involvedObject": {"kind": kind, "name": obj, "namespace": namespace},
            "reason": reason, "message": message, "type": kind_of, "lastTimestamp": when, "count": 1})

    event("e2", "Pod", f"{N}-stable-6d4cf-a1b2c", "2030-01-01T10:00:05Z", "Warning", "BackOff",
          "Back-off restarting failed container app")
    event("e1", "Deployment", f"{N}-stable", "2030-01-01T10:00:01Z", "Normal", "ScalingReplicaSet",
          "Scaled up replica set food-management-stable-6d4cf to 9")
    event("e3", "Pod", "other-app-1", "2030-01-01T10:00:09Z", "Warning", "BackOff", "not ours")
    emu.reset_requests()

    status = target.status()
    assert status.restarts == 5
    assert status.events == (
        f"10:00:01 Normal ScalingReplicaSet deployment/{N}-stable: Scaled up replica set {N}-stable-6d4cf to 9",
        f"10:00:05 Warning BackOff pod/{N}-stable-6d4cf-a1b2c: Back-off restarting failed container app",
    )
    assert (status.ready, status.desired) == (9, 9)
    assert writes(emu) == []  # status reads only
    assert any(r.resource == "pods" and r.verb == "list" for r in emu.requests())


def test_rbac_denied_names_verb_resource_namespace_and_the_missing_rule_and_puts_back(
    target: KubernetesDeployTarget, emu: KubeEmulator, cluster: Cluster, namespace: str, split: str
) -> None:
    emu.deny("patch", "deployments")
    with pytest.raises(StepFailed) as err:
        target.deploy(V1, Lines())
    message = str(err.value)
    assert f"RBAC forbids patch on deployments in namespace {namespace}" in message
    assert 'apiGroups: ["apps"], resources: ["deployments"], verbs: ["patch"]' in message
    assert 'cannot patch resource "deployments" in API group "apps"' in message  # the server's own words
    assert f"Put back: deleted Service {N}-canary; deleted Service {N}-app." in message
    assert any("kubectl auth can-i patch deployments" in o for o in err.value.next_options)
    assert writes(emu) == [
        ("patch", "services", f"{N}-app", 201),
        ("patch", "services", f"{N}-canary", 201),
        ("patch", "deployments", f"{N}-stable", 403),
        ("delete", "services", f"{N}-canary", 200),
        ("delete", "services", f"{N}-app", 200),
    ]
    assert cluster.get("", "services", namespace, f"{N}-app") is None

    emu.clear_faults()
    deployed(target, emu)
    emu.deny("patch", "deployments/scale")
    with pytest.raises(StepFailed) as err:
        target.scale(12, Lines())
    assert 'resources: ["deployments/scale"], verbs: ["patch"]' in str(err.value)
    assert "Nothing was changed." in str(err.value)
    assert cluster.deployment(namespace, "stable")["spec"]["replicas"] == 9  # type: ignore[index]


def test_a_put_back_that_fails_too_is_reported(
    target: KubernetesDeployTarget, emu: KubeEmulator, cluster: Cluster, namespace: str, split: str
) -> None:
    emu.deny("patch", "deployments")
    emu.deny("delete", "services")
    with pytest.raises(StepFailed) as err:
        target.deploy(V1, Lines())
    assert f"Could NOT put back: deleted Service {N}-canary (RBAC forbids delete on services" in str(err.value)
    assert "fix by hand" in str(err.value)
    assert cluster.get("", "services", namespace, f"{N}-app") is not None  # left, and said so


def test_conflict_409_names_the_object_says_retry_and_leaves_nothing_half_done(
    target: KubernetesDeployTarget, emu: KubeEmulator, cluster: Cluster, namespace: str, split: str
) -> None:
    deployed(target, emu, V1)
    emu.conflict_once("patch", "deployments")
    with pytest.raises(StepFailed) as err:
        target.deploy(V2, Lines())
    assert f"Deployment {N}-stable was changed by another writer at the same time (409 Conflict)" in str(err.value)
    assert "Nothing was changed." in str(err.value)
    assert err.value.next_options[0].startswith("retry")
    assert container(cluster.deployment(namespace, "stable"))["image"] == V1
    target.deploy(V2, Lines())  # the retry goes through
    assert container(cluster.deployment(namespace, "stable"))["image"] == V2

    # A conflict on the split after the canary Deployment was created: the canary is removed again.
    weight_resource, weight_name, _ = cluster.split_object(namespace, split)
    emu.conflict_once("patch", weight_resource)
    emu.reset_requests()
    with pytest.raises(StepFailed) as err:
        target.start_canary(V3, 10, Lines())
    assert "409 Conflict" in str(err.value)
    assert f"Put back: deleted Deployment {N}-canary." in str(err.value)
    assert writes(emu) == [
        ("patch", "deployments", f"{N}-canary", 201),
        ("patch", weight_resource, weight_name, 409),
        ("delete", "deployments", f"{N}-canary", 200),
    ]
    assert cluster.deployment(namespace, "canary") is None
    assert target.status().canary_weight == 0


def test_unreachable_cluster_names_the_url(tmp_path: Path, emu: KubeEmulator) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    target = KubernetesDeployTarget(release_config(tmp_path, url, "food-management", "ingress-nginx"), "staging")
    with pytest.raises(StepFailed) as err:
        target.deploy(V1, Lines())
    assert f"cannot reach the Kubernetes API at {url}" in str(err.value)
    assert "connection refused" in str(err.value) and "Nothing was changed." in str(err.value)
    assert any("api_url" in option for option in err.value.next_options)
    with pytest.raises(StepFailed, match="cannot reach the Kubernetes API"):
        target.status()


def test_a_wrong_token_is_refused_with_401_and_says_which_setting(
    tmp_path: Path, emu: KubeEmulator, namespace: str
) -> None:
    config = release_config(tmp_path, emu.url, namespace, "gateway-api", token="not-the-token")
    target = KubernetesDeployTarget(config, "staging")
    with pytest.raises(StepFailed) as err:
        target.deploy(V1, Lines())
    assert str(err.value) == (f"the Kubernetes API at {emu.url} refused the console's credentials (401): "
                              "Unauthorized Nothing was changed.")
    assert err.value.next_options == ("check environments.staging.target.token, or the kubeconfig user",)
    assert "not-the-token" not in str(err.value)
    assert writes(emu) == [] and {r.status for r in emu.requests()} == {401}


def test_emulator_serves_httproutes_with_discovery_and_rbac_shaped_faults(kube_emulator: KubeAPI, emu: KubeEmulator,
                                                                          namespace: str) -> None:
    groups = client.ApisApi(kube_emulator.api_client).get_api_versions()
    assert "gateway.networking.k8s.io" in [g.name for g in groups.groups]
    custom = client.CustomObjectsApi(kube_emulator.api_client)
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"},
             "spec": {"rules": [{"backendRefs": [{"name": "a", "port": 80, "weight": 1}]}]}}
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", route)
    listed = custom.list_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["r"]

    emu.deny("list", "pods", user="system:serviceaccount:x:y")
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(kube_emulator.api_client).list_namespaced_pod(namespace)
    body = json.loads(err.value.body)
    assert err.value.status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == (f'pods is forbidden: User "system:serviceaccount:x:y" cannot list resource "pods" '
                               f'in API group "" in the namespace "{namespace}"')
    emu.conflict_once("delete", "httproutes")
    with pytest.raises(client.ApiException) as err:
        custom.delete_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", "r")
    assert err.value.status == 409
    custom.delete_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", "r")  # once
    assert [(r.verb, r.resource, r.status) for r in emu.writes()] == [
        ("create", "httproutes", 201), ("delete", "httproutes", 409), ("delete", "httproutes", 200)]
    assert emu.writes()[0].summary == "HTTPRoute a=1"


def test_a_put_back_that_does_not_serve_again_is_said_with_what_to_watch(
    tmp_path: Path, emu: KubeEmulator, cluster: Cluster, namespace: str
) -> None:
    """The previous image cannot start any more either (in the emulator its pods all turn unready): the
    put-back is applied, waited for at its own deadline, and reported as NOT ready again, not as done."""
    target = KubernetesDeployTarget(release_config(tmp_path, emu.url, namespace, "ingress-nginx", 1, emu.token),
                                    "staging")
    deployed(target, emu, V1)
    emu.never_ready(V1)
    emu.never_ready(V2)
    lines = Lines()
    with pytest.raises(StepFailed) as err:
        target.deploy(V2, lines)
    message = str(err.value)
    assert f"Put back: Deployment {N}-stable as it was." in message
    assert f"Put back: Deployment {N}-stable as it was. NOT ready again: Deployment {N}-stable not ready within 1 s (" \
        in message
    assert message.endswith("): after the put-back.")
    assert "Ready again:" not in message.replace("NOT ready again:", "")
    assert err.value.next_options[0] == f"watch it: kubectl -n {namespace} rollout status deployment/{N}-stable"
    assert container(cluster.deployment(namespace, "stable"))["image"] == V1
