"""managedFields and server-side apply, after sigs.k8s.io/structured-merge-diff (what the API server uses).

A field set is a set of paths; a path is a tuple of elements as managedFields writes them:
``f:<field>``, ``k:{"name":"app"}`` (an item of a list-map, by its keys), ``v:<json>`` (an item of a
set). Members are the leaves, the items of list-maps and sets, and empty maps and structs; an atomic
value (a scalar, an atomic list or map such as a LabelSelector) is one leaf.

* An update (create, PUT, any non-apply patch, a /status or /scale write) gives its manager the fields
  it added or changed, and takes them from every other manager (operation ``Update``).
* An apply (``application/apply-patch+yaml``) merges the applied configuration into the live object
  by the schema (list-maps by their keys, sets by value, atomic values whole), then removes the fields
  this manager applied last time but no longer does, unless another manager owns them too. A field
  another manager owns whose value the apply would change is a conflict: 409 unless ``force=true``,
  which moves the field to the applier. Equal values are shared, not conflicts.

Not modelled: managedFields sent by a client (ignored on update, refused on apply), per-version
conversion (one version per kind), and unions/retainKeys.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import schema
from .resources import ApiError, Resource, now

Path = tuple[str, ...]
FieldSet = set[Path]
SERVER_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                   "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")
KEY_DEFAULTS = {"protocol": "TCP"}  # a list-map key left out of an item (container and service ports)
CONTROLLER = "kube-controller-manager"


# -- paths of a value ------------------------------------------------------------------------------------


def _item_key(node: schema.Node, item: Any) -> str:
    if not isinstance(item, dict):
        return "v:" + json.dumps(item, separators=(",", ":"))
    values = {k: item.get(k, KEY_DEFAULTS.get(k)) for k in node.keys if k in item or k in KEY_DEFAULTS}
    return "k:" + json.dumps(values, separators=(",", ":"), sort_keys=True)


def _granular(node: schema.Node, value: Any) -> bool:
    """Is this value tracked field by field (else it is one leaf)?"""
    if isinstance(value, dict):
        return node.shape in ("struct", "map") and not node.atomic and bool(value)
    if isinstance(value, list):
        return node.shape == "list" and node.list_type in ("map", "set") and bool(value)
    return False


def _paths(node: schema.Node, value: Any, path: Path, out: FieldSet) -> None:
    if not _granular(node, value):
        out.add(path)
    elif isinstance(value, dict):
        for key, child in value.items():
            _paths(node.child(key) or schema.Node.of({}), child, (*path, f"f:{key}"), out)
    else:
        for item in value:
            item_path = (*path, _item_key(node, item))
            out.add(item_path)
            if node.list_type == "map" and isinstance(item, dict):
                for key, child in item.items():
                    _paths(node.item.child(key) or schema.Node.of({}), child, (*item_path, f"f:{key}"), out)


def field_set(res: Resource, obj: dict[str, Any] | None, subresource: str | None = None) -> FieldSet:
    """The paths set in an object: its status only for a /status write, else all but its status; never the
    fields the server sets (apiVersion, kind, name, uid, resourceVersion, ...)."""
    out: FieldSet = set()
    root = schema.node(res)
    for key, value in (obj or {}).items():
        if key in ("apiVersion", "kind") or (key == "status") != (subresource == "status"):
            continue
        child = root.child(key) or schema.Node.of({})
        if key == "metadata" and isinstance(value, dict):
            for meta_key, meta_value in value.items():
                if meta_key not in SERVER_METADATA:
                    _paths(child.child(meta_key) or schema.Node.of({}), meta_value,
                           ("f:metadata", f"f:{meta_key}"), out)
        else:
            _paths(child, value, (f"f:{key}",), out)
    return out


def _find(items: list[Any], node: schema.Node, element: str) -> int | None:
    return next((i for i, item in enumerate(items) if _item_key(node, item) == element), None)


def _get(res: Resource, obj: Any, path: Path) -> Any:
    node, value = schema.node(res), obj
    for element in path:
        if element.startswith("f:"):
            node, value = node.child(element[2:]) or schema.Node.of({}), value[element[2:]]
        else:
            value, node = value[_find(value, node, element)], node.item  # type: ignore[index]
    return value


def _leaves(paths: FieldSet) -> FieldSet:
    parents = {p[:i] for p in paths for i in range(1, len(p))}
    return {p for p in paths if p not in parents}


def compare(res: Resource, old: dict[str, Any] | None, new: dict[str, Any], subresource: str | None = None
            ) -> tuple[FieldSet, FieldSet, FieldSet]:
    """(added, removed, modified): the paths only in new, only in old, and the leaves whose value changed."""
    before, after = field_set(res, old, subresource), field_set(res, new, subresource)
    modified = {p for p in _leaves(before & after) if _get(res, old, p) != _get(res, new, p)}
    return after - before, before - after, modified


def path_text(path: Path) -> str:
    """.spec.template.spec.containers[name="app"].image, as conflict messages write a path."""
    text = ""
    for element in path:
        if element.startswith("f:"):
            text += "." + element[2:]
        elif element.startswith("k:"):
            keys = json.loads(element[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        else:
            text += f"[={element[2:]}]"
    return text


# -- the managedFields entries -----------------------------------------------------------------------------


def _encode(paths: FieldSet) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    for path in paths:  # a member with children says so with "."
        node = tree
        for element in path:
            node = node[element]
        if node and "." not in node:
            node["."] = {}
    return tree


def _decode(tree: dict[str, Any], prefix: Path = ()) -> FieldSet:
    out: FieldSet = set()
    for element, sub in tree.items():
        if element == ".":
            out.add(prefix)
            continue
        path = (*prefix, element)
        if not sub:
            out.add(path)
        else:
            out |= _decode(sub, path)
    return out


@dataclass
class Entry:
    manager: str
    operation: str  # Apply | Update
    subresource: str | None
    api_version: str
    time: str
    fields: FieldSet = field(default_factory=set)

    @property
    def id(self) -> tuple[str, str, str | None]:
        return self.manager, self.operation, self.subresource

    def as_json(self) -> dict[str, Any]:
        entry = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version,
                 "time": self.time, "fieldsType": "FieldsV1", "fieldsV1": _encode(self.fields)}
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def entries(obj: dict[str, Any] | None) -> list[Entry]:
    return [Entry(e["manager"], e["operation"], e.get("subresource"), e.get("apiVersion", ""), e.get("time", ""),
                  _decode(e.get("fieldsV1") or {}))
            for e in ((obj or {}).get("metadata") or {}).get("managedFields") or []]


def _store(obj: dict[str, Any], managers: Iterable[Entry]) -> None:
    kept = [e.as_json() for e in managers if e.fields]
    obj["metadata"]["managedFields"] = kept
    if not kept:
        del obj["metadata"]["managedFields"]


def _entry(managers: list[Entry], res: Resource, manager: str, operation: str, subresource: str | None) -> Entry:
    found = next((e for e in managers if e.id == (manager, operation, subresource)), None)
    if found is None:
        found = Entry(manager, operation, subresource, res.api_version, now())
        managers.append(found)
    return found


def track_update(res: Resource, old: dict[str, Any] | None, new: dict[str, Any], manager: str,
                 subresource: str | None = None) -> None:
    """An update by `manager`: it now owns what it added or changed; the others lose that. In place on `new`."""
    managers = entries(old)
    added, removed, modified = compare(res, old, new, subresource)
    changed = added | modified
    for entry in managers:
        entry.fields -= changed | removed
    if changed:
        mine = _entry(managers, res, manager, "Update", subresource)
        mine.fields |= changed
        mine.time = now()
    _store(new, managers)


# -- server-side apply ---------------------------------------------------------------------------------------


def merge(node: schema.Node, live: Any, config: Any) -> Any:
    """The applied configuration merged into the live value, by the schema."""
    if isinstance(live, dict) and isinstance(config, dict) and _granular(node, config) and _granular(node, live):
        out = dict(live)
        for key, value in config.items():
            child = node.child(key) or schema.Node.of({})
            out[key] = merge(child, live[key], value) if key in live else copy.deepcopy(value)
        return out
    if isinstance(live, list) and isinstance(config, list) and node.shape == "list" and node.list_type != "atomic":
        out_list = copy.deepcopy(live)
        for item in config:
            at = _find(out_list, node, _item_key(node, item))
            if at is None:
                out_list.append(copy.deepcopy(item))
            elif node.list_type == "map":
                out_list[at] = merge(node.item, out_list[at], item)
        return out_list
    return copy.deepcopy(config)


def _remove(res: Resource, obj: dict[str, Any], path: Path) -> None:
    """Remove one path from the object, and the maps and lists it leaves empty."""
    chain: list[tuple[Any, Any]] = []  # (container, key or index) from the top
    node, value = schema.node(res), obj
    for element in path:
        if not isinstance(value, (dict, list)):
            return
        if element.startswith("f:"):
            key: Any = element[2:]
            if not isinstance(value, dict) or key not in value:
                return
            chain.append((value, key))
            node, value = node.child(key) or schema.Node.of({}), value[key]
        else:
            at = _find(value, node, element) if isinstance(value, list) else None
            if at is None:
                return
            chain.append((value, at))
            node, value = node.item, value[at]
    for container, key in reversed(chain):
        del container[key]
        if container or container is obj:
            break


def _conflict(res: Resource, name: str, conflicts: dict[str, FieldSet]) -> ApiError:
    count = sum(len(paths) for paths in conflicts.values())
    causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{manager}"', "field": path_text(p)}
              for manager, paths in conflicts.items() for p in sorted(paths)]
    parts = []
    for manager, paths in conflicts.items():
        listed = sorted(path_text(p) for p in paths)
        parts.append(f'conflict with "{manager}" using {res.api_version}: {listed[0]}' if len(listed) == 1 else
                     f'conflicts with "{manager}" using {res.api_version}:\n' + "\n".join(f"- {p}" for p in listed))
    return ApiError(409, "Conflict", f"Apply failed with {count} conflict{'s' if count > 1 else ''}: "
                    + "\n".join(parts), {"name": name, "group": res.group, "kind": res.plural, "causes": causes})


def apply(res: Resource, live: dict[str, Any] | None, config: dict[str, Any], manager: str, force: bool,
          subresource: str | None = None) -> dict[str, Any]:
    """The object after `manager` applied `config` over `live` (None: it is created), managedFields included.

    409 Conflict when the apply would change a field another manager owns, unless `force`.
    """
    managers = entries(live)
    base: dict[str, Any] = copy.deepcopy(live) if live is not None else {"metadata": {}}
    applied = field_set(res, config, subresource)
    mine = _entry(managers, res, manager, "Apply", subresource)
    last, mine.fields = mine.fields, applied
    others: FieldSet = set().union(*(e.fields for e in managers if e is not mine))

    scope = [k for k in config if k not in ("apiVersion", "kind")
             and (k == "status") == (subresource == "status")]
    new = dict(base)
    root = schema.node(res)
    for key in scope:
        child = root.child(key) or schema.Node.of({})
        value = config[key]
        if key == "metadata":
            value = {k: v for k, v in value.items() if k not in SERVER_METADATA}
        new[key] = merge(child, base[key], value) if key in base else copy.deepcopy(value)
    for path in sorted(last - applied - others, key=len):  # an item before its fields
        _remove(res, new, path)

    added, removed, modified = compare(res, live, new, subresource)
    conflicts = {e.manager: e.fields & (added | modified) for e in managers if e is not mine}
    conflicts = {m: paths for m, paths in conflicts.items() if paths}
    if conflicts and not force:
        raise _conflict(res, str(config.get("metadata", {}).get("name") or ""), conflicts)
    for entry in managers:
        if entry is not mine:
            entry.fields -= added | modified
        entry.fields -= removed
    if live is None or mine.fields != last or added or removed or modified:
        mine.time = now()
    new.setdefault("metadata", {})
    _store(new, managers)
    return new
