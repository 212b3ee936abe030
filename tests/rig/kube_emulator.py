"""A small stateful Kubernetes API server for tests.

It serves the Kubernetes REST API over real HTTP (stdlib ``http.server`` in a
background thread), so the real ``kubernetes`` client talks to it unpatched:

    emu = KubeEmulator().start()
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=emu.url))

Why not kmock: kmock 0.8's ``KubernetesEmulator`` keeps objects, but it has no
resourceVersion/uid/namespace in metadata, ignores label selectors, cannot
create cluster-scoped namespaces, and knows neither JSON patch, strategic merge
nor server-side apply, nor the scale subresource.

What is emulated (in memory, one store per server):

* resources: core/v1 namespaces, services, configmaps, secrets, pods, events;
  apps/v1 deployments, replicasets, statefulsets (``/scale``, ``/status``);
  networking.k8s.io/v1 ingresses; coordination.k8s.io/v1 leases; batch/v1 jobs;
  gateway.networking.k8s.io/v1 httproutes (as if its CRD were installed: served
  under /apis and in discovery). Add more in ``RESOURCES``.
* verbs: get, list (labelSelector, fieldSelector on any dotted path), watch
  (``?watch=1``; resourceVersion, timeoutSeconds, 410 Expired), create
  (generateName), replace (PUT, optimistic concurrency on resourceVersion),
  patch (``application/json-patch+json``, ``merge-patch+json``,
  ``strategic-merge-patch+json``, ``apply-patch+yaml``), delete,
  deletecollection; discovery (/api, /apis, /version).
* metadata: uid, creationTimestamp, resourceVersion (one global counter),
  generation (bumped when anything outside metadata/status changes); the
  ``status`` of resources with a status subresource changes only through it.
* errors are ``Status`` objects: 404 NotFound, 409 AlreadyExists/Conflict,
  400 BadRequest, 405 MethodNotAllowed, 415 UnsupportedMediaType.
* namespaced objects can only be created in an existing namespace (default,
  kube-system, kube-public and kube-node-lease exist); deleting a namespace
  deletes what is in it.
* "controllers": with ``auto_rollout`` (default on) a Deployment's status
  follows its spec at once (observedGeneration, replicas, updated/ready/
  available replicas, Available/Progressing conditions). Turn it off and write
  ``/status`` yourself to emulate a stuck rollout.
* a request log for tests: ``emu.requests()`` (every request: method, path,
  query, content type, verb, resource, namespace, name, status code and a short
  summary of the body), ``emu.writes()`` (only the changing ones),
  ``emu.reset_requests()``.
* fault injection for tests: ``emu.deny(verb, resource)`` answers 403
  Forbidden, the way the API server's RBAC authorizer words it, until
  ``emu.clear_faults()``; ``emu.conflict_once(verb, resource)`` answers the
  next matching request with 409 Conflict. ``resource`` is a plural, with a
  subresource if any (``deployments/scale``); ``"*"`` matches any verb or
  resource. A refused request changes nothing.

Approximations: server-side apply is a strategic merge that creates the object
when missing (no managedFields, so fields dropped from a later apply stay);
strategic merge knows the usual merge keys (containers/env/volumes by name,
ports by containerPort/port, conditions by type) and ``$patch: delete/replace``
only; no finalizers, admission, pagination (``limit``/``continue``), tables,
or protobuf; services get no clusterIP; nothing runs pods.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import yaml


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:  # as in error messages: deployments.apps
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: list[Resource] = [
    Resource("", "v1", "namespaces", "Namespace", False, ("status",), ("ns",)),
    Resource("", "v1", "services", "Service", True, ("status",), ("svc",)),
    Resource("", "v1", "configmaps", "ConfigMap", True, (), ("cm",)),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "pods", "Pod", True, ("status",), ("po",)),
    Resource("", "v1", "events", "Event", True, (), ("ev",)),
    Resource(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        ("scale", "status"),
        ("deploy",),
    ),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ("scale", "status"), ("rs",)),
    Resource("apps", "v1", "statefulsets", "StatefulSet", True, ("scale", "status"), ("sts",)),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("status",), ("ing",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
    Resource("batch", "v1", "jobs", "Job", True, ("status",)),
    Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", True, ("status",)),
]

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
WATCH_HISTORY = 2000
VERBS = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
]


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = (
            code,
            reason,
            message,
            details,
        )

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _not_found(res: Resource, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{res.qualified} "{name}" not found',
        {"name": name, "group": res.group, "kind": res.plural},
    )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------ requests and faults --

READ_VERBS = ("get", "list", "watch")
DEFAULT_USER = "system:serviceaccount:default:release-console"


@dataclass(frozen=True)
class Request:
    """One request as the emulator saw it (the request log)."""

    method: str
    path: str  # without the query
    query: str  # as sent, e.g. "fieldManager=release-console&force=true"
    content_type: str  # of the request body, "" without one
    verb: str  # as RBAC names it: get, list, watch, create, update, patch, delete, deletecollection
    resource: str  # plural, with the subresource: "deployments", "deployments/scale"; "" for discovery
    namespace: str | None
    name: str | None
    status: int  # the answer's HTTP status
    summary: str  # a short summary of the body: kind, replicas, images, weights

    @property
    def write(self) -> bool:
        return self.verb not in READ_VERBS and self.resource != ""


@dataclass(frozen=True)
class Fault:
    verb: str  # or "*"
    resource: str  # plural[/subresource], or "*"
    code: int  # 403 or 409
    once: bool
    user: str = DEFAULT_USER

    def matches(self, verb: str, resource: str) -> bool:
        return self.verb in ("*", verb) and self.resource in ("*", resource)


@dataclass(frozen=True)
class RequestInfo:
    verb: str
    group: str
    resource: str
    namespace: str | None
    name: str | None


def request_info(method: str, parts: list[str], query: dict) -> RequestInfo:
    """What the API server's RBAC would call this request: verb, group, resource, namespace, name."""
    verb = method.lower()
    if len(parts) < 2 or parts[0] not in ("api", "apis"):
        return RequestInfo(verb, "", "", None, None)
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    ns = None
    plurals = {r.plural for r in RESOURCES if r.group == group and r.namespaced}
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in plurals:
        ns, rest = rest[1], rest[2:]
    if not rest:
        return RequestInfo(verb, group, "", None, None)
    plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch") in ("1", "true") else "list")
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    return RequestInfo(verb, group, f"{plural}/{sub}" if sub else plural, ns, name)


def forbidden(info: RequestInfo, user: str) -> ApiError:
    """403 as the RBAC authorizer words it."""
    plural = info.resource.split("/")[0]
    qualified = f"{plural}.{info.group}" if info.group else plural
    what = f'{qualified} "{info.name}"' if info.name else qualified
    where = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
    return ApiError(
        403,
        "Forbidden",
        f'{what} is forbidden: User "{user}" cannot {info.verb} resource "{info.resource}" '
        f'in API group "{info.group}" {where}',
        {"name": info.name or "", "group": info.group, "kind": plural},
    )


def conflict(info: RequestInfo) -> ApiError:
    plural = info.resource.split("/")[0]
    qualified = f"{plural}.{info.group}" if info.group else plural
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified} "{info.name or ""}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": info.name or "", "group": info.group, "kind": plural},
    )


def summarize(body: Any) -> str:
    """A short, readable summary of a request body for the request log."""
    if isinstance(body, list):  # JSON patch
        return "; ".join(f"{op.get('op')} {op.get('path')}" for op in body if isinstance(op, dict))[:200]
    if not isinstance(body, dict):
        return ""
    parts = [body["kind"]] if body.get("kind") else []
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    if isinstance(spec, dict):
        if "replicas" in spec:
            parts.append(f"replicas={spec['replicas']}")
        pod = ((spec.get("template") or {}).get("spec")) or {}
        parts += [f"image={c.get('image')}" for c in pod.get("containers") or [] if c.get("image")]
        for rule in spec.get("rules") or []:
            for ref in (rule or {}).get("backendRefs") or []:
                parts.append(f"{ref.get('name')}={ref.get('weight')}")
    for key, value in (meta.get("annotations") or {}).items():
        if "weight" in key or "canary" in key or "release-console" in key:
            parts.append(f"{key.rsplit('/', 1)[-1]}={value}")
    return " ".join(parts)[:200]


# ------------------------------------------------------------------ patches --

_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "hostAliases": "ip",
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _list_merge_key(field: str, items: list) -> str | None:
    if field == "ports":
        for key in ("containerPort", "port"):
            if items and all(isinstance(i, dict) and key in i for i in items):
                return key
        return None
    key = _MERGE_KEYS.get(field)
    if key and all(isinstance(i, dict) for i in items):
        return key
    return None


def strategic_merge(target: Any, patch: Any) -> Any:
    """Strategic merge patch, for the usual merge keys (see module docstring)."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return merge_patch(target, patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $retainKeys, $setElementOrder/...: ignored
        old = result.get(key)
        if value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = strategic_merge(old if isinstance(old, dict) else {}, value)
        elif isinstance(value, list) and isinstance(old, list) and (mkey := _list_merge_key(key, old + value)):
            merged = copy.deepcopy(old)
            for item in value:
                idx = next(
                    (i for i, o in enumerate(merged) if o.get(mkey) == item.get(mkey)),
                    None,
                )
                if item.get("$patch") == "delete":
                    if idx is not None:
                        merged.pop(idx)
                elif idx is None:
                    merged.append({k: v for k, v in item.items() if not k.startswith("$")})
                else:
                    merged[idx] = strategic_merge(merged[idx], item)
            result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        try:
            doc = doc[int(part)] if isinstance(doc, list) else doc[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(422, "Invalid", f"path not found: /{'/'.join(parts)}") from None
    return doc


def json_patch(doc: Any, ops: list) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        if kind in ("move", "copy"):
            src = _pointer(op["from"])
            value = copy.deepcopy(_walk(doc, src))
            if kind == "move":
                doc = json_patch(doc, [{"op": "remove", "path": op["from"]}])
            doc = json_patch(doc, [{"op": "add", "path": op["path"], "value": value}])
            continue
        if kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise ApiError(422, "Invalid", f"test operation failed at {op['path']}")
            continue
        if not parts:
            if kind in ("add", "replace"):
                doc = copy.deepcopy(op["value"])
                continue
            raise ApiError(422, "Invalid", "cannot remove the whole document")
        parent, last = _walk(doc, parts[:-1]), parts[-1]
        if kind == "remove" or kind == "replace":
            _walk(doc, parts)  # must exist
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(idx, copy.deepcopy(op["value"]))
            elif kind == "remove":
                parent.pop(idx)
            elif kind == "replace":
                parent[idx] = copy.deepcopy(op["value"])
            else:
                raise ApiError(422, "Invalid", f"unknown JSON patch op {kind!r}")
        elif isinstance(parent, dict):
            if kind in ("add", "replace"):
                parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[last]
            else:
                raise ApiError(422, "Invalid", f"unknown JSON patch op {kind!r}")
        else:
            raise ApiError(422, "Invalid", f"cannot patch into {op['path']}")
    return doc


# ---------------------------------------------------------------- selectors --


def _split_terms(selector: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    terms.append(cur)
    return [t.strip() for t in terms if t.strip()]


def label_selector(selector: str | None) -> Callable[[dict], bool]:
    """Predicate over a labels dict for =, ==, !=, in, notin, key, !key."""
    checks: list[Callable[[dict], bool]] = []
    for term in _split_terms(selector or ""):
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            key, op, vals = (
                m.group(1),
                m.group(2),
                {v.strip() for v in m.group(3).split(",")},
            )
            if op == "in":
                checks.append(lambda lb, k=key, v=vals: lb.get(k) in v)
            else:
                checks.append(lambda lb, k=key, v=vals: lb.get(k) not in v)
        elif m := re.fullmatch(r"([\w./-]+)\s*(!=|==|=)\s*([\w./-]*)", term):
            key, op, val = m.groups()
            if op == "!=":
                checks.append(lambda lb, k=key, v=val: lb.get(k) != v)
            else:
                checks.append(lambda lb, k=key, v=val: lb.get(k) == v)
        elif m := re.fullmatch(r"!\s*([\w./-]+)", term):
            absent = m.group(1)
            checks.append(lambda lb, k=absent: k not in lb)
        elif re.fullmatch(r"[\w./-]+", term):
            checks.append(lambda lb, k=term: k in lb)
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return lambda labels: all(check(labels or {}) for check in checks)


def field_selector(selector: str | None) -> Callable[[dict], bool]:
    """Predicate over an object for path=value / path!=value (any dotted path)."""
    checks: list[Callable[[dict], bool]] = []
    for term in _split_terms(selector or ""):
        m = re.fullmatch(r"([\w.]+)\s*(!=|==|=)\s*(.*)", term)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term!r}")
        path, op, val = m.groups()

        def get(obj: dict, path: str = path) -> str:
            for part in path.split("."):
                obj = obj.get(part) if isinstance(obj, dict) else None
            return "" if obj is None else str(obj)

        if op == "!=":
            checks.append(lambda o, g=get, v=val: g(o) != v)
        else:
            checks.append(lambda o, g=get, v=val: g(o) == v)
    return lambda obj: all(check(obj) for check in checks)


# -------------------------------------------------------------------- store --


def _spec_of(obj: dict) -> dict:
    """Everything that counts for metadata.generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Store:
    """Objects keyed by (group, plural, namespace or "", name), plus watch history."""

    def __init__(self, auto_rollout: bool = True):
        self.auto_rollout = auto_rollout
        self.cond = threading.Condition(threading.RLock())
        self.objects: dict[tuple[str, str, str, str], dict] = {}
        self.rv = 0
        self.history: list[tuple[int, Resource, str, dict]] = []
        self.closed = False
        for ns in DEFAULT_NAMESPACES:
            self.create(self.resource("", "namespaces"), None, {"metadata": {"name": ns}})

    @staticmethod
    def resource(group: str, plural: str) -> Resource:
        for res in RESOURCES:
            if res.group == group and res.plural == plural:
                return res
        raise KeyError((group, plural))

    # -- helpers
    def _key(self, res: Resource, ns: str | None, name: str) -> tuple[str, str, str, str]:
        return (res.group, res.plural, ns or "", name)

    def _emit(self, res: Resource, kind: str, obj: dict) -> None:
        self.history.append((int(obj["metadata"]["resourceVersion"]), res, kind, copy.deepcopy(obj)))
        del self.history[:-WATCH_HISTORY]
        self.cond.notify_all()

    def _bump(self, obj: dict) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def _reconcile(self, res: Resource, obj: dict) -> None:
        """The "controllers": namespace phase, deployment rollout status."""
        if res.kind == "Namespace":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
        elif res.kind == "Deployment":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            if self.auto_rollout:
                n = spec["replicas"]
                status = {
                    "observedGeneration": obj["metadata"]["generation"],
                    "replicas": n,
                    "updatedReplicas": n,
                    "readyReplicas": n,
                    "availableReplicas": n,
                }
                status = {k: v for k, v in status.items() if v}
                old_conds = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions", [])}
                status["conditions"] = [
                    {
                        "type": "Available",
                        "status": "True",
                        "reason": "MinimumReplicasAvailable",
                        "message": "Deployment has minimum availability.",
                        "lastUpdateTime": _now(),
                        "lastTransitionTime": _now(),
                    },
                    {
                        "type": "Progressing",
                        "status": "True",
                        "reason": "NewReplicaSetAvailable",
                        "message": f'ReplicaSet "{obj["metadata"]["name"]}" has successfully progressed.',
                        "lastUpdateTime": _now(),
                        "lastTransitionTime": _now(),
                    },
                ]
                for cond in status["conditions"]:  # unchanged conditions keep their times
                    prev = old_conds.get(cond["type"])
                    if prev and prev.get("status") == cond["status"]:
                        cond["lastUpdateTime"] = prev.get("lastUpdateTime", cond["lastUpdateTime"])
                        cond["lastTransitionTime"] = prev.get("lastTransitionTime", cond["lastTransitionTime"])
                obj["status"] = status

    def _check_namespace(self, res: Resource, ns: str | None) -> None:
        if res.namespaced:
            if not ns:
                raise ApiError(400, "BadRequest", "the namespace of the object must be set")
            if self._key(self.resource("", "namespaces"), None, ns) not in self.objects:
                raise _not_found(self.resource("", "namespaces"), ns)

    # -- verbs (callers hold no lock; every verb takes it)
    def get(self, res: Resource, ns: str | None, name: str) -> dict:
        with self.cond:
            obj = self.objects.get(self._key(res, ns, name))
            if obj is None:
                raise _not_found(res, name)
            return copy.deepcopy(obj)

    def list(self, res: Resource, ns: str | None, labels: str | None, fields: str | None) -> tuple[list[dict], int]:
        match_labels, match_fields = label_selector(labels), field_selector(fields)
        with self.cond:
            items = [
                copy.deepcopy(obj)
                for (group, plural, obj_ns, _), obj in sorted(self.objects.items())
                if (group, plural) == (res.group, res.plural)
                and (ns is None or obj_ns == ns)
                and match_labels(obj["metadata"].get("labels"))
                and match_fields(obj)
            ]
            return items, self.rv

    def create(self, res: Resource, ns: str | None, body: dict) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be an object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            if meta.get("namespace") and ns and meta["namespace"] != ns:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            ns = ns or meta.get("namespace")
        with self.cond:
            self._check_namespace(res, ns)
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            name = meta.get("name")
            if not name:
                raise ApiError(
                    422,
                    "Invalid",
                    f"{res.kind}.{res.group or 'core'} is invalid: metadata.name: Required value",
                )
            key = self._key(res, ns, name)
            if key in self.objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{res.qualified} "{name}" already exists',
                    {"name": name, "group": res.group, "kind": res.plural},
                )
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            if res.namespaced:
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            for field in ("resourceVersion", "deletionTimestamp", "selfLink"):
                meta.pop(field, None)
            if "status" in res.subresources:
                obj.pop("status", None)
            self._reconcile(res, obj)
            self._bump(obj)
            self.objects[key] = obj
            self._emit(res, "ADDED", obj)
            return copy.deepcopy(obj)

    def update(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        new: dict,
        subresource: str | None = None,
        check_rv: bool = True,
    ) -> dict:
        """Replace an object (PUT semantics) or, with subresource="status", its status."""
        if not isinstance(new, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be an object")
        with self.cond:
            key = self._key(res, ns, name)
            old = self.objects.get(key)
            if old is None:
                raise _not_found(res, name)
            meta = new.get("metadata") or {}
            if meta.get("name") not in (None, name):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the name of the object does not match the name on the URL",
                )
            if check_rv and meta.get("resourceVersion") not in (
                None,
                "",
                old["metadata"]["resourceVersion"],
            ):
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": res.group, "kind": res.plural},
                )
            if subresource == "status":
                obj = copy.deepcopy(old)
                obj["status"] = copy.deepcopy(new.get("status"))
                if obj["status"] is None:
                    obj.pop("status")
            else:
                obj = copy.deepcopy(new)
                obj["apiVersion"], obj["kind"] = res.api_version, res.kind
                obj_meta = obj.setdefault("metadata", {})
                for field in (
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "resourceVersion",
                ):
                    if field in old["metadata"]:
                        obj_meta[field] = old["metadata"][field]
                if "status" in res.subresources:
                    obj.pop("status", None)
                    if "status" in old:
                        obj["status"] = copy.deepcopy(old["status"])
                if _spec_of(obj) != _spec_of(old):
                    obj_meta["generation"] = old["metadata"].get("generation", 1) + 1
                self._reconcile(res, obj)
            if obj == old:
                return copy.deepcopy(old)  # no-op: no new resourceVersion, no event
            self._bump(obj)
            self.objects[key] = obj
            self._emit(res, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(self, res: Resource, ns: str | None, name: str) -> dict:
        with self.cond:
            key = self._key(res, ns, name)
            obj = self.objects.pop(key, None)
            if obj is None:
                raise _not_found(res, name)
            self._bump(obj)
            self._emit(res, "DELETED", obj)
            if res.kind == "Namespace":  # cascade
                for other_key in [k for k in self.objects if k[2] == name]:
                    other = self.objects.pop(other_key)
                    self._bump(other)
                    self._emit(self.resource(other_key[0], other_key[1]), "DELETED", other)
            return obj

    def reset(self) -> None:
        """Forget every object except the default namespaces."""
        with self.cond:
            for key in list(self.objects):
                if key in self.objects and not (key[1] == "namespaces" and key[3] in DEFAULT_NAMESPACES):
                    self.delete(self.resource(key[0], key[1]), key[2] or None, key[3])


# ------------------------------------------------------------------- server --


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall
    server: _Server

    # -- plumbing
    def log_message(self, fmt: str, *args: Any) -> None:
        self.server.emulator._log(f"{self.address_string()} {fmt % args}")

    def _send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self._status = code
        self._record()  # before the answer goes out: a client that read it finds it in the log
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        raw = self._raw_body
        if not raw:
            raise ApiError(400, "BadRequest", "the request body is empty")
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        try:
            if "yaml" in ctype:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, "BadRequest", f"cannot decode the request body: {exc}") from None

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        # Always consume the body (DELETE sends DeleteOptions) to keep the
        # keep-alive connection in sync.
        length = int(self.headers.get("Content-Length") or 0)
        self._raw_body = self.rfile.read(length) if length else b""
        self._status = 200  # what a streamed answer (watch, healthz) sends
        parts = [p for p in url.path.split("/") if p]
        emulator = self.server.emulator
        info = request_info(method, parts, query)
        self._pending: Request | None = self._request(method, url.path, url.query, info)
        try:
            if (fault := emulator._take_fault(info.verb, info.resource)) is not None:
                raise forbidden(info, fault.user) if fault.code == 403 else conflict(info)
            if "dryRun" in query and method != "GET":
                raise ApiError(400, "BadRequest", "dryRun is not supported by the test emulator")
            result = self._route(method, parts, query)
            if result is not None:
                self._send_json(*result)
        except ApiError as exc:
            self._send_json(exc.code, exc.status())
        except Exception as exc:  # noqa: BLE001 - a bug in the emulator: answer 500, keep serving
            emulator._log(f"internal error: {exc!r}")
            self._send_json(500, ApiError(500, "InternalError", repr(exc)).status())
        finally:
            self._record()  # a streamed answer (watch, healthz): recorded when it ends

    def _record(self) -> None:
        if self._pending is not None:
            self.server.emulator._record(dataclasses.replace(self._pending, status=self._status))
            self._pending = None

    def _request(self, method: str, path: str, query: str, info: RequestInfo) -> Request:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip() if self._raw_body else ""
        try:
            summary = summarize(self._body()) if self._raw_body else ""
        except ApiError:
            summary = "(undecodable body)"
        return Request(
            method, path, query, ctype, info.verb, info.resource, info.namespace, info.name, self._status, summary
        )

    # -- routing
    def _route(self, method: str, parts: list[str], query: dict) -> tuple[int, Any] | None:
        store = self.server.emulator.store
        if parts in (["healthz"], ["readyz"], ["livez"]):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(data)
            return None
        if parts == ["version"]:
            return 200, {
                "major": "1",
                "minor": "30",
                "gitVersion": "v1.30.0-release-console-emulator",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean",
                "buildDate": "2024-04-17T00:00:00Z",
                "goVersion": "go1.22.2",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if not parts or parts[0] not in ("api", "apis"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if parts[0] == "api":
            group, rest = "", parts[1:]
            if not rest:
                return 200, {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [],
                }
        else:
            if len(parts) == 1:
                return 200, self._group_list()
            group, rest = parts[1], parts[2:]
            if not rest:
                groups = [g for g in self._group_list()["groups"] if g["name"] == group]
                if not groups:
                    raise ApiError(
                        404,
                        "NotFound",
                        "the server could not find the requested resource",
                    )
                return 200, {"kind": "APIGroup", "apiVersion": "v1", **groups[0]}
        version, rest = rest[0], rest[1:]
        known = [r for r in RESOURCES if r.group == group and r.version == version]
        if not known:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return 200, self._resource_list(group, version, known)

        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3 and any(r.plural == rest[2] and r.namespaced for r in known):
            ns, rest = rest[1], rest[2:]
        plural, name, sub = (
            rest[0],
            (rest[1] if len(rest) > 1 else None),
            (rest[2] if len(rest) > 2 else None),
        )
        res = next((r for r in known if r.plural == plural), None)
        if (
            res is None
            or len(rest) > 3
            or (ns is not None and not res.namespaced)
            or (sub and sub not in res.subresources)
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if res.namespaced and name is not None and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")

        if name is None:
            if method == "GET" and query.get("watch") in ("1", "true"):
                self._watch(res, ns, query)
                return None
            if method == "GET":
                items, rv = store.list(res, ns, query.get("labelSelector"), query.get("fieldSelector"))
                for item in items:
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
                return 200, {
                    "kind": f"{res.kind}List",
                    "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": str(rv)},
                    "items": items,
                }
            if method == "POST":
                return 201, store.create(res, ns, self._body())
            if method == "DELETE":
                items, _ = store.list(res, ns, query.get("labelSelector"), query.get("fieldSelector"))
                for item in items:
                    store.delete(res, item["metadata"].get("namespace"), item["metadata"]["name"])
                return 200, {
                    "kind": f"{res.kind}List",
                    "apiVersion": res.api_version,
                    "metadata": {},
                    "items": items,
                }
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )

        if method == "GET":
            obj = store.get(res, ns, name)
            return 200, self._scale_of(res, obj) if sub == "scale" else obj
        if method == "PUT":
            body = self._body()
            if sub == "scale":
                return 200, self._set_scale(res, ns, name, body)
            return 200, store.update(res, ns, name, body, sub)
        if method == "PATCH":
            return self._patch(res, ns, name, sub, query)
        if method == "DELETE" and sub is None:
            obj = store.delete(res, ns, name)
            return 200, {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": name,
                    "group": res.group,
                    "kind": res.plural,
                    "uid": obj["metadata"]["uid"],
                },
            }
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    def _patch(self, res: Resource, ns: str | None, name: str, sub: str | None, query: dict) -> tuple[int, Any]:
        store = self.server.emulator.store
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        patchers: dict[str, Callable[[Any, Any], Any]] = {
            "application/json-patch+json": json_patch,
            "application/merge-patch+json": merge_patch,
            "application/strategic-merge-patch+json": strategic_merge,
            "application/apply-patch+yaml": strategic_merge,
        }
        if ctype not in patchers:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(patchers),
            )
        patch = self._body()
        if ctype == "application/json-patch+json" and not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "json patch must be a list of operations")
        if ctype != "application/json-patch+json" and not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "the patch must be an object")
        if ctype == "application/apply-patch+yaml":
            if not query.get("fieldManager"):
                raise ApiError(400, "BadRequest", "fieldManager is required for apply requests")
            if sub is None and (patch.get("apiVersion") != res.api_version or patch.get("kind") != res.kind):
                raise ApiError(
                    400,
                    "BadRequest",
                    f"apply patch must set apiVersion: {res.api_version} and kind: {res.kind}",
                )
        with store.cond:  # read-modify-write atomically
            try:
                current = store.get(res, ns, name)
            except ApiError:
                if ctype != "application/apply-patch+yaml" or sub is not None:
                    raise
                body = copy.deepcopy(patch)
                body.setdefault("metadata", {})["name"] = name
                if ns:
                    body["metadata"]["namespace"] = ns
                return 201, store.create(res, ns, body)
            if sub == "scale":
                scale = patchers[ctype](self._scale_of(res, current), patch)
                return 200, self._set_scale(res, ns, name, scale)
            patched = patchers[ctype](current, patch)
            if not isinstance(patched, dict):
                raise ApiError(422, "Invalid", "the patched object is not an object")
            # A resourceVersion in the patch is a precondition; otherwise none.
            want_rv = ((patch if isinstance(patch, dict) else {}).get("metadata") or {}).get("resourceVersion")
            patched.setdefault("metadata", {})["resourceVersion"] = want_rv or current["metadata"]["resourceVersion"]
            return 200, store.update(res, ns, name, patched, sub)

    def _scale_of(self, res: Resource, obj: dict) -> dict:
        meta = obj["metadata"]
        labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in (
                    "name",
                    "namespace",
                    "uid",
                    "resourceVersion",
                    "creationTimestamp",
                )
                if k in meta
            },
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            },
        }

    def _set_scale(self, res: Resource, ns: str | None, name: str, scale: dict) -> dict:
        store = self.server.emulator.store
        with store.cond:
            obj = store.get(res, ns, name)
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", "spec.replicas: must be a non-negative integer")
            want_rv = (scale.get("metadata") or {}).get("resourceVersion")
            obj["spec"]["replicas"] = replicas
            obj["metadata"]["resourceVersion"] = want_rv or obj["metadata"]["resourceVersion"]
            return self._scale_of(res, store.update(res, ns, name, obj))

    def _group_list(self) -> dict:
        groups: dict[str, list[str]] = {}
        for res in RESOURCES:
            if res.group and res.version not in groups.setdefault(res.group, []):
                groups[res.group].append(res.version)
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                    "preferredVersion": {
                        "groupVersion": f"{g}/{vs[0]}",
                        "version": vs[0],
                    },
                }
                for g, vs in groups.items()
            ],
        }

    def _resource_list(self, group: str, version: str, known: list[Resource]) -> dict:
        resources = []
        for res in known:
            resources.append(
                {
                    "name": res.plural,
                    "singularName": res.kind.lower(),
                    "kind": res.kind,
                    "namespaced": res.namespaced,
                    "verbs": VERBS,
                    "shortNames": list(res.short_names),
                }
            )
            for sub in res.subresources:
                kind = "Scale" if sub == "scale" else res.kind
                resources.append(
                    {
                        "name": f"{res.plural}/{sub}",
                        "singularName": "",
                        "kind": kind,
                        "namespaced": res.namespaced,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    # -- watch
    def _watch(self, res: Resource, ns: str | None, query: dict) -> None:
        store = self.server.emulator.store
        match_labels = label_selector(query.get("labelSelector"))
        match_fields = field_selector(query.get("fieldSelector"))
        timeout = min(float(query.get("timeoutSeconds") or 300), 1800)

        def wanted(r: Resource, obj: dict) -> bool:
            return (
                r is res
                and (ns is None or obj["metadata"].get("namespace") == ns)
                and match_labels(obj["metadata"].get("labels"))
                and match_fields(obj)
            )

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(event: dict) -> None:
            data = json.dumps(event).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        rv_param = query.get("resourceVersion")
        with store.cond:
            if rv_param in (None, "", "0"):
                items, since = store.list(res, ns, query.get("labelSelector"), query.get("fieldSelector"))
                pending = [{"type": "ADDED", "object": item} for item in items]
            else:
                since, pending = int(rv_param), []
                oldest = store.history[0][0] if store.history else store.rv + 1
                if since < oldest - 1 and since < store.rv:
                    pending = [
                        {
                            "type": "ERROR",
                            "object": ApiError(
                                410,
                                "Expired",
                                f"too old resource version: {since} ({oldest - 1})",
                            ).status(),
                        }
                    ]
                    since = None
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.daemon = True
        timer.start()
        try:
            for event in pending:
                send(event)
            while since is not None and not deadline.is_set():
                with store.cond:
                    new = [(rv, r, kind, obj) for rv, r, kind, obj in store.history if rv > since]
                    if not new:
                        if store.closed:
                            break
                        store.cond.wait(0.5)
                        continue
                since = new[-1][0]
                for _, r, kind, obj in new:
                    if wanted(r, obj):
                        send({"type": kind, "object": obj})
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            timer.cancel()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: KubeEmulator


class KubeEmulator:
    """The emulator's HTTP server; ``start()`` serves it from a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | Path | None = None,
        auto_rollout: bool = True,
    ):
        self.store = Store(auto_rollout=auto_rollout)
        self._server = _Server((host, port), _Handler)
        self._server.emulator = self
        self._thread: threading.Thread | None = None
        self._log_file = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 - closed in stop()
        self._log_lock = threading.Lock()
        self._requests: list[Request] = []
        self._faults: list[Fault] = []

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def auto_rollout(self) -> bool:
        return self.store.auto_rollout

    @auto_rollout.setter
    def auto_rollout(self, value: bool) -> None:
        self.store.auto_rollout = value

    def _log(self, line: str) -> None:
        if self._log_file:
            with self._log_lock:
                self._log_file.write(f"{_now()} {line}\n")

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, name="kube-emulator", daemon=True)
        self._thread.start()
        self._log(f"serving on {self.url}")
        return self

    def stop(self) -> None:
        with self.store.cond:
            self.store.closed = True
            self.store.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def reset(self) -> None:
        """Forget every object (but the default namespaces), the request log and the faults."""
        self.store.reset()
        self.reset_requests()
        self.clear_faults()

    # -- the request log
    def _record(self, request: Request) -> None:
        with self._log_lock:
            self._requests.append(request)

    def requests(self) -> list[Request]:
        """Every request since the last reset, oldest first."""
        with self._log_lock:
            return list(self._requests)

    def writes(self) -> list[Request]:
        """The requests that would change something (not get, list, watch or discovery)."""
        return [r for r in self.requests() if r.write]

    def reset_requests(self) -> None:
        with self._log_lock:
            self._requests.clear()

    # -- faults
    def deny(self, verb: str, resource: str, user: str = DEFAULT_USER) -> None:
        """Answer `verb` on `resource` with 403 Forbidden (RBAC's wording) until clear_faults()."""
        with self._log_lock:
            self._faults.append(Fault(verb, resource, 403, once=False, user=user))

    def conflict_once(self, verb: str, resource: str) -> None:
        """Answer the next `verb` on `resource` with 409 Conflict, as if another writer got there first."""
        with self._log_lock:
            self._faults.append(Fault(verb, resource, 409, once=True))

    def clear_faults(self) -> None:
        with self._log_lock:
            self._faults.clear()

    def _take_fault(self, verb: str, resource: str) -> Fault | None:
        if not resource:
            return None  # discovery, /version, /healthz are never refused
        with self._log_lock:
            fault = next((f for f in self._faults if f.matches(verb, resource)), None)
            if fault is not None and fault.once:
                self._faults.remove(fault)
            return fault

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
