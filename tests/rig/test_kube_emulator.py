"""The Kubernetes API emulator behaves like an API server for the real client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from rig.helpers import wait_until
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


def service(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


def send(api: client.ApiClient, method: str, path: str, body: Any = None, content_type: str = "application/json",
         **query: str) -> tuple[int, Any, Any]:
    """(status, decoded body, headers) of a raw request: the typed client checks its arguments itself (pydantic),
    so what a real server must refuse goes out this way."""
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    params = api.param_serialize(method, path, query_params=list(query.items()), header_params=headers, body=body,
                                 auth_settings=["BearerToken"])
    response = api.call_api(*params)
    response.read()
    return response.status, json.loads(response.data or b"null"), response.headers


def refused(call: Any, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """(status, Status body) of a call the emulator must refuse."""
    with pytest.raises(ApiException) as exc:
        call(*args, **kwargs)
    return exc.value.status, json.loads(exc.value.body)


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


def settled(apps: client.AppsV1Api, name: str = "web", ns: str = "default") -> Any:
    """The Deployment once its rollout is complete (polled: the controller works on its own clock)."""
    def complete() -> Any:
        dep = apps.read_namespaced_deployment(name, ns)
        status, want = dep.status, dep.spec.replicas
        done = status is not None and status.observed_generation == dep.metadata.generation and (
            (status.updated_replicas or 0) == (status.replicas or 0) == (status.available_replicas or 0) == want)
        return dep if done else None
    return wait_until(complete, timeout=10, interval=0.02, what=f"deployment {name} rolled out")


def test_patch_flavours_generation_and_no_op(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment("default", deployment())
    assert created.metadata.generation == 1 and created.status is None  # the controller has not run yet
    assert settled(apps).status.ready_replicas == 2

    # Strategic merge (the client's default for a dict): containers merge by name.
    dep = apps.patch_namespaced_deployment(
        "web", "default", {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}}
    )
    container = dep.spec.template.spec.containers[0]
    assert container.image == "app:2" and container.env[0].name == "A"
    assert dep.metadata.generation == 2 and dep.status.observed_generation == 1  # observed on a later tick
    assert settled(apps).status.observed_generation == 2

    # JSON merge patch replaces lists.
    dep = apps.patch_namespaced_deployment(
        "web",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:3"}]}}}},
        _content_type="application/merge-patch+json",
    )
    assert dep.spec.template.spec.containers[0].env is None

    # JSON patch; then, once settled, a no-op keeps the resourceVersion.
    apps.patch_namespaced_deployment("web", "default", [{"op": "replace", "path": "/spec/replicas", "value": 4}])
    dep = settled(apps)
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
    core.create_namespaced_service("team", service("s"))
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service("team", service("s"))
    assert exc.value.status == 409 and '"reason": "AlreadyExists"' in exc.value.body


# ------------------------------------------------------ refused as a real server refuses --

ROUTE_API = ("gateway.networking.k8s.io", "v1")


def route(name: str = "web", **backend: Any) -> dict[str, Any]:
    ref = {"name": "web", "port": 80, **backend}
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [ref]}]}}


def causes(body: dict[str, Any]) -> list[str]:
    return [c["message"] for c in body["details"]["causes"]]


DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def test_objects_are_checked_against_the_pinned_openapi_schema(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    bare = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}}
    code, body, _ = send(api, "POST", DEPLOYMENTS, bare)
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["message"].startswith('Deployment.apps "web" is invalid: [')
    assert {"spec.selector: Required value", "spec.template: Required value"} <= set(causes(body))

    no_image = deployment()
    del no_image["spec"]["template"]["spec"]["containers"][0]["image"]
    code, body = refused(apps.create_namespaced_deployment, "default", no_image)
    assert code == 422 and causes(body) == ["spec.template.spec.containers[0].image: Required value"]

    wrong_type = deployment()
    wrong_type["spec"]["replicas"] = "two"
    code, body, _ = send(api, "POST", DEPLOYMENTS, wrong_type)
    assert (code, body["reason"]) == (400, "BadRequest")  # cannot even be decoded into a Deployment
    assert 'cannot be handled as a Deployment: json: cannot unmarshal string' in body["message"]
    assert "spec.replicas" in body["message"]

    # An unknown field: dropped with a warning (fieldValidation=Warn, the default), refused when Strict.
    typo = deployment()
    typo["spec"]["replica"] = 3
    code, created, headers = send(api, "POST", DEPLOYMENTS, typo)
    assert code == 201 and headers["Warning"] == '299 - "unknown field \\"spec.replica\\""'
    assert "replica" not in created["spec"] and apps.read_namespaced_deployment("web", "default").spec.replicas == 2
    code, body, _ = send(api, "PATCH", f"{DEPLOYMENTS}/web", {"spec": {"replica": 3}},
                         "application/merge-patch+json", fieldValidation="Strict")
    assert (code, body["message"]) == (400, 'strict decoding error: unknown field "spec.replica"')


def test_a_deployment_selector_must_match_its_template_labels_and_never_changes(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    mismatched = deployment()
    mismatched["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    code, body = refused(apps.create_namespaced_deployment, "default", mismatched)
    assert code == 422 and causes(body) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        "`selector` does not match template `labels`"]

    apps.create_namespaced_deployment("default", deployment())
    moved = deployment(app="web", tier="fe")  # the template follows, the selector may not
    for call in (apps.replace_namespaced_deployment, apps.patch_namespaced_deployment):
        code, body = refused(call, "web", "default", moved)
        assert code == 422 and causes(body) == [
            'spec.selector: Invalid value: {"matchLabels": {"app": "web", "tier": "fe"}}: field is immutable']
    code, _ = refused(apps.patch_namespaced_deployment, "web", "default", moved, field_manager="ops", force=True,
                      _content_type="application/apply-patch+yaml")
    assert code == 422


def test_a_service_needs_ports(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    code, body = refused(core.create_namespaced_service, "default", service(ports=[]))
    assert (code, body["message"]) == (422, 'Service "web" is invalid: spec.ports: Required value')
    two = service(ports=[{"port": 80}, {"port": 443, "name": "https"}])
    code, body = refused(core.create_namespaced_service, "default", two)
    assert code == 422 and causes(body) == ["spec.ports[0].name: Required value"]


def test_names_must_be_dns_names(api: client.ApiClient) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    code, body = refused(apps.create_namespaced_deployment, "default", deployment("Web_App", app="web"))
    assert code == 422 and body["message"].startswith(
        'Deployment.apps "Web_App" is invalid: metadata.name: Invalid value: "Web_App": a lowercase RFC 1123 '
        "subdomain must consist of lower case alphanumeric characters")
    code, body = refused(core.create_namespaced_service, "default", service("1-web"))  # a DNS-1035 label
    assert code == 422 and "a DNS-1035 label must consist of" in body["message"]
    code, body = refused(core.create_namespace, {"metadata": {"name": "team.a"}})  # a DNS-1123 label
    assert code == 422 and "a lowercase RFC 1123 label must consist of" in body["message"]


def test_annotation_values_must_be_strings(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    numbered = deployment()
    numbered["metadata"]["annotations"] = {"release-console/replicas-before-stop": 3}
    code, body, _ = send(api, "POST", DEPLOYMENTS, numbered)
    assert (code, body["reason"]) == (400, "BadRequest")
    assert ("json: cannot unmarshal number into Go struct field Deployment.metadata.annotations"
            ".release-console/replicas-before-stop of type string") in body["message"]

    apps.create_namespaced_deployment("default", deployment())
    code, _ = refused(apps.patch_namespaced_deployment, "web", "default",
                      {"metadata": {"annotations": {"n": 3}}}, _content_type="application/merge-patch+json")
    assert code == 400

    custom = client.CustomObjectsApi(api)  # a custom resource's body is not checked by the client
    annotated = route()
    annotated["metadata"]["annotations"] = {"weight": 10}
    code, body = refused(custom.create_namespaced_custom_object, *ROUTE_API, "default", "httproutes", annotated)
    assert code == 422 and causes(body) == [
        "metadata.annotations.weight: Invalid value: 10: metadata.annotations.weight in body must be of type "
        "string: 10"]


def test_httproutes_follow_their_crd_schema_and_take_no_strategic_merge(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(*ROUTE_API, "default", "httproutes", route())
    assert created["spec"]["parentRefs"] == [{"name": "gw", "group": "gateway.networking.k8s.io", "kind": "Gateway"}]
    rule = created["spec"]["rules"][0]  # the CRD's defaults
    assert rule["backendRefs"] == [{"name": "web", "port": 80, "group": "", "kind": "Service", "weight": 1}]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]

    code, body = refused(custom.patch_namespaced_custom_object, *ROUTE_API, "default", "httproutes", "web",
                         {"spec": {"hostnames": ["a.example.test"]}},
                         _content_type="application/strategic-merge-patch+json")
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")
    assert "strategic" not in body["message"]  # not among the accepted media types
    patched = custom.patch_namespaced_custom_object(*ROUTE_API, "default", "httproutes", "web",
                                                    {"spec": {"hostnames": ["a.example.test"]}})  # merge patch
    assert patched["spec"]["hostnames"] == ["a.example.test"]

    for bad, cause in (
        (route("w2", weight="10"), "spec.rules[0].backendRefs[0].weight: Invalid value: \"10\": "
                                   "spec.rules[0].backendRefs[0].weight in body must be of type int32: \"10\""),
        (route("w3", weight=-1), "spec.rules[0].backendRefs[0].weight: Invalid value: -1: "
                                 "spec.rules[0].backendRefs[0].weight in body should be greater than or equal to 0"),
        (route("w4", port=None), "spec.rules[0].backendRefs[0]: Invalid value: \"object\": "
                                 "Must have port for Service reference"),
        (route("Bad_Name"), None),
    ):
        if "port" in bad["spec"]["rules"][0]["backendRefs"][0] and \
                bad["spec"]["rules"][0]["backendRefs"][0]["port"] is None:
            del bad["spec"]["rules"][0]["backendRefs"][0]["port"]
        code, body = refused(custom.create_namespaced_custom_object, *ROUTE_API, "default", "httproutes", bad)
        assert code == 422
        assert cause is None or causes(body) == [cause]


# ----------------------------------------------------------------- server-side apply --

APPLY = "application/apply-patch+yaml"


def apply(apps: client.AppsV1Api, manifest: dict[str, Any], manager: str, force: bool = False) -> Any:
    return apps.patch_namespaced_deployment(manifest["metadata"]["name"], "default", manifest, field_manager=manager,
                                            force=force, _content_type=APPLY)


def owners(dep: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m.manager, m.operation): m.fields_v1 for m in dep.metadata.managed_fields}


def test_server_side_apply_owns_fields_per_manager_and_conflicts_without_force(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    dep = apply(apps, deployment(), "release-console")
    mine = owners(dep)[("release-console", "Apply")]
    assert mine["f:spec"]["f:replicas"] == {} and mine["f:spec"]["f:selector"] == {}  # an atomic selector
    assert mine["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"app"}']["f:image"] == {}
    assert "f:strategy" not in mine["f:spec"]  # the defaults belong to nobody

    # Another manager changing a field release-console owns: 409, naming who owns what.
    scaled = deployment()
    scaled["spec"]["replicas"] = 5
    code, body = refused(apply, apps, scaled, "autoscaler")
    assert (code, body["reason"]) == (409, "Conflict")
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "release-console" using apps/v1: ' \
                              ".spec.replicas"
    assert body["details"]["causes"] == [{"reason": "FieldManagerConflict", "field": ".spec.replicas",
                                          "message": 'conflict with "release-console"'}]
    assert apps.read_namespaced_deployment("web", "default").spec.replicas == 2

    # The same value is no conflict: the field is shared. force=true takes a field over.
    shared = apply(apps, {**deployment(), "spec": {**deployment()["spec"], "replicas": 2}}, "autoscaler")
    assert "f:replicas" in owners(shared)[("autoscaler", "Apply")]["f:spec"]
    taken = apply(apps, scaled, "autoscaler", force=True)
    assert taken.spec.replicas == 5
    assert "f:replicas" not in owners(taken)[("release-console", "Apply")]["f:spec"]

    # An update (a non-apply patch) takes the fields it changes without a conflict.
    patched = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}}, field_manager="kubectl")
    assert owners(patched)[("kubectl", "Update")] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in owners(patched)[("autoscaler", "Apply")]["f:spec"]


def test_server_side_apply_removes_what_a_manager_stops_applying(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    first = deployment()
    first["metadata"]["annotations"] = {"note": "x", "shared": "y"}
    first["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B", "value": "2"})
    apply(apps, first, "release-console")
    apply(apps, {"apiVersion": "apps/v1", "kind": "Deployment",  # applies the same value: shares it
                 "metadata": {"name": "web", "annotations": {"shared": "y"}}}, "ops")
    apps.patch_namespaced_deployment("web", "default", {"metadata": {"annotations": {"theirs": "z"}}},
                                     field_manager="kubectl")  # an update: owns what it added

    dep = apply(apps, deployment(), "release-console")  # without the annotations and env B
    assert dep.metadata.annotations == {"shared": "y", "theirs": "z"}  # only what nobody else owns went away
    assert [e.name for e in dep.spec.template.spec.containers[0].env] == ["A"]
    dropped = deployment()
    del dropped["spec"]["replicas"]
    assert apply(apps, dropped, "release-console").spec.replicas == 1  # gone, then defaulted again

    rv = settled(apps).metadata.resource_version  # once the controller has written its status

    assert apply(apps, dropped, "release-console").metadata.resource_version == rv  # the same apply: a no-op


# ------------------------------------------------------------------------ defaulting --


def test_server_defaults_the_kinds_the_console_writes(api: client.ApiClient) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    manifest = deployment(image="registry:5000/app:1.2")
    del manifest["spec"]["replicas"]
    manifest["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
    manifest["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 3000}]
    manifest["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"port": 3000}}
    spec = apps.create_namespaced_deployment("default", manifest).to_dict()["spec"]
    assert spec["replicas"] == 1 and spec["revision_history_limit"] == 10
    assert spec["progress_deadline_seconds"] == 600
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rolling_update": {"max_surge": "25%", "max_unavailable": "25%"}}
    pod = spec["template"]["spec"]
    assert (pod["restart_policy"], pod["dns_policy"], pod["scheduler_name"]) == (
        "Always", "ClusterFirst", "default-scheduler")
    assert pod["termination_grace_period_seconds"] == 30
    app, side = pod["containers"]
    assert (app["image_pull_policy"], side["image_pull_policy"]) == ("IfNotPresent", "Always")  # a tag; none
    assert (app["termination_message_path"], app["termination_message_policy"]) == ("/dev/termination-log", "File")
    assert app["ports"][0]["protocol"] == "TCP"
    probe = app["readiness_probe"]
    assert probe["http_get"]["scheme"] == "HTTP" and probe["http_get"]["path"] == "/"
    assert (probe["period_seconds"], probe["timeout_seconds"], probe["failure_threshold"]) == (10, 1, 3)

    svc = core.create_namespaced_service("default", service()).spec
    assert (svc.type, svc.session_affinity, svc.internal_traffic_policy) == ("ClusterIP", "None", "Cluster")
    assert (svc.ports[0].protocol, svc.ports[0].target_port) == ("TCP", 80)
    assert svc.cluster_ip.startswith("10.96.") and svc.cluster_ips == [svc.cluster_ip]
    ns = core.create_namespace({"metadata": {"name": "team"}})
    assert ns.metadata.labels == {"kubernetes.io/metadata.name": "team"} and ns.spec.finalizers == ["kubernetes"]


# -------------------------------------------------------------------------- rollouts --


def status_stream(api: client.ApiClient, since: str, until: Any) -> list[Any]:
    """Every status the controller writes after resourceVersion `since`, until `until(status)`."""
    seen = []
    w = watch.Watch()
    for event in w.stream(client.AppsV1Api(api).list_namespaced_deployment, "default", resource_version=since,
                          timeout_seconds=10):
        dep = event["object"]
        seen.append(dep)
        if until(dep):
            w.stop()
    return seen


def test_a_rollout_progresses_within_its_surge_and_unavailable_limits(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    manifest = deployment()
    manifest["spec"]["replicas"] = 8  # 25%: 2 above, 2 below
    apps.create_namespaced_deployment("default", manifest)
    settled(apps)

    write = apps.patch_namespaced_deployment("web", "default", {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "app:2"}]}}}})
    assert write.metadata.generation == 2 and write.status.observed_generation == 1

    def done(dep: Any) -> bool:
        s = dep.status
        return s.observed_generation == 2 and s.updated_replicas == s.available_replicas == s.replicas == 8

    seen = [d.status for d in status_stream(api, write.metadata.resource_version, done)]
    assert all((s.replicas or 0) <= 10 for s in seen)  # never more than replicas + maxSurge
    assert all((s.available_replicas or 0) >= 6 for s in seen)  # never fewer than replicas - maxUnavailable
    partly = [s for s in seen if s.observed_generation == 2 and 0 < (s.updated_replicas or 0) < 8]
    assert partly, "no partly-updated state was seen"
    assert [s.updated_replicas or 0 for s in seen] == sorted(s.updated_replicas or 0 for s in seen)
    last = {c.type: c for c in seen[-1].conditions}
    assert (last["Progressing"].reason, last["Available"].status) == ("NewReplicaSetAvailable", "True")


def test_a_rollout_that_never_gets_ready_exceeds_its_progress_deadline(api: client.ApiClient,
                                                                      emu: KubeEmulator) -> None:
    apps = client.AppsV1Api(api)
    emu.never_ready("app:broken")
    manifest = deployment()
    manifest["spec"]["replicas"] = 4
    manifest["spec"]["progressDeadlineSeconds"] = 1
    apps.create_namespaced_deployment("default", manifest)
    settled(apps)
    write = apps.patch_namespaced_deployment("web", "default", {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "app:broken"}]}}}})

    def exceeded(dep: Any) -> bool:
        return any(c.reason == "ProgressDeadlineExceeded" for c in dep.status.conditions or [])

    stuck = status_stream(api, write.metadata.resource_version, exceeded)[-1].status
    progressing = next(c for c in stuck.conditions if c.type == "Progressing")
    assert progressing.status == "False" and progressing.message.endswith("has timed out progressing.")
    # 25% of 4: one pod above and one below; two new pods that never get ready, three old ones serving.
    assert (stuck.updated_replicas, stuck.ready_replicas, stuck.available_replicas, stuck.replicas) == (2, 3, 3, 5)
    assert stuck.unavailable_replicas == 1


# ------------------------------------------------------------------- namespaces, auth --


def test_a_deleted_namespace_terminates_for_a_while_and_refuses_new_content(emu: KubeEmulator,
                                                                           api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    emu.store.namespace_grace_s = 60  # the test moves the clock itself (below)
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_service("team", service("s"))
    core.delete_namespace("team")
    assert core.read_namespace("team").status.phase == "Terminating"
    code, body = refused(core.create_namespaced_config_map, "team", {"metadata": {"name": "late"}})
    assert (code, body["reason"]) == (403, "Forbidden")
    assert body["message"] == ('configmaps "late" is forbidden: unable to create new content in namespace team '
                               "because it is being terminated")
    assert body["details"]["causes"][0]["reason"] == "NamespaceTerminating"
    code, _ = refused(core.create_namespace, {"metadata": {"name": "team"}})
    assert code == 409  # still there
    wait_until(lambda: core.list_namespaced_service("team").items == [], timeout=5, interval=0.02,
               what="namespace team emptied")
    assert core.read_namespace("team").status.phase == "Terminating"  # empty, within its grace

    emu.controllers.tick(clock=emu.store.terminating["team"] + 60)
    assert refused(core.read_namespace, "team")[0] == 404


def test_finalizers_hold_a_deleted_object_and_its_namespace(emu: KubeEmulator, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_config_map("team", {"metadata": {"name": "held", "finalizers": ["example.test/hold"]}})
    core.delete_namespace("team")
    held = wait_until(lambda: core.read_namespaced_config_map("held", "team").metadata.deletion_timestamp,
                      timeout=5, interval=0.02, what="held marked deleted")
    assert held
    emu.controllers.tick(clock=emu.store.terminating["team"] + 3600)  # long past its grace: still held
    assert core.read_namespace("team").status.phase == "Terminating"
    core.patch_namespaced_config_map("held", "team", {"metadata": {"finalizers": None}},
                                     _content_type="application/merge-patch+json")
    assert refused(core.read_namespaced_config_map, "held", "team")[0] == 404  # gone with its last finalizer
    wait_until(lambda: "team" not in [n.metadata.name for n in core.list_namespace().items], timeout=5,
               interval=0.02, what="namespace team removed")


def test_a_bearer_token_is_required_when_configured() -> None:
    with KubeEmulator(token="s3cret-token") as emu:
        def api_with(token: str | None) -> client.CoreV1Api:
            cfg = client.Configuration(host=emu.url)
            if token:
                cfg.api_key, cfg.api_key_prefix = {"BearerToken": token}, {"BearerToken": "Bearer"}
            return client.CoreV1Api(client.ApiClient(cfg))

        for token in (None, "wrong"):
            code, body = refused(api_with(token).list_namespace)
            assert (code, body["reason"], body["message"]) == (401, "Unauthorized", "Unauthorized")
        assert "default" in [n.metadata.name for n in api_with("s3cret-token").list_namespace().items]
        assert [r.status for r in emu.requests() if r.resource == "namespaces"] == [401, 401, 200]
