"""The Kubernetes objects of one environment, rendered as plain manifests, and their diffs.

Pure functions, no API calls: manifests from the config, and readings (image, replicas,
rollout state, event lines) of the objects the API returns. The target
(services/adapters/kube_target.py) applies these with server-side apply, and plans by
diffing them against what the cluster has, restricted to the fields rendered here.

For app.name N: Services N-app (stable pods) and N-canary, Deployments N-stable and
N-canary, and the traffic split: Ingresses N and N-canary (ingress-nginx canary
annotations), or one HTTPRoute N with weighted backends (Gateway API).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

import yaml

from services.core.config import KubernetesTarget, ReleaseConfig
from services.core.references import version_of

Manifest = dict[str, Any]

FIELD_MANAGER = "release-console"
MANAGED_BY = {"app.kubernetes.io/managed-by": "release-console"}
CANARY = "nginx.ingress.kubernetes.io/canary"
CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
STOPPED_REPLICAS = "release-console/replicas-before-stop"
GATEWAY_API = "gateway.networking.k8s.io/v1"
SERVICE_PORT = 80


@dataclass(frozen=True)
class Objects:
    """Renders the manifests of one environment's app."""

    config: ReleaseConfig
    env: str

    @property
    def target(self) -> KubernetesTarget:
        target = self.config.environment(self.env).target
        assert isinstance(target, KubernetesTarget)
        return target

    @property
    def name(self) -> str:
        return self.config.app.name

    def deployment_name(self, track: str) -> str:
        return f"{self.name}-{track}"

    def service_name(self, track: str) -> str:
        return f"{self.name}-app" if track == "stable" else f"{self.name}-canary"

    @property
    def secret_name(self) -> str:
        return f"{self.name}-secrets"

    def _meta(self, name: str, track: str | None = None, annotations: dict[str, str] | None = None) -> Manifest:
        labels = {"app": self.name, **({"version": track} if track else {}), **MANAGED_BY}
        meta: Manifest = {"name": name, "namespace": self.target.namespace, "labels": labels}
        if annotations:
            meta["annotations"] = annotations
        return meta

    def service(self, track: str) -> Manifest:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self._meta(self.service_name(track), track),
            "spec": {
                "selector": {"app": self.name, "version": track},
                "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": self.config.app.port,
                           "protocol": "TCP"}],
            },
        }

    def deployment(self, track: str, image: str, replicas: int) -> Manifest:
        env = self.config.environment(self.env)
        app = self.config.app
        variables: list[Manifest] = [
            {"name": "VERSION", "value": version_of(image)},
            {"name": "PORT", "value": str(app.port)},
            {"name": "LOG_LEVEL", "value": env.log_level},
        ]
        variables += [
            {"name": f"FEATURE_{flag.upper()}", "value": "true" if on else "false"}
            for flag, on in env.features.model_dump().items()
        ]
        variables += [  # values live in the Secret; the console never writes them into a manifest
            {"name": key, "valueFrom": {"secretKeyRef": {"name": self.secret_name, "key": key}}}
            for key in ("DATABASE_URL", "REDIS_URL")
        ]
        labels = {"app": self.name, "version": track}
        container: Manifest = {
            "name": "app",
            "image": image,
            "ports": [{"name": "http", "containerPort": app.port, "protocol": "TCP"}],
            "env": variables,
            "readinessProbe": {"httpGet": {"path": app.health_path, "port": app.port}, "periodSeconds": 5},
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self._meta(self.deployment_name(track), track),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}},
            },
        }

    def _ingress_rule(self, track: str) -> Manifest:
        backend = {"service": {"name": self.service_name(track), "port": {"number": SERVICE_PORT}}}
        rule: Manifest = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
        return {"host": self.target.host, **rule} if self.target.host else rule

    def ingress(self, track: str, weight: int = 0) -> Manifest:
        """The stable Ingress N, or the canary Ingress N-canary carrying the canary weight."""
        canary = track == "canary"
        annotations = {CANARY: "true", CANARY_WEIGHT: str(weight)} if canary else None
        name = f"{self.name}-canary" if canary else self.name
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": self._meta(name, track if canary else None, annotations),
            "spec": {"ingressClassName": "nginx", "rules": [self._ingress_rule(track)]},
        }

    def route(self, weight: int) -> Manifest:
        """The HTTPRoute N: stable backend 100-weight, canary backend weight."""
        spec: Manifest = {"parentRefs": [{"name": self.target.gateway}]}
        if self.target.host:
            spec["hostnames"] = [self.target.host]
        spec["rules"] = [{
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [
                {"name": self.service_name("stable"), "port": SERVICE_PORT, "weight": 100 - weight},
                {"name": self.service_name("canary"), "port": SERVICE_PORT, "weight": weight},
            ],
        }]
        return {"apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": self._meta(self.name), "spec": spec}

    def split(self, weight: int) -> Manifest:
        """The object that carries the canary weight in the configured traffic split."""
        return self.route(weight) if self.target.traffic_split == "gateway-api" else self.ingress("canary", weight)

    def entry(self, weight: int) -> Manifest:
        """The object that sends traffic to the stable Service."""
        return self.route(weight) if self.target.traffic_split == "gateway-api" else self.ingress("stable")

    def weight_of(self, split: Manifest | None) -> int:
        """The canary weight an Ingress N-canary or an HTTPRoute N carries (0 when absent)."""
        if not split:
            return 0
        if split.get("kind") == "HTTPRoute":
            for rule in (split.get("spec") or {}).get("rules") or []:
                for ref in rule.get("backendRefs") or []:
                    if ref.get("name") == self.service_name("canary"):
                        return int(ref.get("weight") or 0)
            return 0
        annotations = (split.get("metadata") or {}).get("annotations") or {}
        return int(annotations.get(CANARY_WEIGHT) or 0)


# --- readings of what the API returns -----------------------------------------------------------


def image_of(deployment: Manifest | None) -> str | None:
    """The image of the Deployment's `app` container."""
    if not deployment:
        return None
    containers = ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    return next((c.get("image") for c in containers if c.get("name") == "app"), None)


def set_elsewhere(obj: Manifest | None, *prefix: str) -> list[tuple[str, str]]:
    """(manager, time) of each field manager other than the console's that owns a field under `prefix`
    (managedFields paths: "f:spec", "f:replicas"), status writes left out. The API server moves a field
    to whoever changed its value last (`kubectl scale`, `kubectl edit`, a patch), so a field of the
    console's that another manager owns now was changed outside the console; one it shares (the same
    value written again) was not."""
    found = []
    for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER or entry.get("subresource") == "status":
            continue
        node = entry.get("fieldsV1") or {}
        for element in prefix:
            node = node.get(element) if isinstance(node, dict) else None
            if node is None:
                break
        else:
            found.append((str(entry.get("manager") or "?"), str(entry.get("time") or "?")))
    return found


def replicas_of(deployment: Manifest | None) -> int:
    if not deployment:
        return 0
    return int((deployment.get("spec") or {}).get("replicas", 1))


def ready_of(deployment: Manifest | None) -> int:
    return int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)


def rollout(deployment: Manifest) -> tuple[bool, str, str | None]:
    """(complete, a progress line, why it will never complete or None)."""
    meta, spec, status = deployment["metadata"], deployment.get("spec") or {}, deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    ready, updated = int(status.get("readyReplicas") or 0), int(status.get("updatedReplicas") or 0)
    current, available = int(status.get("replicas") or 0), int(status.get("availableReplicas") or 0)
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    line = f"{ready}/{want} ready, {updated} updated" + ("" if observed else ", waiting for the controller")
    # A condition of a generation the controller has not seen yet (a put-back just applied) is stale.
    stuck = next((f"made no progress ({c.get('message') or c.get('reason')})"
                  for c in status.get("conditions") or []
                  if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"), None)
    # As `kubectl rollout status`: every replica updated, no old one left, each available (ready for
    # minReadySeconds), so a pod that turns ready and crashes at once does not count.
    complete = observed and updated == current == want and available >= want and ready >= want
    return complete, line, stuck if observed else None


def event_time(event: Manifest) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")


def event_line(event: Manifest) -> str:
    when = event_time(event)
    clock = when[11:19] if len(when) >= 19 else when
    obj = event.get("involvedObject") or {}
    count = int(event.get("count") or 1)
    message = " ".join(str(event.get("message") or "").split())
    message = message if len(message) <= 100 else message[:97] + "..."
    times = f" (x{count})" if count > 1 else ""
    return (f"{clock} {event.get('type') or 'Normal'} {event.get('reason') or ''} "
            f"{str(obj.get('kind') or '').lower()}/{obj.get('name')}: {message}{times}")


# --- diffs ------------------------------------------------------------------------------------


def managed_view(current: Any, desired: Any) -> Any:
    """`current` restricted to the shape of `desired`: what we manage, without server noise.

    Dict keys we do not render are dropped (status, uid, defaults). List items are matched by
    name where they have one, else by position; items we would not render stay, so that a
    removal shows in the diff.
    """
    if isinstance(current, dict) and isinstance(desired, dict):
        return {k: managed_view(current[k], desired[k]) for k in desired if k in current}
    if isinstance(current, list) and isinstance(desired, list):
        named = {d.get("name"): d for d in desired if isinstance(d, dict) and "name" in d}
        view = []
        for i, item in enumerate(current):
            if isinstance(item, dict) and item.get("name") in named:
                view.append(managed_view(item, named[item["name"]]))
            elif not named and i < len(desired):
                view.append(managed_view(item, desired[i]))
            else:
                view.append(item)
        return view
    return current


def to_yaml(manifest: Manifest | None) -> str:
    if not manifest:
        return ""
    unshared = json.loads(json.dumps(manifest))  # a dict used twice must not become a YAML alias
    return str(yaml.safe_dump(unshared, sort_keys=False, default_flow_style=False))


def diff(kind: str, name: str, current: Manifest | None, desired: Manifest | None) -> str:
    """Unified diff of the managed fields, current -> desired ("" when they are the same)."""
    before = to_yaml(managed_view(current, desired) if current and desired else current)
    after = to_yaml(desired)
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True),
        f"{kind}/{name} (cluster)", f"{kind}/{name} (planned)",
    )
    return "".join(lines)
