"""The resources the emulator serves, and the errors it answers with (``Status`` objects)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass


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
    Resource("", "v1", "pods", "Pod", True, ("status", "log"), ("po",)),
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


def lookup(group: str, plural: str) -> Resource:
    for res in RESOURCES:
        if res.group == group and res.plural == plural:
            return res
    raise KeyError((group, plural))


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


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{res.qualified} "{name}" not found',
        {"name": name, "group": res.group, "kind": res.plural},
    )


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
