"""The OpenAPI schemas the emulator validates, defaults, merges and tracks fields with.

Built-in kinds: the JSON schemas of Kubernetes ``K8S_VERSION`` that the ``kubernetes-validate`` package
ships (offline, the same definitions the API server publishes at /openapi/v3), with their
``x-kubernetes-*`` extensions: list types and map keys (server-side apply), patch strategies and
merge keys (strategic merge). HTTPRoute: the CRD subset vendored in
tests/fixtures/gateway-api/ (hand-written: see its header).

``node(res)`` is the root of a kind's schema; ``Node.child(key)`` and ``Node.item`` walk it.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .resources import Resource

K8S_VERSION = "1.30"  # as /version says (discovery.VERSION)
CRD_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "gateway-api"
CRD_FILES = {("gateway.networking.k8s.io", "HTTPRoute"): "httproutes-v1-subset.yaml"}
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@functools.cache
def _builtin() -> dict[str, Any]:
    """The `$defs` of the pinned version (non-strict: unknown fields are pruned, not refused)."""
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{K8S_VERSION}.0-local"
    return dict(json.loads((root / "_definitions.json").read_text())["$defs"])


def _crd_schema(group: str, kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRD_DIR / CRD_FILES[(group, kind)]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    # The API server checks a custom resource's metadata as it does every object's.
    schema["properties"]["metadata"] = {"$ref": f"#/$defs/{OBJECT_META}"}
    return schema


@functools.cache
def definitions() -> dict[str, Any]:
    """Every definition by name: the built-in ones and each vendored CRD's as `crd.<group>.<Kind>`."""
    defs = dict(_builtin())
    for group, kind in CRD_FILES:
        defs[f"crd.{group}.{kind}"] = _crd_schema(group, kind)
    return defs


def is_custom(res: Resource) -> bool:
    return (res.group, res.kind) in CRD_FILES


@functools.cache
def _by_kind() -> dict[tuple[str, str, str], str]:
    found = {}
    for name, schema in _builtin().items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            found[(gvk["group"], gvk["version"], gvk["kind"])] = name
    return found


def definition_name(res: Resource) -> str:
    if is_custom(res):
        return f"crd.{res.group}.{res.kind}"
    return _by_kind()[(res.group, res.version, res.kind)]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its `$ref` followed; the referring schema's own keys win (x-kubernetes-patch-*)."""
    while "$ref" in schema:
        target = definitions()[schema["$ref"].rsplit("/", 1)[-1]]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if kind else set()


@dataclass(frozen=True)
class Node:
    """One place in a schema, and what server-side apply and strategic merge need to know of it."""

    schema: dict[str, Any]

    @classmethod
    def of(cls, schema: dict[str, Any] | None) -> Node:
        return cls(_resolve(schema or {}))

    @property
    def shape(self) -> str:
        """struct | map | list | scalar | any (an int-or-string is a scalar)."""
        s = self.schema
        types = _types(s)
        if "properties" in s:
            return "struct"
        if "object" in types:
            return "map" if isinstance(s.get("additionalProperties"), dict) else "any"
        if "array" in types:
            return "list"
        if types or "oneOf" in s or "anyOf" in s or s.get("x-kubernetes-int-or-string"):
            return "scalar"
        return "any"

    @property
    def atomic(self) -> bool:
        """Owned and replaced as a whole by server-side apply."""
        if self.shape in ("scalar", "any"):
            return True
        if self.shape == "list":
            return self.list_type == "atomic"
        return self.schema.get("x-kubernetes-map-type") == "atomic"

    @property
    def list_type(self) -> str:
        """atomic | map | set; a list without x-kubernetes-list-type is atomic."""
        return str(self.schema.get("x-kubernetes-list-type") or "atomic")

    @property
    def keys(self) -> list[str]:
        return list(self.schema.get("x-kubernetes-list-map-keys") or [])

    @property
    def patch_merge_key(self) -> str | None:
        if "merge" in str(self.schema.get("x-kubernetes-patch-strategy") or ""):
            return self.schema.get("x-kubernetes-patch-merge-key") or None
        return None

    @property
    def keeps_unknown(self) -> bool:
        return bool(self.schema.get("x-kubernetes-preserve-unknown-fields"))

    def child(self, key: str) -> Node | None:
        """The schema of field `key` of a struct or map; None when the schema has no such field."""
        s = self.schema
        if key in (s.get("properties") or {}):
            return Node.of(s["properties"][key])
        if isinstance(s.get("additionalProperties"), dict):
            return Node.of(s["additionalProperties"])
        if self.shape == "any" or self.keeps_unknown:
            return Node.of({})
        return None

    @property
    def item(self) -> Node:
        return Node.of(self.schema.get("items"))

    def default(self, key: str) -> tuple[bool, Any]:
        """(has a default, the default) of field `key`: the CRD's `default`s."""
        prop = (self.schema.get("properties") or {}).get(key)
        if isinstance(prop, dict) and "default" in prop:
            return True, prop["default"]
        return False, None

    def fields(self) -> Iterator[tuple[str, Node]]:
        for key in self.schema.get("properties") or {}:
            node = self.child(key)
            assert node is not None
            yield key, node


@functools.cache
def node(res: Resource) -> Node:
    """The root of a kind's schema."""
    return Node.of({"$ref": f"#/$defs/{definition_name(res)}"})


@functools.cache
def validator(res: Resource) -> jsonschema.protocols.Validator:
    """A JSON schema validator of a whole object of this kind."""
    schema = {"$defs": definitions(), "$ref": f"#/$defs/{definition_name(res)}"}
    return jsonschema.Draft202012Validator(schema)  # type: ignore[no-any-return]
