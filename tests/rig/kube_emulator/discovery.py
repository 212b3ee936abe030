"""Discovery: /version, /api, /apis, /apis/<group> and the resource lists, from RESOURCES."""

from __future__ import annotations

from .resources import RESOURCES, ApiError, Resource

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUBRESOURCE_VERBS = ["get", "patch", "update"]

VERSION = {
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

CORE_VERSIONS = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}


def group_list() -> dict:
    """/apis: every named group with its versions, the first one preferred."""
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
                "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
            }
            for g, vs in groups.items()
        ],
    }


def api_group(name: str) -> dict:
    """/apis/<group>."""
    groups = [g for g in group_list()["groups"] if g["name"] == name]
    if not groups:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return {"kind": "APIGroup", "apiVersion": "v1", **groups[0]}


def resource_list(group: str, version: str, known: list[Resource]) -> dict:
    """/api/v1 or /apis/<group>/<version>: the resources and their subresources."""
    resources = []
    for res in known:
        resources.append({
            "name": res.plural,
            "singularName": res.kind.lower(),
            "kind": res.kind,
            "namespaced": res.namespaced,
            "verbs": VERBS,
            "shortNames": list(res.short_names),
        })
        for sub in res.subresources:
            resources.append({
                "name": f"{res.plural}/{sub}",
                "singularName": "",
                "kind": "Scale" if sub == "scale" else res.kind,
                "namespaced": res.namespaced,
                "verbs": SUBRESOURCE_VERBS,
            })
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
