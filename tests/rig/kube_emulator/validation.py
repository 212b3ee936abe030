"""What the API server refuses, and how it says so.

Three stages, in the API server's order:

* ``decode``: unknown fields are dropped, with a warning (``fieldValidation=Warn``, the default), or
  refused (``Strict``: 400); a value of the wrong JSON type in a built-in kind cannot be decoded into
  its Go struct: 400 BadRequest (in a custom resource the schema check says it: 422).
* then the caller defaults the object (defaults.py);
* ``validate``: the OpenAPI schema of the kind (required fields; a CRD's enums, patterns and bounds)
  and, by hand, the rules the API server's Go validation adds: names (DNS-1123 subdomain, DNS-1123
  label for namespaces, DNS-1035 label for services), label and annotation keys, a Deployment's
  selector (required, matching the template's labels, immutable), pod templates (containers, images,
  ports, env names, restartPolicy), a Service's ports, an Ingress's paths and backends, and the two
  HTTPRoute CEL rules named in tests/fixtures/gateway-api/. Every finding is a cause of one 422 Invalid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema

from . import schema
from .resources import ApiError, Resource

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
ENV_VAR_NAME = r"[-._a-zA-Z][-._a-zA-Z0-9]*"
IANA_SVC_NAME = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
NAME_RULES = {
    "subdomain": (DNS1123_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                  "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
                  "'example.com', regex used for validation is '{regex}')"),
    "label": (DNS1123_LABEL, 63, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
              "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
              "regex used for validation is '{regex}')"),
    "dns1035": (DNS1035_LABEL, 63, "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
                "'abc-123', regex used for validation is '{regex}')"),
}
NAME_KIND = {"Namespace": "label", "Service": "dns1035"}  # every other kind: a DNS-1123 subdomain
PROTOCOLS = ("TCP", "UDP", "SCTP")
GO_TYPES = {"string": "string", "integer": "int32", "boolean": "bool", "object": "struct", "array": "slice",
            "number": "float64"}


# -- how errors are written -------------------------------------------------------------------------


def go_value(value: Any) -> str:
    """A value as Go's %#v would print it in a field error (near enough)."""
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in value.items())
        return f"map[string]string{{{inner}}}" if all(isinstance(v, str) for v in value.values()) else json.dumps(
            value)
    return json.dumps(value)


@dataclass(frozen=True)
class Cause:
    """One field error: `spec.selector: Required value`."""

    field: str
    reason: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueDuplicate, ...
    text: str

    @property
    def message(self) -> str:
        return f"{self.field}: {self.text}"

    def as_status(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


def required(field: str, detail: str = "") -> Cause:
    return Cause(field, "FieldValueRequired", "Required value" + (f": {detail}" if detail else ""))


def invalid(field: str, value: Any, detail: str) -> Cause:
    return Cause(field, "FieldValueInvalid", f"Invalid value: {go_value(value)}: {detail}")


def not_supported(field: str, value: Any, supported: tuple[str, ...]) -> Cause:
    listed = ", ".join(json.dumps(s) for s in supported)
    return Cause(field, "FieldValueNotSupported", f"Unsupported value: {go_value(value)}: supported values: {listed}")


def duplicate(field: str, value: Any) -> Cause:
    return Cause(field, "FieldValueDuplicate", f"Duplicate value: {go_value(value)}")


def forbidden(field: str, detail: str) -> Cause:
    return Cause(field, "FieldValueForbidden", f"Forbidden: {detail}")


def invalid_object(res: Resource, name: str, causes: list[Cause]) -> ApiError:
    """422 Invalid, as the API server words it: `Deployment.apps "web" is invalid: spec.selector: Required value`."""
    qualified = f"{res.kind}.{res.group}" if res.group else res.kind
    said = causes[0].message if len(causes) == 1 else "[" + ", ".join(c.message for c in causes) + "]"
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {said}',
                    {"name": name, "group": res.group, "kind": res.kind,
                     "causes": [c.as_status() for c in causes]})


def path_text(path: Any) -> str:
    """A JSON path as the API server writes it: spec.template.spec.containers[0].image."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# -- decoding: unknown fields and JSON types ------------------------------------------------------------


def _prune(node: schema.Node, value: Any, path: tuple[Any, ...], unknown: list[str]) -> None:
    if isinstance(value, dict) and node.shape in ("struct", "map"):
        for key in list(value):
            child = node.child(key)
            if child is None:
                unknown.append(path_text((*path, key)))
                del value[key]
            else:
                _prune(child, value[key], (*path, key), unknown)
    elif isinstance(value, list) and node.shape == "list":
        for i, item in enumerate(value):
            _prune(node.item, item, (*path, i), unknown)


def decode(res: Resource, obj: dict[str, Any], field_validation: str = "Warn") -> list[str]:
    """Drop the fields the kind's schema does not have (in place) and check JSON types; the warnings to send.

    Strict: unknown fields are refused (400). A built-in kind with a value of the wrong type: 400,
    as the API server fails to decode it; a custom resource's type errors are 422s of `validate`.
    """
    unknown: list[str] = []
    _prune(schema.node(res), obj, (), unknown)
    if unknown and field_validation == "Strict":
        listed = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise ApiError(400, "BadRequest", f"strict decoding error: {listed}")
    if not schema.is_custom(res):
        for err in _schema_errors(res, obj):
            if err.validator in ("type", "oneOf"):
                got = {dict: "object", list: "array", str: "string", bool: "bool"}.get(type(err.instance), "number")
                want = _types(err.schema)
                raise ApiError(
                    400, "BadRequest",
                    f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: json: cannot '
                    f"unmarshal {got} into Go struct field {res.kind}.{path_text(err.absolute_path)} of type {want}")
    return [] if field_validation == "Ignore" else [f'unknown field "{u}"' for u in unknown]


def _types(s: dict[str, Any]) -> str:
    if "oneOf" in s:
        return "intstr.IntOrString"
    kind = s.get("type")
    names = [k for k in (kind if isinstance(kind, list) else [kind]) if k and k != "null"]
    return GO_TYPES.get(names[0], names[0]) if names else "value"


def _schema_errors(res: Resource, obj: dict[str, Any]) -> Iterator[jsonschema.ValidationError]:
    return schema.validator(res).iter_errors(obj)  # type: ignore[no-any-return]


def _schema_cause(err: jsonschema.ValidationError) -> Cause:
    field = path_text(err.absolute_path)
    s, value, kind = err.schema, err.instance, err.validator
    if kind == "required":
        missing = re.match(r"'([^']+)' is a required property", err.message)
        return required(path_text([*err.absolute_path, missing.group(1) if missing else "?"]))
    if kind == "enum":
        return not_supported(field, value, tuple(str(v) for v in s["enum"]))
    if kind in ("type", "oneOf"):
        return invalid(field, value, f"{field} in body must be of type {_types(s)}: {go_value(value)}")
    if kind == "pattern":
        return invalid(field, value, f"{field} in body should match '{s['pattern']}'")
    if kind == "maxLength":
        return Cause(field, "FieldValueTooLong", f"Too long: may not be longer than {s['maxLength']}")
    if kind == "maxItems":
        return Cause(field, "FieldValueTooMany", f"Too many: {len(value)}: must have at most {s['maxItems']} items")
    if kind == "minLength":
        return invalid(field, value, f"{field} in body should be at least {s['minLength']} chars long")
    if kind == "maximum":
        return invalid(field, value, f"{field} in body should be less than or equal to {s['maximum']}")
    if kind == "minimum":
        return invalid(field, value, f"{field} in body should be greater than or equal to {s['minimum']}")
    return invalid(field, value, err.message)


# -- the rules of the API server's Go validation ------------------------------------------------------------


def _name(value: Any, rule: str, field: str) -> list[Cause]:
    regex, limit, detail = NAME_RULES[rule]
    if not isinstance(value, str):
        return []
    if len(value) > limit:
        return [invalid(field, value, f"must be no more than {limit} characters")]
    if not re.fullmatch(regex, value):
        return [invalid(field, value, detail.format(regex=regex))]
    return []


def _qualified_key(key: str, field: str) -> list[Cause]:
    prefix, _, name = key.rpartition("/")
    bad = len(name) > 63 or not re.fullmatch(QUALIFIED_NAME, name) or (
        "/" in key and (not prefix or len(prefix) > 253 or not re.fullmatch(DNS1123_SUBDOMAIN, prefix)))
    if bad:
        return [invalid(field, key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                        "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
                        f"regex used for validation is '{QUALIFIED_NAME}') with an optional DNS subdomain prefix and "
                        "'/' (e.g. 'example.com/MyName')")]
    return []


def _labels(labels: Any, field: str) -> list[Cause]:
    causes: list[Cause] = []
    for key, value in (labels or {}).items() if isinstance(labels, dict) else ():
        causes += _qualified_key(key, field)
        if isinstance(value, str) and value and (len(value) > 63 or not re.fullmatch(QUALIFIED_NAME, value)):
            causes.append(invalid(f"{field}", value, "a valid label must be an empty string or consist of "
                                  "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                                  f"alphanumeric character (regex used for validation is '{QUALIFIED_NAME}')"))
    return causes


def _metadata(res: Resource, meta: dict[str, Any]) -> list[Cause]:
    causes = _name(meta.get("name"), NAME_KIND.get(res.kind, "subdomain"), "metadata.name")
    causes += _labels(meta.get("labels"), "metadata.labels")
    for key in meta.get("annotations") or {}:
        causes += _qualified_key(key, "metadata.annotations")
    return causes


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Does a LabelSelector (matchLabels, matchExpressions) select these labels?"""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) or (
                op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def _port_number(value: Any, field: str) -> list[Cause]:
    if isinstance(value, int) and not 1 <= value <= 65535:
        return [invalid(field, value, "must be between 1 and 65535, inclusive")]
    if isinstance(value, str) and not (len(value) <= 15 and re.fullmatch(IANA_SVC_NAME, value)
                                       and re.search("[a-z]", value) and "--" not in value):
        return [invalid(field, value, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")]
    return []


def _container(c: dict[str, Any], field: str) -> list[Cause]:
    causes = _name(c.get("name"), "label", f"{field}.name")
    if not c.get("image"):
        causes.append(required(f"{field}.image"))
    port_names: set[str] = set()
    for i, port in enumerate(c.get("ports") or []):
        pf = f"{field}.ports[{i}]"
        causes += _port_number(port.get("containerPort"), f"{pf}.containerPort")
        if port.get("containerPort") is None:
            causes.append(required(f"{pf}.containerPort"))
        if port.get("name"):
            causes += _port_number(port["name"], f"{pf}.name")
            if port["name"] in port_names:
                causes.append(duplicate(f"{pf}.name", port["name"]))
            port_names.add(port["name"])
        if port.get("protocol") not in PROTOCOLS:
            causes.append(not_supported(f"{pf}.protocol", port.get("protocol"), PROTOCOLS))
    for i, env in enumerate(c.get("env") or []):
        ef = f"{field}.env[{i}]"
        if not re.fullmatch(ENV_VAR_NAME, str(env.get("name") or "")):
            causes.append(invalid(f"{ef}.name", env.get("name"), "a valid environment variable name must consist "
                                  "of alphabetic characters, digits, '_', '-', or '.', and must not start with a "
                                  f"digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for "
                                  f"validation is '{ENV_VAR_NAME}')"))
        if env.get("value") and env.get("valueFrom"):
            causes.append(invalid(f"{ef}.valueFrom", "", "may not be specified when `value` is not empty"))
    for probe_key in ("readinessProbe", "livenessProbe", "startupProbe"):
        http = (c.get(probe_key) or {}).get("httpGet")
        if isinstance(http, dict):
            causes += _port_number(http.get("port"), f"{field}.{probe_key}.httpGet.port")
    return causes


def _pod_spec(spec: Any, field: str, restart_policies: tuple[str, ...]) -> list[Cause]:
    if not isinstance(spec, dict):
        return [required(field)]
    containers = spec.get("containers") or []
    causes = [] if containers else [required(f"{field}.containers")]
    names: set[str] = set()
    for i, c in enumerate(containers):
        causes += _container(c, f"{field}.containers[{i}]")
        if c.get("name") in names:
            causes.append(duplicate(f"{field}.containers[{i}].name", c.get("name")))
        names.add(c.get("name"))
    if spec.get("restartPolicy") not in restart_policies:
        causes.append(not_supported(f"{field}.restartPolicy", spec.get("restartPolicy"), restart_policies))
    return causes


def _int_or_percent(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return int(value[:-1] or 0) * total // 100
    return int(value or 0)


def _deployment(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
        causes.append(invalid("spec.replicas", spec["replicas"], "must be greater than or equal to 0"))
    selector, template = spec.get("selector"), spec.get("template")
    if not selector:
        causes.append(required("spec.selector"))
    elif not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(invalid("spec.selector", selector, "empty selector is invalid for deployment"))
    else:
        causes += _labels(selector.get("matchLabels"), "spec.selector.matchLabels")
    if not template:
        causes.append(required("spec.template"))
    else:
        labels = (template.get("metadata") or {}).get("labels") or {}
        causes += _labels(labels, "spec.template.metadata.labels")
        if selector and not selector_matches(selector, labels):
            causes.append(invalid("spec.template.metadata.labels", labels,
                                  "`selector` does not match template `labels`"))
        causes += _pod_spec(template.get("spec"), "spec.template.spec", ("Always",))
    strategy = spec.get("strategy") or {}
    if strategy.get("type") not in ("RollingUpdate", "Recreate"):
        causes.append(not_supported("spec.strategy.type", strategy.get("type"), ("Recreate", "RollingUpdate")))
    elif strategy["type"] == "Recreate" and strategy.get("rollingUpdate"):
        causes.append(forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is "
                                "'Recreate'"))
    elif strategy["type"] == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        surge, unavailable = rolling.get("maxSurge"), rolling.get("maxUnavailable")
        if _int_or_percent(surge, 100) == 0 and _int_or_percent(unavailable, 100) == 0:
            causes.append(invalid("spec.strategy.rollingUpdate.maxUnavailable", unavailable,
                                  "may not be 0 when `maxSurge` is 0"))
        if isinstance(unavailable, str) and _int_or_percent(unavailable, 100) > 100:
            causes.append(invalid("spec.strategy.rollingUpdate.maxUnavailable", unavailable,
                                  "must not be greater than 100%"))
    for key in ("revisionHistoryLimit", "minReadySeconds"):
        if isinstance(spec.get(key), int) and spec[key] < 0:
            causes.append(invalid(f"spec.{key}", spec[key], "must be greater than or equal to 0"))
    deadline = spec.get("progressDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= int(spec.get("minReadySeconds") or 0):
        causes.append(invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        causes.append(invalid("spec.selector", selector, "field is immutable"))
    return causes


def _service(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    kind = spec.get("type")
    types = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
    causes = [] if kind in types else [not_supported("spec.type", kind, types)]
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(required("spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        pf = f"spec.ports[{i}]"
        if len(ports) > 1 and not port.get("name"):
            causes.append(required(f"{pf}.name"))
        if port.get("name"):
            causes += _name(port["name"], "label", f"{pf}.name")
            if port["name"] in names:
                causes.append(duplicate(f"{pf}.name", port["name"]))
            names.add(port["name"])
        causes += _port_number(port.get("port"), f"{pf}.port")
        if port.get("protocol") not in PROTOCOLS:
            causes.append(not_supported(f"{pf}.protocol", port.get("protocol"), PROTOCOLS))
        causes += _port_number(port.get("targetPort"), f"{pf}.targetPort")
    causes += _labels(spec.get("selector"), "spec.selector")
    old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
    if old_ip and spec.get("clusterIP") != old_ip:
        causes.append(invalid("spec.clusterIPs[0]", spec.get("clusterIPs"), "may not change once set"))
    return causes


def _ingress(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    for i, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
        rf = f"spec.rules[{i}]"
        host = rule.get("host")
        if host:
            if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+:[0-9a-fA-F:]*", host):
                causes.append(invalid(f"{rf}.host", host, "must be a DNS name, not an IP address"))
            else:
                causes += _name(host.removeprefix("*."), "subdomain", f"{rf}.host")
        for j, path in enumerate(((rule.get("http") or {}).get("paths")) or []):
            pf = f"{rf}.http.paths[{j}]"
            kind = path.get("pathType")
            if not kind:
                causes.append(required(f"{pf}.pathType", "pathType must be specified"))
            elif kind not in ("Exact", "Prefix", "ImplementationSpecific"):
                causes.append(not_supported(f"{pf}.pathType", kind, ("Exact", "ImplementationSpecific", "Prefix")))
            elif kind in ("Exact", "Prefix") and not str(path.get("path") or "").startswith("/"):
                causes.append(invalid(f"{pf}.path", path.get("path"), "must be an absolute path"))
            service = (path.get("backend") or {}).get("service")
            if not service:
                causes.append(required(f"{pf}.backend", "service or resource must be specified"))
                continue
            causes += _name(service.get("name"), "dns1035", f"{pf}.backend.service.name")
            port = service.get("port") or {}
            if port.get("name") and port.get("number"):
                causes.append(invalid(f"{pf}.backend.service.port", port, "cannot set both port name & port number"))
            elif not port.get("name") and not port.get("number"):
                causes.append(invalid(f"{pf}.backend.service.port", port, "port name or number is required"))
    return causes


def _httproute(obj: dict[str, Any]) -> list[Cause]:
    """The CEL rules of the CRD that this subset keeps (see tests/fixtures/gateway-api/)."""
    causes: list[Cause] = []
    for i, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
        for j, ref in enumerate(rule.get("backendRefs") or []):
            if ref.get("group") == "" and ref.get("kind") == "Service" and "port" not in ref:
                causes.append(invalid(f"spec.rules[{i}].backendRefs[{j}]", "object",
                                      "Must have port for Service reference"))
        for j, match in enumerate(rule.get("matches") or []):
            path = match.get("path") or {}
            if path.get("type") in ("Exact", "PathPrefix") and not str(path.get("value", "/")).startswith("/"):
                causes.append(invalid(f"spec.rules[{i}].matches[{j}].path", "object", "value must be an absolute "
                                      "path and start with '/' when type one of ['Exact', 'PathPrefix']"))
    return causes


def validate(res: Resource, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    """422 Invalid, naming every cause, unless the (decoded, defaulted) object is valid; `old` on an update."""
    causes = [_schema_cause(err) for err in _schema_errors(res, obj)]
    causes += _metadata(res, obj.get("metadata") or {})
    if res.kind == "Deployment":
        causes += _deployment(obj, old)
    elif res.kind == "Pod":
        causes += _pod_spec(obj.get("spec"), "spec", ("Always", "OnFailure", "Never"))
    elif res.kind == "Service":
        causes += _service(obj, old)
    elif res.kind == "Ingress":
        causes += _ingress(obj)
    elif res.kind == "HTTPRoute":
        causes += _httproute(obj)
    if causes:
        raise invalid_object(res, str((obj.get("metadata") or {}).get("name") or ""), list(dict.fromkeys(causes)))
