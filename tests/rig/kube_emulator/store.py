"""The objects in memory, with resourceVersions, watch history and the "controllers"."""

from __future__ import annotations

import copy
import threading
import uuid

from .resources import ApiError, Resource, lookup, not_found, now
from .selectors import field_selector, label_selector

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
WATCH_HISTORY = 2000


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
        return lookup(group, plural)

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
                        "lastUpdateTime": now(),
                        "lastTransitionTime": now(),
                    },
                    {
                        "type": "Progressing",
                        "status": "True",
                        "reason": "NewReplicaSetAvailable",
                        "message": f'ReplicaSet "{obj["metadata"]["name"]}" has successfully progressed.',
                        "lastUpdateTime": now(),
                        "lastTransitionTime": now(),
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
                raise not_found(self.resource("", "namespaces"), ns)

    # -- verbs (callers hold no lock; every verb takes it)
    def get(self, res: Resource, ns: str | None, name: str) -> dict:
        with self.cond:
            obj = self.objects.get(self._key(res, ns, name))
            if obj is None:
                raise not_found(res, name)
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
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
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
                raise not_found(res, name)
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
                raise not_found(res, name)
            self._bump(obj)
            self._emit(res, "DELETED", obj)
            if res.kind == "Namespace":  # cascade
                for other_key in [k for k in self.objects if k[2] == name]:
                    other = self.objects.pop(other_key)
                    self._bump(other)
                    self._emit(self.resource(other_key[0], other_key[1]), "DELETED", other)
            return obj

    # -- the scale subresource
    @staticmethod
    def scale_of(obj: dict) -> dict:
        """The autoscaling/v1 Scale of a deployment, replica set or stateful set."""
        meta = obj["metadata"]
        labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
            },
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            },
        }

    def set_scale(self, res: Resource, ns: str | None, name: str, scale: dict) -> dict:
        with self.cond:
            obj = self.get(res, ns, name)
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", "spec.replicas: must be a non-negative integer")
            want_rv = (scale.get("metadata") or {}).get("resourceVersion")
            obj["spec"]["replicas"] = replicas
            obj["metadata"]["resourceVersion"] = want_rv or obj["metadata"]["resourceVersion"]
            return self.scale_of(self.update(res, ns, name, obj))

    def reset(self) -> None:
        """Forget every object except the default namespaces."""
        with self.cond:
            for key in list(self.objects):
                if key in self.objects and not (key[1] == "namespaces" and key[3] in DEFAULT_NAMESPACES):
                    self.delete(self.resource(key[0], key[1]), key[2] or None, key[3])
