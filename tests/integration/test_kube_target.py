"""The Kubernetes deploy target's behaviour, on the emulator or (RC_REAL_KUBE=1) a real cluster.

Every test here is marked ``kube`` and reads the outcome through the Kubernetes API (rig.kube_cluster),
never from the emulator's store, so the same test runs on kind or k3d. On the emulator (the default) it
also checks the request log: what was created, patched and deleted, in order. Both traffic splits run:
ingress-nginx canary annotations, and one Gateway API HTTPRoute with weighted backends. Faults that only
the emulator can inject (RBAC denials, a racing writer, a bad token) are in test_kube_target_faults.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from rig.helpers import KubeAPI, wait_until
from rig.kube_cluster import (
    REPO,
    SPLITS,
    STUCK,
    V1,
    V2,
    Cluster,
    Lines,
    N,
    container,
    env_of,
    release_config,
)

from services.adapters.kube_target import KubernetesDeployTarget
from services.canary.rollout import ladder
from services.core.audit import AuditLog
from services.core.config import CanaryPolicy, CanaryStep
from services.core.events import Outcome
from services.core.journal import Journal
from services.core.locks import FileLocks
from services.core.operations import Operation, Result, Runner, Step, StepContext, StepFailed
from services.core.ports import Abort, Deploy, Promote, Scale, SetWeight, StartCanary

pytestmark = pytest.mark.kube
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


# ------------------------------------------------------------------ fixtures --


@pytest.fixture
def cluster(kube_api: KubeAPI) -> Iterator[Cluster]:
    cluster = Cluster(kube_api)
    if cluster.emulator is not None:
        cluster.emulator.never_ready(STUCK)  # a real cluster cannot pull it
    yield cluster
    if cluster.emulator is not None:
        cluster.emulator.controllers.never_ready.clear()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    yield from cluster.temporary_namespace()


@pytest.fixture(params=SPLITS)
def split(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_target(tmp_path: Path, cluster: Cluster, namespace: str, split: str,
                ready_timeout_s: int | None = None) -> KubernetesDeployTarget:
    config = release_config(tmp_path, cluster.url, namespace, split, ready_timeout_s or cluster.ready_timeout_s,
                            cluster.api.token)
    return KubernetesDeployTarget(config, "staging")


@pytest.fixture
def target(tmp_path: Path, cluster: Cluster, namespace: str, split: str) -> Iterator[KubernetesDeployTarget]:
    made = make_target(tmp_path, cluster, namespace, split)
    yield made
    made.close()


def deployed(target: KubernetesDeployTarget, cluster: Cluster, image: str = V1) -> None:
    target.deploy(image, Lines())
    cluster.reset_requests()


def serving_again(cluster: Cluster, namespace: str, track: str, replicas: int) -> None:
    """The put-back waited: the old pods serve again when the step fails, no polling needed."""
    status = (cluster.deployment(namespace, track) or {}).get("status") or {}
    counts = (status.get("updatedReplicas"), status.get("availableReplicas"), status.get("replicas"))
    assert counts == (replicas,) * 3, status


# ---------------------------------------------------------------- operations --


def test_first_deploy_creates_services_stable_deployment_and_entry_with_server_side_apply(
    target: KubernetesDeployTarget, cluster: Cluster, namespace: str, split: str
) -> None:
    lines = Lines()
    target.deploy(V1, lines)

    entry = ("httproutes", N) if split == "gateway-api" else ("ingresses", N)
    cluster.assert_writes([
        ("patch", "services", f"{N}-app", 201),
        ("patch", "services", f"{N}-canary", 201),
        ("patch", "deployments", f"{N}-stable", 201),
        ("patch", *entry, 201),
    ])
    for request in cluster.emulator.writes() if cluster.emulator else ():
        assert request.content_type == APPLY
        assert "fieldManager=release-console" in request.query and "force=false" in request.query

    dep = cluster.deployment(namespace, "stable")
    assert dep is not None and dep["spec"]["replicas"] == 9
    assert dep["metadata"]["labels"] == {
        "app": N, "version": "stable", "app.kubernetes.io/managed-by": "release-console"}
    assert dep["spec"]["template"]["metadata"]["labels"] == {"app": N, "version": "stable"}
    assert {(m["manager"], m["operation"]) for m in dep["metadata"]["managedFields"]} >= {
        ("release-console", "Apply")}
    app = container(dep)
    assert app["image"] == V1 and app["ports"][0]["containerPort"] == 3000
    assert app["readinessProbe"]["httpGet"] == {"path": "/api/health", "port": 3000, "scheme": "HTTP"}  # defaulted
    env = env_of(dep)
    assert env["VERSION"] == "1.0.0" and env["LOG_LEVEL"] == "warn"
    assert env["FEATURE_ANALYTICS"] == "true" and env["FEATURE_NOTIFICATIONS"] == "false"
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": f"{N}-secrets", "key": "DATABASE_URL"}}
    assert env["REDIS_URL"] == {"secretKeyRef": {"name": f"{N}-secrets", "key": "REDIS_URL"}}
    assert "s3cret" not in cluster.everything_in(namespace)  # secrets stay in the Secret, never in a manifest

    app_svc = cluster.get("", "services", namespace, f"{N}-app")
    canary_svc = cluster.get("", "services", namespace, f"{N}-canary")
    assert app_svc and app_svc["spec"]["selector"] == {"app": N, "version": "stable"}
    assert app_svc["spec"]["ports"][0]["port"] == 80 and app_svc["spec"]["ports"][0]["targetPort"] == 3000
    assert canary_svc and canary_svc["spec"]["selector"] == {"app": N, "version": "canary"}
    if split == "gateway-api":
        route = cluster.get("gateway.networking.k8s.io", "httproutes", namespace, N)
        assert route and route["spec"]["parentRefs"] == [  # with the CRD's defaults
            {"name": "public-gateway", "group": "gateway.networking.k8s.io", "kind": "Gateway"}]
        assert route["spec"]["hostnames"] == ["food.example.test"]
        assert cluster.weights(namespace, split) == {"stable": 100, "canary": 0}
    else:
        ingress = cluster.get("networking.k8s.io", "ingresses", namespace, N)
        assert ingress and ingress["spec"]["rules"][0]["host"] == "food.example.test"
        assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == f"{N}-app"
        assert "annotations" not in ingress["metadata"]

    assert any("9/9 ready" in line for line in lines)
    status = target.status()
    assert (status.version, status.image, status.ready, status.desired) == ("1.0.0", V1, 9, 9)
    assert status.canary_version is None and status.canary_weight == 0
    assert target.describe() == f"kubernetes namespace {namespace} at {cluster.api.host} ({split})"


def test_canary_start_weight_steps_and_promote(
    target: KubernetesDeployTarget, cluster: Cluster, namespace: str, split: str
) -> None:
    deployed(target, cluster)
    weight_resource, weight_name, _ = cluster.split_object(namespace, split)

    target.start_canary(V2, 10, Lines())
    # The canary Service came with the first deploy; the split is created (ingress) or patched (route).
    cluster.assert_writes([
        ("patch", "deployments", f"{N}-canary", 201),
        ("patch", weight_resource, weight_name, 200 if split == "gateway-api" else 201),
    ])
    canary = cluster.deployment(namespace, "canary")
    assert canary and canary["spec"]["replicas"] == 1 and container(canary)["image"] == V2
    assert canary["spec"]["selector"]["matchLabels"] == {"app": N, "version": "canary"}
    assert env_of(canary)["VERSION"] == "1.1.0"
    assert cluster.weights(namespace, split) == {"stable": 90, "canary": 10}

    for weight in (25, 50, 100):
        cluster.reset_requests()
        lines = Lines()
        target.set_weight(weight, lines)
        cluster.assert_writes([("patch", weight_resource, weight_name, 200)])
        assert cluster.weights(namespace, split) == {"stable": 100 - weight, "canary": weight}
        assert target.status().canary_weight == weight
        assert any(f"-> {weight}" in line for line in lines)
    status = target.status()
    assert (status.canary_version, status.canary_image, status.canary_ready) == ("1.1.0", V2, 1)

    cluster.reset_requests()
    target.promote(Lines())
    cluster.assert_writes([
        ("patch", "deployments", f"{N}-stable", 200),
        ("patch", weight_resource, weight_name, 200),
        ("delete", "deployments", f"{N}-canary", 200),
    ])
    stable = cluster.deployment(namespace, "stable")
    assert container(stable)["image"] == V2 and env_of(stable)["VERSION"] == "1.1.0"
    assert stable and stable["spec"]["replicas"] == 9
    wait_until(lambda: cluster.deployment(namespace, "canary") is None, timeout=cluster.ready_timeout_s,
               interval=0.05, what="the canary Deployment gone")
    assert cluster.weights(namespace, split) == {"stable": 100, "canary": 0}
    status = target.status()
    assert (status.version, status.canary_version, status.canary_weight) == ("1.1.0", None, 0)


def test_a_progressive_canarys_steps_are_the_splits_weights_at_each_step(
    target: KubernetesDeployTarget, cluster: Cluster, namespace: str, split: str
) -> None:
    """The ladder of `[canary] steps` as the canary operation applies it: the first step's weight when
    the canary starts, each next one with set_weight (one patch of the split object), read back through
    the API; then the promotion. (The emulator serves no metrics, so the checks between steps run in the
    sandbox drills and on the Docker rig, tests/integration/test_canary_e2e.py.)"""
    policy = CanaryPolicy(steps=[CanaryStep(weight=10, pause="5m"), CanaryStep(weight=25, pause="5m"),
                                 CanaryStep(weight=50, pause="10m")])
    steps = ladder(policy, {})
    deployed(target, cluster)
    weight_resource, weight_name, _ = cluster.split_object(namespace, split)

    target.start_canary(V2, steps[0].weight, Lines())
    applied = [cluster.weights(namespace, split)]
    for step in steps[1:]:
        cluster.reset_requests()
        target.set_weight(step.weight, Lines())
        cluster.assert_writes([("patch", weight_resource, weight_name, 200)])
        applied.append(cluster.weights(namespace, split))
        assert target.status().canary_weight == step.weight
    assert applied == [{"stable": 90, "canary": 10}, {"stable": 75, "canary": 25}, {"stable": 50, "canary": 50}]

    target.promote(Lines())
    assert cluster.weights(namespace, split) == {"stable": 100, "canary": 0}
    assert container(cluster.deployment(namespace, "stable"))["image"] == V2  # the canary took all: 100 %


def test_abort_sets_weight_zero_and_scales_the_canary_to_zero(
    target: KubernetesDeployTarget, cluster: Cluster, namespace: str, split: str
) -> None:
    deployed(target, cluster)
    target.start_canary(V2, 25, Lines())
    weight_resource, weight_name, _ = cluster.split_object(namespace, split)
    cluster.reset_requests()

    target.abort(Lines())
    cluster.assert_writes([
        ("patch", weight_resource, weight_name, 200),
        ("patch", "deployments/scale", f"{N}-canary", 200),
    ])
    if cluster.emulator:
        assert [r.content_type for r in cluster.emulator.writes()] == [APPLY, MERGE]
    assert cluster.weights(namespace, split) == {"stable": 100, "canary": 0}
    canary = cluster.deployment(namespace, "canary")
    assert canary and canary["spec"]["replicas"] == 0 and container(canary)["image"] == V2
    assert container(cluster.deployment(namespace, "stable"))["image"] == V1  # stable untouched
    status = target.status()
    assert (status.canary_version, status.canary_weight, status.version) == (None, 0, "1.0.0")

    cluster.reset_requests()
    lines = Lines()
    target.abort(lines)  # again: nothing left to do, nothing written
    assert "nothing to abort" in lines[-1]
    with pytest.raises(StepFailed, match="no canary is running"):
        target.set_weight(10, Lines())
    cluster.assert_writes([])


def test_deploy_of_a_new_image_and_rollback_patch_only_the_stable_deployment(
    target: KubernetesDeployTarget, cluster: Cluster, namespace: str, split: str
) -> None:
    deployed(target, cluster, V1)
    target.scale(4, Lines())  # the monitor scaled up: a deploy keeps the replica count
    cluster.reset_requests()

    lines = Lines()
    target.deploy(V2, lines)
    cluster.assert_writes([("patch", "deployments", f"{N}-stable", 200)])
    assert f"updated Deployment {N}-stable: image {V2} (was {V1})" in lines
    assert not [line for line in lines if "taking over" in line]  # its own /scale write is not another manager
    assert container(cluster.deployment(namespace, "stable"))["image"] == V2

    cluster.reset_requests()
    target.deploy(V1, Lines())  # rollback: a deploy of the earlier image
    cluster.assert_writes([("patch", "deployments", f"{N}-stable", 200)])
    dep = cluster.deployment(namespace, "stable")
    assert container(dep)["image"] == V1 and env_of(dep)["VERSION"] == "1.0.0"
    assert dep and dep["spec"]["replicas"] == 4
    assert target.status().version == "1.0.0"

    generation = dep["metadata"]["generation"]
    cluster.reset_requests()
    target.deploy(V1, Lines())  # the same image again: nothing to change, nothing written
    cluster.assert_writes([])
    assert cluster.deployment(namespace, "stable")["metadata"]["generation"] == generation  # type: ignore[index]


def test_a_field_another_manager_changed_is_taken_over_saying_from_whom(
    target: KubernetesDeployTarget, kube_api: KubeAPI, cluster: Cluster, namespace: str, split: str
) -> None:
    """Someone ran `kubectl set image`: the server refuses the console's apply with 409 (the field is
    theirs now); the console says it takes the field over, from whom, and applies with force."""
    deployed(target, cluster, V1)
    apps = client.AppsV1Api(kube_api.api_client)
    apps.patch_namespaced_deployment(f"{N}-stable", namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": f"{REPO}:hotfix"}]}}}}, field_manager="kubectl-set")
    cluster.reset_requests()

    lines = Lines()
    target.deploy(V2, lines)
    field = '.spec.template.spec.containers[name="app"].image'
    assert f"Deployment {N}-stable: taking over {field} from kubectl-set" in " ".join(lines)
    cluster.assert_writes([("patch", "deployments", f"{N}-stable", 409), ("patch", "deployments", f"{N}-stable", 200)])
    dep = cluster.deployment(namespace, "stable")
    assert container(dep)["image"] == V2
    owners = {m["manager"] for m in (dep or {})["metadata"]["managedFields"] if "image" in str(m.get("fieldsV1"))}
    assert owners == {"release-console"}


def test_scale_stop_and_start(target: KubernetesDeployTarget, cluster: Cluster, namespace: str, split: str) -> None:
    deployed(target, cluster)
    target.scale(12, Lines())
    cluster.assert_writes([("patch", "deployments/scale", f"{N}-stable", 200)])
    assert (target.status().ready, target.status().desired) == (12, 12)
    target.start_canary(V2, 10, Lines())
    cluster.reset_requests()

    target.stop(Lines())
    cluster.assert_writes([
        ("patch", "deployments", f"{N}-stable", 200),  # the replica count, noted in an annotation
        ("patch", "deployments/scale", f"{N}-stable", 200),
        ("patch", "deployments", f"{N}-canary", 200),
        ("patch", "deployments/scale", f"{N}-canary", 200),
    ])
    for track, replicas in (("stable", "12"), ("canary", "1")):
        dep = cluster.deployment(namespace, track)
        assert dep and dep["spec"]["replicas"] == 0
        assert dep["metadata"]["annotations"]["release-console/replicas-before-stop"] == replicas
    assert target.status().desired == 0

    cluster.reset_requests()
    target.start(Lines())
    cluster.assert_writes([
        ("patch", "deployments/scale", f"{N}-stable", 200),
        ("patch", "deployments", f"{N}-stable", 200),  # the note removed
        ("patch", "deployments/scale", f"{N}-canary", 200),
        ("patch", "deployments", f"{N}-canary", 200),
    ])
    for track, replicas in (("stable", 12), ("canary", 1)):
        dep = cluster.deployment(namespace, track)
        assert dep and dep["spec"]["replicas"] == replicas
        assert "release-console/replicas-before-stop" not in (dep["metadata"].get("annotations") or {})
    status = target.status()
    assert (status.ready, status.desired, status.canary_ready) == (12, 12, 1)

    cluster.reset_requests()
    lines = Lines()
    target.start(lines)
    cluster.assert_writes([])
    assert "nothing to start" in lines[-1]


def test_plan_shows_diffs_and_applies_nothing(
    target: KubernetesDeployTarget, cluster: Cluster, namespace: str, split: str
) -> None:
    first = target.plan(Deploy(V1))
    assert [(c.kind, c.action) for c in first.changes] == [
        ("Service", "create"), ("Service", "create"), ("Deployment", "create"),
        ("HTTPRoute" if split == "gateway-api" else "Ingress", "create"),
    ]
    assert cluster.deployment(namespace, "stable") is None
    cluster.assert_writes([])
    deployed(target, cluster, V1)

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
    cluster.reset_requests()
    promote = {(c.kind, c.name): c for c in target.plan(Promote()).changes}
    assert f"+        image: {V2}\n" in promote[("Deployment", f"{N}-stable")].diff
    gone = promote[("Deployment", f"{N}-canary")]
    assert gone.action == "delete" and f"-        image: {V2}\n" in gone.diff
    assert not [line for line in gone.diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    abort = {(c.kind, c.name): c.action for c in target.plan(Abort()).changes}
    assert abort == {split_key: "update", ("Deployment", f"{N}-canary"): "scale"}

    cluster.assert_writes([])  # plan reads only
    if cluster.emulator:
        assert all(r.verb in ("get", "list") for r in cluster.emulator.requests())
    assert container(cluster.deployment(namespace, "stable"))["image"] == V1
    assert container(cluster.deployment(namespace, "canary"))["image"] == V2


def test_missing_namespace_says_create_it(tmp_path: Path, cluster: Cluster) -> None:
    target = make_target(tmp_path, cluster, "rc-no-such-namespace", "gateway-api")
    with pytest.raises(StepFailed) as err:
        target.deploy(V1, Lines())
    assert f"namespace rc-no-such-namespace does not exist at {cluster.api.host}" in str(err.value)
    assert "kubectl create namespace rc-no-such-namespace" in err.value.next_options[0]


def test_a_namespace_being_deleted_is_not_called_an_rbac_problem(
    tmp_path: Path, kube_api: KubeAPI, cluster: Cluster
) -> None:
    core = client.CoreV1Api(kube_api.api_client)
    namespace = cluster.new_namespace("rc-gone")
    hold = {"metadata": {"name": "hold", "finalizers": ["example.test/hold"]}}
    core.create_namespaced_config_map(namespace, hold)  # keeps the namespace Terminating until let go
    core.delete_namespace(namespace)
    target = make_target(tmp_path, cluster, namespace, "ingress-nginx")
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


# ------------------------------------------------------------ stuck rollouts --


def test_stuck_rollout_aborts_back_to_the_previous_image_at_the_deadline(
    tmp_path: Path, kube_api: KubeAPI, cluster: Cluster, namespace: str, split: str
) -> None:
    deployed(make_target(tmp_path, cluster, namespace, split), cluster, V1)
    target = make_target(tmp_path, cluster, namespace, split, ready_timeout_s=cluster.stuck_timeout_s)
    client.CoreV1Api(kube_api.api_client).create_namespaced_event(namespace, {
        "metadata": {"name": "pull"}, "involvedObject": {"kind": "Pod", "name": f"{N}-stable-7f9-x1"},
        "reason": "Failed", "message": f'Failed to pull image "{STUCK}": not found', "type": "Warning",
        "lastTimestamp": "2030-01-01T10:00:00Z"})
    cluster.reset_requests()

    lines = Lines()
    with pytest.raises(StepFailed) as err:
        target.deploy(STUCK, lines)
    message = str(err.value)
    # 9 replicas, 25% surge and unavailable: 3 new pods, never ready; 2 old ones gone, 7 still serving.
    assert (f"Deployment {N}-stable not ready within {cluster.stuck_timeout_s} s (7/9 ready, 5 updated): "
            "aborted automatically.") in message
    assert f"{N}-stable: 7/9 ready, 5 updated" in lines
    assert f'Last warning: 10:00:00 Warning Failed pod/{N}-stable-7f9-x1: Failed to pull image "{STUCK}"' in message
    assert (f"Put back: Deployment {N}-stable as it was. Ready again: Deployment {N}-stable (9/9 ready, 9 updated)."
            in message)
    assert f"{N}-stable: 9/9 ready, 9 updated" in lines  # the put-back's rollout, followed
    cluster.assert_writes([
        ("patch", "deployments", f"{N}-stable", 200),  # STUCK
        ("patch", "deployments", f"{N}-stable", 200),  # V1 again
    ])
    if cluster.emulator:
        assert [r.summary for r in cluster.emulator.writes()] == [
            f"Deployment replicas=9 image={STUCK}", f"Deployment replicas=9 image={V1}"]
    dep = cluster.deployment(namespace, "stable")
    assert container(dep)["image"] == V1 and env_of(dep)["VERSION"] == "1.0.0"
    serving_again(cluster, namespace, "stable", 9)


def test_a_rollout_past_its_progress_deadline_is_put_back_before_the_console_timeout(
    tmp_path: Path, kube_api: KubeAPI, cluster: Cluster, namespace: str, split: str
) -> None:
    """The Deployment's own progressDeadlineSeconds (set by an operator, kept by the console's applies) says
    the rollout is stuck long before ready_timeout_s: the put-back starts then."""
    target = make_target(tmp_path, cluster, namespace, split, ready_timeout_s=max(120, cluster.ready_timeout_s))
    deployed(target, cluster, V1)
    client.AppsV1Api(kube_api.api_client).patch_namespaced_deployment(
        f"{N}-stable", namespace, {"spec": {"progressDeadlineSeconds": 1}}, field_manager="kubectl-edit")
    cluster.reset_requests()

    lines = Lines()
    with pytest.raises(StepFailed) as err:
        target.deploy(STUCK, lines)
    message = str(err.value)
    assert (f"Deployment {N}-stable made no progress (ReplicaSet \"{N}-stable-" in message
            and 'has timed out progressing.) (7/9 ready, 5 updated): aborted automatically.' in message)
    assert "not ready within" not in message
    assert f"Put back: Deployment {N}-stable as it was. Ready again: Deployment {N}-stable (9/9" in message
    dep = cluster.deployment(namespace, "stable")
    assert container(dep)["image"] == V1 and dep and dep["spec"]["progressDeadlineSeconds"] == 1  # not ours to drop
    serving_again(cluster, namespace, "stable", 9)
    target.deploy(V1, Lines())  # nothing left to do
    cluster.assert_writes([("patch", "deployments", f"{N}-stable", 200)] * 2)


def test_cancel_during_the_rollout_wait_puts_back_and_ends_cancelled(
    tmp_path: Path, cluster: Cluster, namespace: str, split: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ctrl+x (the operation's cancel event, set from another thread) while the rollout of an image that
    never gets ready is waited for: the Deployment is put back at once, not waited for (the message says
    so and how to watch it), and the operation ends cancelled at its step, resumable."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    deployed(make_target(tmp_path, cluster, namespace, split), cluster, V1)
    target = make_target(tmp_path, cluster, namespace, split, ready_timeout_s=max(120, cluster.ready_timeout_s))
    runner = Runner(Journal(tmp_path / "journal.sqlite3"), AuditLog(tmp_path / "audit.jsonl"),
                    FileLocks(tmp_path / "locks"))
    cancel, rolling = threading.Event(), threading.Event()

    def on_line(line: str) -> None:
        if line.startswith(f"{N}-stable: "):
            rolling.set()

    def apply(ctx: StepContext) -> str:
        target.deploy(STUCK, on_line)
        return "deployed"

    operation = Operation("deploy", "staging", "Deploy", [Step("apply", "Deploy", apply)], takes_lock=False)
    results: list[Result] = []
    worker = threading.Thread(target=lambda: results.append(runner.run(operation, lambda event: None,
                                                                        lambda question: None, cancel)))
    worker.start()
    assert rolling.wait(60), "the rollout was never waited for"
    if cluster.emulator is not None:  # its controller stops: the put-back cannot be ready at its first look
        cluster.emulator.auto_rollout = False
    try:
        cancel.set()
        worker.join(60)
    finally:
        if cluster.emulator is not None:
            cluster.emulator.auto_rollout = True
    [result] = results

    assert result.outcome is Outcome.CANCELLED and result.failed_step == "apply", result.detail
    assert "cancelled by the operator. Put back: Deployment" in result.detail
    if cluster.emulator is not None:  # the controller stopped: cancelled, not waited for
        assert f"Deployment {N}-stable as it was: not waited for (cancelled)" in result.detail
        assert f"rollout status deployment/{N}-stable" in result.detail
    else:  # a cluster may have the old pods ready at the first look: one look, and no wait, either way
        assert (f"Deployment {N}-stable as it was: not waited for (cancelled)" in result.detail
                or f"Ready again: Deployment {N}-stable" in result.detail), result.detail
    assert runner.journal.get(result.op_id).resume_index == 0
    assert container(cluster.deployment(namespace, "stable"))["image"] == V1


def test_stuck_first_deploy_deletes_what_it_created(tmp_path: Path, cluster: Cluster, namespace: str) -> None:
    target = make_target(tmp_path, cluster, namespace, "ingress-nginx", ready_timeout_s=cluster.stuck_timeout_s)
    with pytest.raises(StepFailed) as err:
        target.deploy(STUCK, Lines())
    assert (f"Deployment {N}-stable not ready within {cluster.stuck_timeout_s} s (0/9 ready, 9 updated)"
            in str(err.value))
    assert (f"Put back: deleted Deployment {N}-stable; deleted Service {N}-canary; deleted Service {N}-app."
            in str(err.value))
    if cluster.emulator:
        assert [(r.verb, r.resource, r.name, r.status) for r in cluster.emulator.writes() if r.verb == "delete"] == [
            ("delete", "deployments", f"{N}-stable", 200),
            ("delete", "services", f"{N}-canary", 200),
            ("delete", "services", f"{N}-app", 200),
        ]
    assert cluster.get("networking.k8s.io", "ingresses", namespace, N) is None  # never routed
    wait_until(lambda: not objects_of_the_app(cluster, namespace), timeout=cluster.ready_timeout_s, interval=0.05,
               what="nothing of the app left")


def objects_of_the_app(cluster: Cluster, namespace: str) -> list[Any]:
    listed = [cluster.read(f"/apis/apps/v1/namespaces/{namespace}/deployments"),
              cluster.read(f"/api/v1/namespaces/{namespace}/services")]
    return [item for body in listed for item in (body or {}).get("items", [])]


def test_stuck_canary_is_removed_and_gets_no_traffic(
    tmp_path: Path, cluster: Cluster, namespace: str, split: str
) -> None:
    deployed(make_target(tmp_path, cluster, namespace, split), cluster, V1)
    target = make_target(tmp_path, cluster, namespace, split, ready_timeout_s=cluster.stuck_timeout_s)
    with pytest.raises(StepFailed) as err:
        target.start_canary(STUCK, 10, Lines())
    assert (f"Deployment {N}-canary not ready within {cluster.stuck_timeout_s} s (0/1 ready, 1 updated)"
            in str(err.value))
    assert f"Put back: deleted Deployment {N}-canary." in str(err.value)
    wait_until(lambda: cluster.deployment(namespace, "canary") is None, timeout=cluster.ready_timeout_s,
               interval=0.05, what="the canary Deployment gone")
    assert target.status().canary_weight == 0
    cluster.assert_writes([("patch", "deployments", f"{N}-canary", 201),
                           ("delete", "deployments", f"{N}-canary", 200)])
