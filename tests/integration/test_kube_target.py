"""The Kubernetes deploy target against the Kubernetes API emulator, over real HTTP.

The real `kubernetes` client, unpatched, talks to tests/rig/kube_emulator/. Each test reads
the emulator's request log (what was created, patched and deleted, in order) and its store
(what the objects now hold). Both traffic splits run: ingress-nginx canary annotations, and
one Gateway API HTTPRoute with weighted backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from rig import config_builder as toml
from rig.helpers import KubeAPI, free_port, unique_name, wait_until
from rig.kube_emulator import ApiError, KubeEmulator, Store

from services.adapters.kube_target import KubernetesDeployTarget
from services.core.operations import StepFailed
from services.core.ports import Abort, Deploy, Promote, Scale, SetWeight, StartCanary

N = "food-management"
REPO = "127.0.0.1:5000/food-management"
V1, V2, V3 = f"{REPO}:1.0.0", f"{REPO}:1.1.0", f"{REPO}:1.2.0"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
SECRETS = {
    "STAGING_DATABASE_URL": "postgresql://app:db-s3cret@db.internal/food",
    "STAGING_REDIS_URL": "redis://:redis-s3cret@redis.internal:6379",
    "KUBE_TOKEN": "token-s3cret",
}
SPLITS = ("ingress-nginx", "gateway-api")


# ------------------------------------------------------------------ fixtures --


@pytest.fixture
def emu(kube_api: KubeAPI) -> Iterator[KubeEmulator]:
    if kube_api.emulator is None:
        pytest.skip("reads the emulator's request log and injects faults: not against a real cluster")
    emulator: KubeEmulator = kube_api.emulator
    emulator.clear_faults()
    yield emulator
    emulator.clear_faults()
    emulator.controllers.never_ready.clear()


@pytest.fixture
def namespace(kube_api: KubeAPI, emu: KubeEmulator) -> Iterator[str]:
    core = client.CoreV1Api(kube_api.api_client)
    name = unique_name("rc-kube")
    core.create_namespace({"metadata": {"name": name}})
    emu.reset_requests()
    yield name
    core.delete_namespace(name)


@pytest.fixture(params=SPLITS)
def split(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def release_config(tmp_path: Path, api_url: str | None, namespace: str, split: str, ready_timeout_s: int = 5,
                   token: str | None = None) -> Any:
    """release.toml for one staging environment on Kubernetes: the API at api_url with the bearer token (the
    emulator's); without api_url, the kubeconfig's cluster."""
    target = toml.kubernetes_target(namespace, api_url=api_url, token=toml.secret("KUBE_TOKEN") if api_url else None,
                                    traffic_split=split, host="food.example.test", gateway="public-gateway",
                                    ready_timeout_s=ready_timeout_s)
    staging = toml.environment(
        api_url="https://staging.food.example.test/api", database_url=toml.secret("STAGING_DATABASE_URL"),
        redis_url=toml.secret("STAGING_REDIS_URL"), log_level="warn", target=target,
        features={"analytics": True, "notifications": False, "experimental_features": True})
    return toml.release({"staging": staging}, name=N, image=REPO, app={"port": 3000, "health_path": "/api/health"},
                        canary={"stable_replicas": 9, "canary_replicas": 1}).load(
        tmp_path / "release.toml", {**SECRETS, "KUBE_TOKEN": token or SECRETS["KUBE_TOKEN"]})


def make_target(tmp_path: Path, emu: KubeEmulator, namespace: str, split: str,
                ready_timeout_s: int = 5) -> KubernetesDeployTarget:
    return KubernetesDeployTarget(release_config(tmp_path, emu.url, namespace, split, ready_timeout_s, emu.token),
                                  "staging")


@pytest.fixture
def target(tmp_path: Path, emu: KubeEmulator, namespace: str, split: str) -> Iterator[KubernetesDeployTarget]:
    made = make_target(tmp_path, emu, namespace, split)
    yield made
    made.close()


# ------------------------------------------------------------------- helpers --


class Lines(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def writes(emu: KubeEmulator) -> list[tuple[str, str, str | None, int]]:
    """(verb, resource, name, status) of every changing request since the last reset."""
    return [(r.verb, r.resource, r.name, r.status) for r in emu.writes()]


def stored(emu: KubeEmulator, group: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return emu.store.get(Store.resource(group, plural), namespace, name)
    except ApiError:
        return None


def deployment(emu: KubeEmulator, ns: str, track: str) -> dict[str, Any] | None:
    return stored(emu, "apps", "deployments", ns, f"{N}-{track}")


def container(dep: dict[str, Any] | None) -> dict[str, Any]:
    assert dep is not None
    containers: list[dict[str, Any]] = dep["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "app")


def env_of(dep: dict[str, Any] | None) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(dep)["env"]}


def split_object(emu: KubeEmulator, ns: str, split: str) -> tuple[str, str | None, dict[str, Any] | None]:
    """(resource, name, object) of what carries the canary weight."""
    if split == "gateway-api":
        return "httproutes", N, stored(emu, "gateway.networking.k8s.io", "httproutes", ns, N)
    return "ingresses", f"{N}-canary", stored(emu, "networking.k8s.io", "ingresses", ns, f"{N}-canary")


def weight_in_store(emu: KubeEmulator, ns: str, split: str) -> dict[str, int]:
    """The backends' shares as stored: {"stable": x, "canary": y}."""
    _, _, obj = split_object(emu, ns, split)
    assert obj is not None
    if split == "gateway-api":
        refs = obj["spec"]["rules"][0]["backendRefs"]
        return {"stable" if r["name"] == f"{N}-app" else "canary": r["weight"] for r in refs}
    annotations = obj["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert obj["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == f"{N}-canary"
    canary = int(annotations["nginx.ingress.kubernetes.io/canary-weight"])
    return {"stable": 100 - canary, "canary": canary}


def deployed(target: KubernetesDeployTarget, emu: KubeEmulator, image: str = V1) -> None:
    target.deploy(image, Lines())
    emu.reset_requests()


# ---------------------------------------------------------------- operations --


def test_first_deploy_creates_services_stable_deployment_and_entry_with_server_side_apply(
    target: KubernetesDeployTarget, emu: KubeEmulator, namespace: str, split: str
) -> None:
    lines = Lines()
    target.deploy(V1, lines)

    entry = ("httproutes", N) if split == "gateway-api" else ("ingresses", N)
    assert writes(emu) == [
        ("patch", "services", f"{N}-app", 201),
        ("patch", "services", f"{N}-canary", 201),
        ("patch", "deployments", f"{N}-stable", 201),
        ("patch", *entry, 201),
    ]
    for request in emu.writes():
        assert request.content_type == APPLY
        assert "fieldManager=release-console" in request.query and "force=true" in request.query

    dep = deployment(emu, namespace, "stable")
    assert dep is not None and dep["spec"]["replicas"] == 9
    assert dep["metadata"]["labels"] == {
        "app": N, "version": "stable", "app.kubernetes.io/managed-by": "release-console"}
    assert dep["spec"]["template"]["metadata"]["labels"] == {"app": N, "version": "stable"}
    app = container(dep)
    assert app["image"] == V1 and app["ports"][0]["containerPort"] == 3000
    assert app["readinessProbe"]["httpGet"] == {"path": "/api/health", "port": 3000, "scheme": "HTTP"}  # defaulted
    env = env_of(dep)
    assert env["VERSION"] == "1.0.0" and env["LOG_LEVEL"] == "warn"
    assert env["FEATURE_ANALYTICS"] == "true" and env["FEATURE_NOTIFICATIONS"] == "false"
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": f"{N}-secrets", "key": "DATABASE_URL"}}
    assert env["REDIS_URL"] == {"secretKeyRef": {"name": f"{N}-secrets", "key": "REDIS_URL"}}
    everything = json.dumps([emu.store.objects[k] for k in emu.store.objects if k[2] == namespace])
    assert "s3cret" not in everything  # secrets stay in the Secret, never in a manifest

    app_svc = stored(emu, "", "services", namespace, f"{N}-app")
    canary_svc = stored(emu, "", "services", namespace, f"{N}-canary")
    assert app_svc and app_svc["spec"]["selector"] == {"app": N, "version": "stable"}
    assert app_svc["spec"]["ports"][0]["port"] == 80 and app_svc["spec"]["ports"][0]["targetPort"] == 3000
    assert canary_svc and canary_svc["spec"]["selector"] == {"app": N, "version": "canary"}
    if split == "gateway-api":
        route = stored(emu, "gateway.networking.k8s.io", "httproutes", namespace, N)
        assert route and route["spec"]["parentRefs"] == [  # with the CRD's defaults
            {"name": "public-gateway", "group": "gateway.networking.k8s.io", "kind": "Gateway"}]
        assert route["spec"]["hostnames"] == ["food.example.test"]
        assert weight_in_store(emu, namespace, split) == {"stable": 100, "canary": 0}
    else:
        ingress = stored(emu, "networking.k8s.io", "ingresses", namespace, N)
        assert ingress and ingress["spec"]["rules"][0]["host"] == "food.example.test"
        assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == f"{N}-app"
        assert "annotations" not in ingress["metadata"]

    assert any("9/9 ready" in line for line in lines)
    status = target.status()
    assert (status.version, status.image, status.ready, status.desired) == ("1.0.0", V1, 9, 9)
    assert status.canary_version is None and status.canary_weight == 0
    assert target.describe() == f"kubernetes namespace {namespace} at {emu.url} ({split})"


def test_canary_start_weight_steps_and_promote(
    target: KubernetesDeployTarget, emu: KubeEmulator, namespace: str, split: str
) -> None:
    deployed(target, emu)
    weight_resource, weight_name, _ = split_object(emu, namespace, split)

    target.start_canary(V2, 10, Lines())
    # The canary Service came with the first deploy; the split is created (ingress) or patched (route).
    assert writes(emu) == [
        ("patch", "deployments", f"{N}-canary", 201),
        ("patch", weight_resource, weight_name, 200 if split == "gateway-api" else 201),
    ]
    canary = deployment(emu, namespace, "canary")
    assert canary and canary["spec"]["replicas"] == 1 and container(canary)["image"] == V2
    assert canary["spec"]["selector"]["matchLabels"] == {"app": N, "version": "canary"}
    assert env_of(canary)["VERSION"] == "1.1.0"
    assert weight_in_store(emu, namespace, split) == {"stable": 90, "canary": 10}

    for weight in (25, 50, 100):
        emu.reset_requests()
        lines = Lines()
        target.set_weight(weight, lines)
        assert writes(emu) == [("patch", weight_resource, weight_name, 200)]
        assert weight_in_store(emu, namespace, split) == {"stable": 100 - weight, "canary": weight}
        assert target.status().canary_weight == weight
        assert any(f"-> {weight}" in line for line in lines)
    status = target.status()
    assert (status.canary_version, status.canary_image, status.canary_ready) == ("1.1.0", V2, 1)

    emu.reset_requests()
    target.promote(Lines())
    assert writes(emu) == [
        ("patch", "deployments", f"{N}-stable", 200),
        ("patch", weight_resource, weight_name, 200),
        ("delete", "deployments", f"{N}-canary", 200),
    ]
    stable = deployment(emu, namespace, "stable")
    assert container(stable)["image"] == V2 and env_of(stable)["VERSION"] == "1.1.0"
    assert stable and stable["spec"]["replicas"] == 9
    assert deployment(emu, namespace, "canary") is None
    assert weight_in_store(emu, namespace, split) == {"stable": 100, "canary": 0}
    status = target.status()
    assert (status.version, status.canary_version, status.canary_weight) == ("1.1.0", None, 0)


def test_abort_sets_weight_zero_and_scales_the_canary_to_zero(
    target: KubernetesDeployTarget, emu: KubeEmulator, namespace: str, split: str
) -> None:
    deployed(target, emu)
    target.start_canary(V2, 25, Lines())
    weight_resource, weight_name, _ = split_object(emu, namespace, split)
    emu.reset_requests()

    target.abort(Lines())
    assert writes(emu) == [
        ("patch", weight_resource, weight_name, 200),
        ("patch", "deployments/scale", f"{N}-canary", 200),
    ]
    assert [r.content_type for r in emu.writes()] == [APPLY, MERGE]
    assert weight_in_store(emu, namespace, split) == {"stable": 100, "canary": 0}
    canary = deployment(emu, namespace, "canary")
    assert canary and canary["spec"]["replicas"] == 0 and container(canary)["image"] == V2
    assert container(deployment(emu, namespace, "stable"))["image"] == V1  # stable untouched
    status = target.status()
    assert (status.canary_version, status.canary_weight, status.version) == (None, 0, "1.0.0")

    emu.reset_requests()
    lines = Lines()
    target.abort(lines)  # again: nothing left to do, nothing written
    assert writes(emu) == [] and "nothing to abort" in lines[-1]
    with pytest.raises(StepFailed, match="no canary is running"):
        target.set_weight(10, Lines())
    assert writes(emu) == []


def test_deploy_of_a_new_image_and_rollback_patch_only_the_stable_deployment(
    target: KubernetesDeployTarget, emu: KubeEmulator, namespace: str, split: str
) -> None:
    deployed(target, emu, V1)
    target.scale(4, Lines())  # the monitor scaled up: a deploy keeps the replica count
    emu.reset_requests()

    lines = Lines()
    target.deploy(V2, lines)
    assert writes(emu) == [("patch", "deployments", f"{N}-stable", 200)]
    assert f"updated Deployment {N}-stable: image {V2} (was {V1})" in lines
    assert container(deployment(emu, namespace, "stable"))["image"] == V2

    emu.reset_requests()
    target.deploy(V1, Lines())  # rollback: a deploy of the earlier image
    assert writes(emu) == [("patch", "deployments", f"{N}-stable", 200)]
    dep = deployment(emu, namespace, "stable")
    assert container(dep)["image"] == V1 and env_of(dep)["VERSION"] == "1.0.0"
    assert dep and dep["spec"]["replicas"] == 4
    assert target.status().version == "1.0.0"

    emu.reset_requests()
    target.deploy(V1, Lines())  # the same image again: nothing to change, nothing written
    assert writes(emu) == []


def test_scale_stop_and_start(target: KubernetesDeployTarget, emu: KubeEmulator, namespace: str, split: str) -> None:
    deployed(target, emu)
    target.scale(12, Lines())
    assert writes(emu) == [("patch", "deployments/scale", f"{N}-stable", 200)]
    assert (target.status().ready, target.status().desired) == (12, 12)
    target.start_canary(V2, 10, Lines())
    emu.reset_requests()

    target.stop(Lines())
    assert writes(emu) == [
        ("patch", "deployments", f"{N}-stable", 200),  # the replica count, noted in an annotation
        ("patch", "deployments/scale", f"{N}-stable", 200),
        ("patch", "deployments", f"{N}-canary", 200),
        ("patch", "deployments/scale", f"{N}-canary", 200),
    ]
    for track, replicas in (("stable", "12"), ("canary", "1")):
        dep = deployment(emu, namespace, track)
        assert dep and dep["spec"]["replicas"] == 0
        assert dep["metadata"]["annotations"]["release-console/replicas-before-stop"] == replicas
    assert (target.status().ready, target.status().desired) == (0, 0)

    emu.reset_requests()
    target.start(Lines())
    assert writes(emu) == [
        ("patch", "deployments/scale", f"{N}-stable", 200),
        ("patch", "deployments", f"{N}-stable", 200),  # the note removed
        ("patch", "deployments/scale", f"{N}-canary", 200),
        ("patch", "deployments", f"{N}-canary", 200),
    ]
    for track, replicas in (("stable", 12), ("canary", 1)):
        dep = deployment(emu, namespace, track)
        assert dep and dep["spec"]["replicas"] == replicas
        assert "release-console/replicas-before-stop" not in (dep["metadata"].get("annotations") or {})
    status = target.status()
    assert (status.ready, status.desired, status.canary_ready) == (12, 12, 1)

    emu.reset_requests()
    lines = Lines()
    target.start(lines)
    assert writes(emu) == [] and "nothing to start" in lines[-1]


def test_status_counts_restarts_of_our_pods_and_shows_our_events_newest_last(
    tmp_path: Path, kube_api: KubeAPI, emu: KubeEmulator, namespace: str
) -> None:
    target = make_target(tmp_path, emu, namespace, "ingress-nginx")
    target.deploy(V1, Lines())
    core = client.CoreV1Api(kube_api.api_client)

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


def test_plan_shows_diffs_and_applies_nothing(
    target: KubernetesDeployTarget, emu: KubeEmulator, namespace: str, split: str
) -> None:
    first = target.plan(Deploy(V1))
    assert [(c.kind, c.action) for c in first.changes] == [
        ("Service", "create"), ("Service", "create"), ("Deployment", "create"),
        ("HTTPRoute" if split == "gateway-api" else "Ingress", "create"),
    ]
    assert writes(emu) == []
    deployed(target, emu, V1)

    plan = target.plan(Deploy(V2))
    by_name = {(c.kind, c.name): c for c in plan.changes}
    change = by_name[("Deployment", f"{N}-stable")]
    assert change.action == "update"
    assert f"-        image: {V1}\n" in change.diff and f"+        image: {V2}\n" in change.diff
    assert "-          value: 1.0.0\n" in change.diff and "+          value: 1.1.0\n" in change.diff
    assert "resourceVersion" not in change.diff and "uid" not in change.diff and "status" not in change.diff
    assert all(c.action == "unchanged" and c.diff == "" for c in plan.changes if c is not change)
    assert not plan.empty and plan.target == target.describe()
    assert target.plan(Deploy(V1)).empty

    canary_plan = target.plan(StartCanary(V2, 10))
    actions = {(c.kind, c.name): c.action for c in canary_plan.changes}
    assert actions[("Deployment", f"{N}-canary")] == "create"
    assert actions[("Service", f"{N}-canary")] == "unchanged"
    split_key = ("HTTPRoute", N) if split == "gateway-api" else ("Ingress", f"{N}-canary")
    assert actions[split_key] == ("update" if split == "gateway-api" else "create")

    scale = target.plan(Scale(12)).changes
    assert [(c.name, c.action) for c in scale] == [(f"{N}-stable", "scale")]
    assert "-  replicas: 9\n" in scale[0].diff and "+  replicas: 12\n" in scale[0].diff
    assert target.plan(Abort()).empty
    with pytest.raises(StepFailed, match="no canary is running"):
        target.plan(Promote())
    with pytest.raises(StepFailed, match="0..100"):
        target.plan(SetWeight(120))

    target.start_canary(V2, 10, Lines())
    emu.reset_requests()
    promote = {(c.kind, c.name): c for c in target.plan(Promote()).changes}
    assert f"+        image: {V2}\n" in promote[("Deployment", f"{N}-stable")].diff
    gone = promote[("Deployment", f"{N}-canary")]
    assert gone.action == "delete" and f"-        image: {V2}\n" in gone.diff
    assert not [line for line in gone.diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    abort = {(c.kind, c.name): c.action for c in target.plan(Abort()).changes}
    assert abort == {split_key: "update", ("Deployment", f"{N}-canary"): "scale"}

    assert writes(emu) == []  # plan reads only
    assert all(r.verb in ("get", "list") for r in emu.requests())
    assert container(deployment(emu, namespace, "stable"))["image"] == V1


# -------------------------------------------------------------------- faults --


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


def test_missing_namespace_says_create_it(tmp_path: Path, emu: KubeEmulator) -> None:
    target = make_target(tmp_path, emu, "no-such-namespace", "gateway-api")
    with pytest.raises(StepFailed) as err:
        target.deploy(V1, Lines())
    assert f"namespace no-such-namespace does not exist at {emu.url}" in str(err.value)
    assert "kubectl create namespace no-such-namespace" in err.value.next_options[0]


def test_rbac_denied_names_verb_resource_namespace_and_the_missing_rule_and_puts_back(
    target: KubernetesDeployTarget, emu: KubeEmulator, namespace: str, split: str
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
    assert stored(emu, "", "services", namespace, f"{N}-app") is None

    emu.clear_faults()
    deployed(target, emu)
    emu.deny("patch", "deployments/scale")
    with pytest.raises(StepFailed) as err:
        target.scale(12, Lines())
    assert 'resources: ["deployments/scale"], verbs: ["patch"]' in str(err.value)
    assert "Nothing was changed." in str(err.value)
    assert deployment(emu, namespace, "stable")["spec"]["replicas"] == 9  # type: ignore[index]


def test_a_put_back_that_fails_too_is_reported(
    target: KubernetesDeployTarget, emu: KubeEmulator, namespace: str, split: str
) -> None:
    emu.deny("patch", "deployments")
    emu.deny("delete", "services")
    with pytest.raises(StepFailed) as err:
        target.deploy(V1, Lines())
    assert f"Could NOT put back: deleted Service {N}-canary (RBAC forbids delete on services" in str(err.value)
    assert "fix by hand" in str(err.value)
    assert stored(emu, "", "services", namespace, f"{N}-app") is not None  # left, and said so


def test_conflict_409_names_the_object_says_retry_and_leaves_nothing_half_done(
    target: KubernetesDeployTarget, emu: KubeEmulator, namespace: str, split: str
) -> None:
    deployed(target, emu, V1)
    emu.conflict_once("patch", "deployments")
    with pytest.raises(StepFailed) as err:
        target.deploy(V2, Lines())
    assert f"Deployment {N}-stable was changed by another writer at the same time (409 Conflict)" in str(err.value)
    assert "Nothing was changed." in str(err.value)
    assert err.value.next_options[0].startswith("retry")
    assert container(deployment(emu, namespace, "stable"))["image"] == V1
    target.deploy(V2, Lines())  # the retry goes through
    assert container(deployment(emu, namespace, "stable"))["image"] == V2

    # A conflict on the split after the canary Deployment was created: the canary is removed again.
    weight_resource, weight_name, _ = split_object(emu, namespace, split)
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
    assert deployment(emu, namespace, "canary") is None
    assert target.status().canary_weight == 0


def test_stuck_rollout_aborts_back_to_the_previous_image_at_the_deadline(
    tmp_path: Path, kube_api: KubeAPI, emu: KubeEmulator, namespace: str, split: str
) -> None:
    target = make_target(tmp_path, emu, namespace, split, ready_timeout_s=1)
    deployed(target, emu, V1)
    client.CoreV1Api(kube_api.api_client).create_namespaced_event(namespace, {
        "metadata": {"name": "pull"}, "involvedObject": {"kind": "Pod", "name": f"{N}-stable-7f9-x1"},
        "reason": "Failed", "message": f'Failed to pull image "{V2}": not found', "type": "Warning",
        "lastTimestamp": "2030-01-01T10:00:00Z"})
    emu.never_ready(V2)  # its pods never pass their readiness probe
    emu.reset_requests()

    lines = Lines()
    with pytest.raises(StepFailed) as err:
        target.deploy(V2, lines)
    message = str(err.value)
    # 9 replicas, 25% surge and unavailable: 3 new pods, never ready; 2 old ones gone, 7 still serving.
    assert f"Deployment {N}-stable not ready within 1 s (7/9 ready, 5 updated): aborted automatically." in message
    assert f"{N}-stable: 7/9 ready, 5 updated" in lines
    assert f'Last warning: 10:00:00 Warning Failed pod/{N}-stable-7f9-x1: Failed to pull image "{V2}"' in message
    assert f"Put back: Deployment {N}-stable as it was." in message
    assert writes(emu) == [
        ("patch", "deployments", f"{N}-stable", 200),  # V2
        ("patch", "deployments", f"{N}-stable", 200),  # V1 again
    ]
    assert [r.summary for r in emu.writes()] == [
        f"Deployment replicas=9 image={V2}", f"Deployment replicas=9 image={V1}"]
    dep = deployment(emu, namespace, "stable")
    assert container(dep)["image"] == V1 and env_of(dep)["VERSION"] == "1.0.0"
    rolled_back(emu, namespace, "stable", 9)


def rolled_back(emu: KubeEmulator, namespace: str, track: str, replicas: int) -> None:
    """The put-back completes: the old pods serve again (polled: the controller works on its own clock)."""
    def complete() -> bool:
        status = (deployment(emu, namespace, track) or {}).get("status") or {}
        return status.get("updatedReplicas") == status.get("availableReplicas") == status.get("replicas") == replicas
    wait_until(complete, timeout=10, interval=0.05, what=f"{track} rolled back")


def test_a_rollout_past_its_progress_deadline_is_put_back_before_the_console_timeout(
    tmp_path: Path, kube_api: KubeAPI, emu: KubeEmulator, namespace: str, split: str
) -> None:
    """The Deployment's own progressDeadlineSeconds (set by an operator, kept by the console's applies) says
    the rollout is stuck long before ready_timeout_s: the put-back starts then."""
    target = make_target(tmp_path, emu, namespace, split, ready_timeout_s=120)
    deployed(target, emu, V1)
    client.AppsV1Api(kube_api.api_client).patch_namespaced_deployment(
        f"{N}-stable", namespace, {"spec": {"progressDeadlineSeconds": 1}}, field_manager="kubectl-edit")
    emu.never_ready(V2)
    emu.reset_requests()

    lines = Lines()
    with pytest.raises(StepFailed) as err:
        target.deploy(V2, lines)
    message = str(err.value)
    assert (f"Deployment {N}-stable made no progress (ReplicaSet \"{N}-stable-" in message
            and 'has timed out progressing.) (7/9 ready, 5 updated): aborted automatically.' in message)
    assert "not ready within" not in message
    assert f"Put back: Deployment {N}-stable as it was." in message
    dep = deployment(emu, namespace, "stable")
    assert container(dep)["image"] == V1 and dep and dep["spec"]["progressDeadlineSeconds"] == 1  # not ours to drop
    rolled_back(emu, namespace, "stable", 9)
    target.deploy(V1, Lines())  # nothing left to do
    assert [w[:2] for w in writes(emu)] == [("patch", "deployments")] * 2


def test_stuck_first_deploy_deletes_what_it_created(
    tmp_path: Path, emu: KubeEmulator, namespace: str
) -> None:
    target = make_target(tmp_path, emu, namespace, "ingress-nginx", ready_timeout_s=1)
    emu.never_ready(V1)
    with pytest.raises(StepFailed) as err:
        target.deploy(V1, Lines())
    assert f"Deployment {N}-stable not ready within 1 s (0/9 ready, 9 updated)" in str(err.value)
    assert (f"Put back: deleted Deployment {N}-stable; deleted Service {N}-canary; deleted Service {N}-app."
            in str(err.value))
    assert [w for w in writes(emu) if w[0] == "delete"] == [
        ("delete", "deployments", f"{N}-stable", 200),
        ("delete", "services", f"{N}-canary", 200),
        ("delete", "services", f"{N}-app", 200),
    ]
    assert stored(emu, "networking.k8s.io", "ingresses", namespace, N) is None  # never routed
    assert not [k for k in emu.store.objects if k[2] == namespace]


def test_stuck_canary_is_removed_and_gets_no_traffic(
    tmp_path: Path, emu: KubeEmulator, namespace: str, split: str
) -> None:
    target = make_target(tmp_path, emu, namespace, split, ready_timeout_s=1)
    deployed(target, emu, V1)
    emu.never_ready(V2)
    with pytest.raises(StepFailed) as err:
        target.start_canary(V2, 10, Lines())
    assert f"Deployment {N}-canary not ready within 1 s (0/1 ready, 1 updated)" in str(err.value)
    assert f"Put back: deleted Deployment {N}-canary." in str(err.value)
    assert deployment(emu, namespace, "canary") is None
    assert target.status().canary_weight == 0
    assert [w[:3] for w in writes(emu)] == [("patch", "deployments", f"{N}-canary"),
                                          ("delete", "deployments", f"{N}-canary")]


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


def test_a_namespace_being_deleted_is_not_called_an_rbac_problem(
    tmp_path: Path, kube_api: KubeAPI, emu: KubeEmulator
) -> None:
    core = client.CoreV1Api(kube_api.api_client)
    namespace = unique_name("rc-gone")
    core.create_namespace({"metadata": {"name": namespace}})
    hold = {"metadata": {"name": "hold", "finalizers": ["example.test/hold"]}}
    core.create_namespaced_config_map(namespace, hold)  # keeps the namespace Terminating until let go
    core.delete_namespace(namespace)
    target = make_target(tmp_path, emu, namespace, "ingress-nginx")
    try:
        with pytest.raises(StepFailed) as err:
            target.deploy(V1, Lines())
    finally:
        core.patch_namespaced_config_map("hold", namespace, {"metadata": {"finalizers": None}},
                                         _content_type="application/merge-patch+json")
    message = str(err.value)
    assert message.startswith(f"namespace {namespace} is being deleted (Terminating): nothing new can be created "
                              f"in it (Service {N}-app).")
    assert "because it is being terminated" in message and "RBAC" not in message
    assert err.value.next_options[0].startswith(f"wait until it is gone (kubectl get namespace {namespace})")


# ------------------------------------------------------------------ emulator --


def test_emulator_serves_httproutes_with_discovery_and_rbac_shaped_faults(kube_api: KubeAPI, emu: KubeEmulator,
                                                                          namespace: str) -> None:
    groups = client.ApisApi(kube_api.api_client).get_api_versions()
    assert "gateway.networking.k8s.io" in [g.name for g in groups.groups]
    custom = client.CustomObjectsApi(kube_api.api_client)
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"},
             "spec": {"rules": [{"backendRefs": [{"name": "a", "port": 80, "weight": 1}]}]}}
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", route)
    listed = custom.list_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["r"]

    emu.deny("list", "pods", user="system:serviceaccount:x:y")
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(kube_api.api_client).list_namespaced_pod(namespace)
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


# -------------------------------------------------------------- real cluster --


@pytest.mark.real_kube
def test_real_cluster_plan_and_status_read_only(tmp_path: Path, kube_api: KubeAPI) -> None:
    """RC_REAL_KUBE=1: through the kubeconfig, plan and status only read an empty namespace."""
    core = client.CoreV1Api(kube_api.api_client)
    namespace = unique_name("rc-kube")
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        target = KubernetesDeployTarget(release_config(tmp_path, None, namespace, "ingress-nginx"), "staging")
        plan = target.plan(Deploy(V1))
        assert [c.action for c in plan.changes] == ["create"] * 4
        status = target.status()
        assert (status.version, status.ready, status.desired) == ("-", 0, 0)
        assert client.AppsV1Api(kube_api.api_client).list_namespaced_deployment(namespace).items == []
        target.close()
    finally:
        core.delete_namespace(namespace)
