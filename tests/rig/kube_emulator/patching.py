"""The patches the API server takes: JSON merge (RFC 7386), strategic merge, JSON patch (RFC 6902)."""

from __future__ import annotations

import copy
from typing import Any

from .resources import ApiError
from .schema import Node

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


def strategic_merge(target: Any, patch: Any, node: Node | None = None) -> Any:
    """Strategic merge patch: a list whose schema has patch strategy "merge" merges by its merge key
    (containers and env by name, ports by containerPort or port, ...), other lists are replaced;
    ``$patch: delete/replace`` only. Without a schema `node`, the usual merge keys of _MERGE_KEYS."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return merge_patch(target, patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $retainKeys, $setElementOrder/...: ignored
        old = result.get(key)
        child = node.child(key) if node is not None else None
        if value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = strategic_merge(old if isinstance(old, dict) else {}, value, child)
        elif isinstance(value, list) and isinstance(old, list) and (
                mkey := _merge_key(key, old + value, node, child)):
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
                    merged[idx] = strategic_merge(merged[idx], item, child.item if child is not None else None)
            result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_key(field: str, items: list, parent: Node | None, node: Node | None) -> str | None:
    if parent is None:
        return _list_merge_key(field, items)
    key = node.patch_merge_key if node is not None else None
    return key if key and all(isinstance(i, dict) for i in items) else None


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
