"""The Kubernetes API emulator behaves like an API server for the real client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from rig.kube_emulator import KubeEmulator, json_patch, label_selector, strategic_merge


@pytest.fixture
def emu() -> Iterator[KubeEmulator]:
    with KubeEmulator() as emulator:
        yield emulator


@pytest.fixture
def api(emu: KubeEmulator) -> Iterator[client.ApiClient]:
    api_client = client.ApiClient(client.Configuration(host=emu.url))
    yield api_client
    api_client.close()


def deployment(name: str = "web", image: str = "app:1", **labels: str) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image, "env": [{"name": "A", "value": "1"}]}]},
            },
        },
    }


def test_label_selector_syntax() -> None:
    match = label_selector("app=web,track!=canary,tier in (fe, be),!legacy,env")
    assert match({"app": "web", "track": "stable", "tier": "fe", "env": "prod"})
    assert not match({"app": "web", "track": "canary", "tier": "fe", "env": "prod"})
    assert not match({"app": "web", "tier": "db", "env": "prod"})
    assert not match({"app": "web", "tier": "fe", "env": "prod", "legacy": "1"})
    assert not match({"app": "web", "tier": "fe"})


def test_patch_helpers() -> None:
    target = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}
    merged = strategic_merge(target, {"spec": {"containers": [{"name": "b", "image": "2"}]}})
    assert merged["spec"]["containers"] == [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]
    deleted = strategic_merge(target, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}})
    assert deleted["spec"]["containers"] == [{"name": "b", "image": "1"}]
    patched = json_patch(target, [{"op": "add", "path": "/spec/containers/-", "value": {"name": "c"}}])
    assert [c["name"] for c in patched["spec"]["containers"]] == ["a", "b", "c"]
    assert target["spec"]["containers"][0] == {"name": "a", "image": "1"}  # inputs untouched


def test_patch_flavours_generation_and_no_op(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment("default", deployment())
    assert created.metadata.generation == 1 and created.status.ready_replicas == 2

    # Strategic merge (the client's default for a dict): containers merge by name.
    dep = apps.patch_namespaced_deployment(
        "web", "default", {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}}
    )
    container = dep.spec.template.spec.containers[0]
    assert container.image == "app:2" and container.env[0].name == "A"
    assert dep.metadata.generation == 2 and dep.status.observed_generation == 2

    # JSON merge patch replaces lists.
    dep = apps.patch_namespaced_deployment(
        "web",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:3"}]}}}},
        _content_type="application/merge-patch+json",
    )
    assert dep.spec.template.spec.containers[0].env is None

    # JSON patch; then a no-op keeps the resourceVersion.
    dep = apps.patch_namespaced_deployment("web", "default", [{"op": "replace", "path": "/spec/replicas", "value": 4}])
    assert dep.spec.replicas == 4
    same = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 4}})
    assert same.metadata.resource_version == dep.metadata.resource_version

    # A resourceVersion in a patch is a precondition.
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment("web", "default", {"metadata": {"resourceVersion": "1"}, "spec": {}})
    assert exc.value.status == 409


def test_server_side_apply_creates_then_merges(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    kwargs = {"field_manager": "release-console", "_content_type": "application/apply-patch+yaml"}
    first = apps.patch_namespaced_deployment("web", "default", deployment(), **kwargs)
    assert first.metadata.uid and first.spec.replicas == 2
    second = apps.patch_namespaced_deployment("web", "default", deployment(image="app:2"), **kwargs)
    assert second.metadata.uid == first.metadata.uid
    assert second.spec.template.spec.containers[0].image == "app:2"

    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment("web", "default", deployment(), _content_type="application/apply-patch+yaml")
    assert exc.value.status == 400  # fieldManager is required


def test_status_subresource_and_auto_rollout(api: client.ApiClient, emu: KubeEmulator) -> None:
    apps = client.AppsV1Api(api)
    emu.auto_rollout = False
    apps.create_namespaced_deployment("default", deployment())
    dep = apps.read_namespaced_deployment("web", "default")
    assert dep.status is None

    # Writes to the main resource ignore status; /status writes only status.
    apps.patch_namespaced_deployment("web", "default", {"status": {"replicas": 9}})
    assert apps.read_namespaced_deployment("web", "default").status is None
    stuck = {"status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 1, "unavailableReplicas": 1}}
    dep = apps.patch_namespaced_deployment_status("web", "default", stuck)
    assert dep.status.updated_replicas == 1 and dep.spec.replicas == 2


def test_watch_streams_changes_after_a_resource_version(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a")))
    rv = core.list_namespaced_config_map("default").metadata.resource_version

    def change() -> None:
        core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
        core.delete_namespaced_config_map("a", "default")

    threading.Timer(0.3, change).start()
    events = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5):
        events.append((event["type"], event["object"].metadata.name, event["object"].data))
        if len(events) == 2:
            w.stop()
    assert events == [("MODIFIED", "a", {"k": "v"}), ("DELETED", "a", {"k": "v"})]


def test_errors_are_kubernetes_status_objects(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service("missing-ns", client.V1Service(metadata=client.V1ObjectMeta(name="s")))
    assert exc.value.status == 404
    assert '"reason": "NotFound"' in exc.value.body and "namespaces" in exc.value.body

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team")))
    core.create_namespaced_service("team", client.V1Service(metadata=client.V1ObjectMeta(name="s")))
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service("team", client.V1Service(metadata=client.V1ObjectMeta(name="s")))
    assert exc.value.status == 409 and '"reason": "AlreadyExists"' in exc.value.body

    core.delete_namespace("team")  # cascades
    assert core.list_service_for_all_namespaces().items == []
