"""The request log (what the emulator was asked, as RBAC names it) and the faults tests inject."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .resources import RESOURCES, ApiError

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
