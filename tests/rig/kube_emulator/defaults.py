"""Defaulting, as the API server does it on every write before validation.

Built-in kinds: the SetDefaults_* functions of Kubernetes for what the console and the tests write
(Deployment, ReplicaSet, StatefulSet, Job and Pod templates, Pod, Service, Namespace); a custom
resource: the `default`s of its CRD schema. The Service's cluster IP is allocated here too (the
registry does it on create), from 10.96.0.0/16.
"""

from __future__ import annotations

import itertools
from typing import Any

from . import schema
from .resources import Resource

_cluster_ips = itertools.count(10)


def _set(obj: dict[str, Any], key: str, value: Any) -> None:
    if obj.get(key) is None:
        obj[key] = value


def _image_pull_policy(image: str) -> str:
    """Always for :latest or no tag (and no digest), else IfNotPresent."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _probe(probe: dict[str, Any] | None) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        _set(probe, key, value)
    if isinstance(probe.get("httpGet"), dict):
        _set(probe["httpGet"], "path", "/")
        _set(probe["httpGet"], "scheme", "HTTP")


def _container(container: dict[str, Any]) -> None:
    if isinstance(container.get("image"), str):
        _set(container, "imagePullPolicy", _image_pull_policy(container["image"]))
    _set(container, "terminationMessagePath", "/dev/termination-log")
    _set(container, "terminationMessagePolicy", "File")
    _set(container, "resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
    for env in container.get("env") or []:
        field_ref = ((env or {}).get("valueFrom") or {}).get("fieldRef")
        if isinstance(field_ref, dict):
            _set(field_ref, "apiVersion", "v1")
    for key in ("readinessProbe", "livenessProbe", "startupProbe"):
        _probe(container.get(key))


def pod_spec(spec: dict[str, Any] | None) -> None:
    if not isinstance(spec, dict):
        return
    _set(spec, "restartPolicy", "Always")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "securityContext", {})
    _set(spec, "schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _container(container)


def _template(spec: dict[str, Any]) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        pod_spec(template.get("spec"))


def _deployment(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    _set(spec, "replicas", 1)
    strategy = spec.setdefault("strategy", {})
    if isinstance(strategy, dict):
        _set(strategy, "type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            if isinstance(rolling, dict):
                _set(rolling, "maxUnavailable", "25%")
                _set(rolling, "maxSurge", "25%")
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    _template(spec)


def _service(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    _set(spec, "type", "ClusterIP")
    _set(spec, "sessionAffinity", "None")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
            if port.get("targetPort") in (None, 0, ""):
                port["targetPort"] = port.get("port")
    if spec["type"] == "ExternalName":
        return
    _set(spec, "internalTrafficPolicy", "Cluster")
    old_spec = (old or {}).get("spec") or {}
    if spec.get("clusterIP") in (None, "") and old_spec.get("clusterIP"):  # kept from the stored object
        spec["clusterIP"], spec["clusterIPs"] = old_spec["clusterIP"], old_spec.get("clusterIPs")
    if spec.get("clusterIP") in (None, ""):
        n = next(_cluster_ips)
        spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
    if spec["clusterIP"] != "None":
        _set(spec, "clusterIPs", [spec["clusterIP"]])
        _set(spec, "ipFamilies", ["IPv4"])
        _set(spec, "ipFamilyPolicy", "SingleStack")


def _from_schema(node: schema.Node, value: Any) -> None:
    """A CRD's structural defaults: a missing field with a `default` gets it, where its parent exists."""
    if isinstance(value, dict) and node.shape == "struct":
        for key, child in node.fields():
            has, default = node.default(key)
            if has and key not in value:
                value[key] = default
            if key in value:
                _from_schema(child, value[key])
    elif isinstance(value, list) and node.shape == "list":
        for item in value:
            _from_schema(node.item, item)


def apply_defaults(res: Resource, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    """Fill in, in place, what the API server would for a write of `obj` (over `old`, if any)."""
    if schema.is_custom(res):
        _from_schema(schema.node(res), obj)
        return
    kind = res.kind
    if kind == "Deployment":
        _deployment(obj)
    elif kind in ("ReplicaSet", "StatefulSet", "Job"):
        _template(obj.get("spec") or {})
    elif kind == "Pod":
        pod_spec(obj.get("spec"))
        if isinstance(obj.get("spec"), dict):
            _set(obj["spec"], "enableServiceLinks", True)
    elif kind == "Service":
        _service(obj, old)
    elif kind == "Namespace":
        meta = obj.setdefault("metadata", {})
        if meta.get("name"):
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
