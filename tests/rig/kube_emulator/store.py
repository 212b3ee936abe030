"""The objects in memory, with resourceVersions, watch history, managedFields, and namespaces that terminate.

Every write goes the API server's way: decode (unknown fields dropped or refused, JSON types checked),
defaults, admission (the namespace exists and is not terminating), validation, then managedFields
(fieldmanager.py) and storage (409 AlreadyExists, resourceVersion preconditions, no-op writes that
change nothing). A Deployment's status is the controller's (controller.py).
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import fieldmanager
from .defaults import apply_defaults
from .resources import ApiError, Resource, lookup, not_found, now
from .selectors import field_selector, label_selector
from .validation import decode, validate

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
WATCH_HISTORY = 2000
SERVER_FIELDS = ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion", "managedFields",
                 "deletionTimestamp")


@dataclass
class Write:
    """Who writes and how: the field manager, `fieldValidation`, `force`, and the warnings to send back."""

    manager: str = "release-console-emulator"
    field_validation: str = "Warn"
    force: bool = False
    warnings: list[str] = field(default_factory=list)


def _spec_of(obj: dict) -> dict:
    """Everything that counts for metadata.generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _check_body(body: Any) -> dict:
    if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
        raise ApiError(400, "BadRequest", "the body of the request must be an object")
    return copy.deepcopy(body)


class Store:
    """Objects keyed by (group, plural, namespace or "", name), plus watch history."""

    def __init__(self, auto_rollout: bool = True, namespace_grace_s: float = 0.3):
        self.auto_rollout = auto_rollout  # the Deployment controller runs (controller.py)
        self.namespace_grace_s = namespace_grace_s  # how long a deleted namespace stays Terminating
        self.cond = threading.Condition(threading.RLock())
        self.objects: dict[tuple[str, str, str, str], dict] = {}
        self.rv = 0
        self.history: list[tuple[int, Resource, str, dict]] = []
        self.closed = False
        self.terminating: dict[str, float] = {}  # namespace -> when it was deleted (monotonic)
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

    def _save(self, res: Resource, key: tuple[str, str, str, str], obj: dict, event: str) -> dict:
        self._bump(obj)
        self.objects[key] = obj
        self._emit(res, event, obj)
        return copy.deepcopy(obj)

    def _admit(self, res: Resource, ns: str | None, name: str, creating: bool) -> None:
        """The namespace exists; nothing new goes into one that is being terminated (403)."""
        if not res.namespaced:
            return
        if not ns:
            raise ApiError(400, "BadRequest", "the namespace of the object must be set")
        namespaces = self.resource("", "namespaces")
        if self._key(namespaces, None, ns) not in self.objects:
            raise not_found(namespaces, ns)
        if creating and ns in self.terminating:
            message = f"namespace {ns} is being terminated"
            raise ApiError(403, "Forbidden", f'{res.qualified} "{name}" is forbidden: unable to create new content '
                           f"in namespace {ns} because it is being terminated",
                           {"name": name, "group": res.group, "kind": res.plural,
                            "causes": [{"reason": "NamespaceTerminating", "message": message,
                                        "field": "metadata.namespace"}]})

    def _namespace_of(self, res: Resource, ns: str | None, meta: dict) -> str | None:
        if not res.namespaced:
            meta.pop("namespace", None)
            return None
        if meta.get("namespace") and ns and meta["namespace"] != ns:
            raise ApiError(400, "BadRequest",
                           "the namespace of the provided object does not match the namespace sent on the request")
        ns = ns or meta.get("namespace")
        meta["namespace"] = ns
        return ns

    def _finish_new(self, res: Resource, obj: dict) -> None:
        """A new object: server metadata, defaults, validation (admission is the caller's)."""
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        meta = obj["metadata"]
        for key in ("resourceVersion", "deletionTimestamp", "selfLink"):
            meta.pop(key, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if "status" in res.subresources:
            obj.pop("status", None)
        apply_defaults(res, obj)
        validate(res, obj)
        if res.kind == "Namespace":
            obj["status"] = {"phase": "Active"}

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

    def create(self, res: Resource, ns: str | None, body: Any, write: Write | None = None) -> dict:
        write = write or Write()
        obj = _check_body(body)
        write.warnings += decode(res, obj, write.field_validation)
        meta = obj.setdefault("metadata", {})
        ns = self._namespace_of(res, ns, meta)
        with self.cond:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            name = meta.get("name")
            if not name:
                raise ApiError(422, "Invalid", f"{res.kind}.{res.group or 'core'} is invalid: metadata.name: "
                               "Required value")
            self._admit(res, ns, name, creating=True)
            meta.pop("managedFields", None)
            self._finish_new(res, obj)
            key = self._key(res, ns, name)
            if key in self.objects:
                raise ApiError(409, "AlreadyExists", f'{res.qualified} "{name}" already exists',
                               {"name": name, "group": res.group, "kind": res.plural})
            fieldmanager.track_update(res, None, obj, write.manager)
            return self._save(res, key, obj, "ADDED")

    def _current(self, res: Resource, ns: str | None, name: str, meta: dict, check_rv: bool = True) -> dict:
        old = self.objects.get(self._key(res, ns, name))
        if old is None:
            raise not_found(res, name)
        if meta.get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if check_rv and meta.get("resourceVersion") not in (None, "", old["metadata"]["resourceVersion"]):
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {res.qualified} "{name}": the object '
                           "has been modified; please apply your changes to the latest version and try again",
                           {"name": name, "group": res.group, "kind": res.plural})
        return old

    def _store_update(self, res: Resource, old: dict, obj: dict, subresource: str | None,
                      manager: str | None = None) -> dict:
        """Defaults, validation, generation, the update's managedFields (`manager`: an update, not an apply),
        then the write (none when nothing changed)."""
        if subresource != "status":
            apply_defaults(res, obj, old)
            if _spec_of(obj) != _spec_of(old):
                obj["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        validate(res, obj, old)
        if manager is not None:
            fieldmanager.track_update(res, old, obj, manager, subresource)
        if obj == old:
            return copy.deepcopy(old)  # no-op: no new resourceVersion, no event
        meta = obj["metadata"]
        key = self._key(res, meta.get("namespace"), meta["name"])
        saved = self._save(res, key, obj, "MODIFIED")
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and res.kind != "Namespace":
            self._remove(res, key)  # its last finalizer is gone: deleted now
        return saved

    def update(self, res: Resource, ns: str | None, name: str, new: Any, subresource: str | None = None,
               write: Write | None = None) -> dict:
        """Replace an object (PUT semantics) or, with subresource="status", its status."""
        write = write or Write()
        new = _check_body(new)
        write.warnings += decode(res, new, write.field_validation)
        with self.cond:
            old = self._current(res, ns, name, new.get("metadata") or {})
            if subresource == "status":
                obj = copy.deepcopy(old)
                obj["status"] = new.get("status")
                if obj["status"] is None:
                    obj.pop("status")
            else:
                obj = new
                obj["apiVersion"], obj["kind"] = res.api_version, res.kind
                meta = obj.setdefault("metadata", {})
                for key in SERVER_FIELDS:
                    meta.pop(key, None)
                    if key in old["metadata"]:
                        meta[key] = copy.deepcopy(old["metadata"][key])
                if "status" in res.subresources:
                    obj.pop("status", None)
                    if "status" in old:
                        obj["status"] = copy.deepcopy(old["status"])
            return self._store_update(res, old, obj, subresource, write.manager)

    def apply(self, res: Resource, ns: str | None, name: str, config: Any, subresource: str | None = None,
              write: Write | None = None) -> tuple[int, dict]:
        """Server-side apply (fieldmanager.apply); creates the object when missing: (201 or 200, the object)."""
        write = write or Write()
        config = _check_body(config)
        meta = config.setdefault("metadata", {})
        if meta.get("managedFields"):
            raise ApiError(400, "BadRequest", "metadata.managedFields must be nil")
        write.warnings += decode(res, config, write.field_validation)
        with self.cond:
            live = self.objects.get(self._key(res, ns, name))
            if live is None:
                if subresource is not None:
                    raise not_found(res, name)
                if meta.get("name") not in (None, name):
                    raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
                meta["name"] = name
                ns = self._namespace_of(res, ns, meta)
                self._admit(res, ns, name, creating=True)
                obj = fieldmanager.apply(res, None, config, write.manager, write.force)
                obj["metadata"].update(name=name, **({"namespace": ns} if ns else {}))
                self._finish_new(res, obj)
                return 201, self._save(res, self._key(res, ns, name), obj, "ADDED")
            self._current(res, ns, name, meta)
            obj = fieldmanager.apply(res, live, config, write.manager, write.force, subresource)
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            return 200, self._store_update(res, live, obj, subresource)

    def write_status(self, res: Resource, ns: str | None, name: str, status: dict) -> None:
        """The controller's status write (manager kube-controller-manager), if it changes anything."""
        old = self.objects.get(self._key(res, ns, name))
        if old is None or old.get("status") == status:
            return
        obj = copy.deepcopy(old)
        obj["status"] = status
        fieldmanager.track_update(res, old, obj, fieldmanager.CONTROLLER, "status")
        self._save(res, self._key(res, ns, name), obj, "MODIFIED")

    def delete(self, res: Resource, ns: str | None, name: str) -> dict:
        """Delete; a namespace is marked Terminating first (finalize_namespaces removes it and its content)."""
        with self.cond:
            key = self._key(res, ns, name)
            obj = self.objects.get(key)
            if obj is None:
                raise not_found(res, name)
            if res.kind == "Namespace":
                if name not in self.terminating:
                    self.terminating[name] = time.monotonic()
                    obj = copy.deepcopy(obj)
                    obj["metadata"]["deletionTimestamp"] = now()
                    obj["status"] = {"phase": "Terminating"}
                    return self._save(res, key, obj, "MODIFIED")
                return copy.deepcopy(obj)
            if obj["metadata"].get("finalizers"):  # deleted once its finalizers are removed
                if not obj["metadata"].get("deletionTimestamp"):
                    obj = copy.deepcopy(obj)
                    obj["metadata"]["deletionTimestamp"] = now()
                    return self._save(res, key, obj, "MODIFIED")
                return copy.deepcopy(obj)
            return self._remove(res, key)

    def _remove(self, res: Resource, key: tuple[str, str, str, str]) -> dict:
        obj = self.objects.pop(key)
        self._bump(obj)
        self._emit(res, "DELETED", obj)
        return obj

    def finalize_namespaces(self, clock: float | None = None) -> None:
        """The namespace controller: deletes what is in each terminating namespace, and removes the namespace
        once it is empty (objects with finalizers stay until those are removed) and its grace is over."""
        with self.cond:
            clock = time.monotonic() if clock is None else clock
            for ns, since in list(self.terminating.items()):
                content = [k for k in self.objects if k[2] == ns]
                for key in content:
                    self.delete(self.resource(key[0], key[1]), ns, key[3])
                if clock - since >= self.namespace_grace_s and not any(k[2] == ns for k in self.objects):
                    del self.terminating[ns]
                    self._remove(self.resource("", "namespaces"), self._key(self.resource("", "namespaces"),
                                                                            None, ns))

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

    def set_scale(self, res: Resource, ns: str | None, name: str, scale: dict, write: Write | None = None) -> dict:
        with self.cond:
            obj = self.get(res, ns, name)
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", "spec.replicas: must be a non-negative integer")
            want_rv = (scale.get("metadata") or {}).get("resourceVersion")
            obj["spec"]["replicas"] = replicas
            obj["metadata"]["resourceVersion"] = want_rv or obj["metadata"]["resourceVersion"]
            return self.scale_of(self.update(res, ns, name, obj, "scale", write))

    def reset(self) -> None:
        """Forget every object except the default namespaces, at once (no termination)."""
        with self.cond:
            self.terminating.clear()
            for key in list(self.objects):
                if not (key[1] == "namespaces" and key[3] in DEFAULT_NAMESPACES):
                    self._remove(self.resource(key[0], key[1]), key)
