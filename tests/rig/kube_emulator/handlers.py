"""The HTTP API handler: decodes a request, logs it, applies faults, routes it to discovery or the
store, and answers JSON (a watch streams chunked events)."""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

import yaml

from . import schema
from .discovery import CORE_VERSIONS, VERSION, api_group, group_list, resource_list
from .patching import json_patch, merge_patch, strategic_merge
from .pod_logs import serve_log, serve_metrics
from .request_log import Request, RequestInfo, conflict, forbidden, request_info, summarize
from .resources import RESOURCES, ApiError, Resource
from .selectors import field_selector, label_selector
from .store import Write

HEALTH_CHECKS = (["healthz"], ["readyz"], ["livez"])
APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"

if TYPE_CHECKING:
    from .server import Server


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall
    server: Server

    # -- plumbing
    def log_message(self, fmt: str, *args: Any) -> None:
        self.server.emulator._log(f"{self.address_string()} {fmt % args}")

    def _send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self._status = code
        self._record()  # before the answer goes out: a client that read it finds it in the log
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for warning in self._write.warnings if code < 300 else ():
            self.send_header("Warning", "299 - " + json.dumps(warning))
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
        self._write = Write()
        try:
            self._write = self._write_of(query)
            if emulator.token and parts not in HEALTH_CHECKS and (
                    self.headers.get("Authorization") != f"Bearer {emulator.token}"):
                raise ApiError(401, "Unauthorized", "Unauthorized")
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

    def _write_of(self, query: dict) -> Write:
        """The field manager (fieldManager, else the User-Agent up to its first "/", as the API server
        does), fieldValidation and force of a write."""
        agent = (self.headers.get("User-Agent") or "unknown").split("/", 1)[0]
        validation = query.get("fieldValidation") or "Warn"
        if validation not in ("Ignore", "Warn", "Strict"):
            raise ApiError(400, "BadRequest", f"fieldValidation must be one of Ignore, Warn, Strict, got {validation}")
        return Write(query.get("fieldManager") or agent, validation, query.get("force") in ("true", "1"))

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
        if parts in HEALTH_CHECKS:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return None
        if parts == ["version"]:
            return 200, VERSION
        if not parts or parts[0] not in ("api", "apis"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if parts[:3] == ["apis", "metrics.k8s.io", "v1beta1"]:
            return serve_metrics(self, parts[3:], query)
        if parts[0] == "api":
            group, rest = "", parts[1:]
            if not rest:
                return 200, CORE_VERSIONS
        else:
            if len(parts) == 1:
                return 200, group_list()
            group, rest = parts[1], parts[2:]
            if not rest:
                return 200, api_group(group)
        version, rest = rest[0], rest[1:]
        known = [r for r in RESOURCES if r.group == group and r.version == version]
        if not known:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return 200, resource_list(group, version, known)

        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3 and any(r.plural == rest[2] and r.namespaced for r in known):
            ns, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)
        res = next((r for r in known if r.plural == plural), None)
        if (
            res is None
            or len(rest) > 3
            or (ns is not None and not res.namespaced)
            or (sub and sub not in res.subresources)
            or (res.namespaced and name is not None and ns is None)
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if name is None:
            return self._collection(method, res, ns, query)
        return self._object(method, res, ns, name, sub, query)

    def _collection(self, method: str, res: Resource, ns: str | None, query: dict) -> tuple[int, Any] | None:
        """list, watch, create, deletecollection."""
        store = self.server.emulator.store
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
            return 201, store.create(res, ns, self._body(), self._write)
        if method == "DELETE":
            items, _ = store.list(res, ns, query.get("labelSelector"), query.get("fieldSelector"))
            for item in items:
                store.delete(res, item["metadata"].get("namespace"), item["metadata"]["name"])
            return 200, {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": {}, "items": items}
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _object(self, method: str, res: Resource, ns: str | None, name: str, sub: str | None,
                query: dict) -> tuple[int, Any] | None:
        """get, replace, patch, delete; of the object or its subresource (scale, status)."""
        store = self.server.emulator.store
        if method == "GET" and sub == "log":
            serve_log(self, ns or "", name, query)
            return None
        if method == "GET":
            obj = store.get(res, ns, name)
            return 200, store.scale_of(obj) if sub == "scale" else obj
        if method == "PUT":
            body = self._body()
            if sub == "scale":
                return 200, store.set_scale(res, ns, name, body, self._write)
            return 200, store.update(res, ns, name, body, sub, self._write)
        if method == "PATCH":
            return self._patch(res, ns, name, sub, query)
        if method == "DELETE" and sub is None:
            obj = store.delete(res, ns, name)
            if res.kind == "Namespace":
                return 200, obj  # Terminating, as the API server answers
            return 200, {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": res.group, "kind": res.plural, "uid": obj["metadata"]["uid"]},
            }
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _patch(self, res: Resource, ns: str | None, name: str, sub: str | None, query: dict) -> tuple[int, Any]:
        store = self.server.emulator.store
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        patchers: dict[str, Callable[[Any, Any], Any]] = {
            JSON_PATCH: json_patch,
            MERGE_PATCH: merge_patch,
            APPLY: merge_patch,  # only for /scale; an apply is the store's (server-side apply)
        }
        if not schema.is_custom(res):  # a custom resource has no strategic merge: its CRD has no patch strategies
            patchers[STRATEGIC_PATCH] = functools.partial(strategic_merge, node=schema.node(res))
        if ctype not in patchers:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(sorted(patchers)),
            )
        patch = self._body()
        if ctype == JSON_PATCH and not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "json patch must be a list of operations")
        if ctype != JSON_PATCH and not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "the patch must be an object")
        if ctype == APPLY:
            if not query.get("fieldManager"):
                raise ApiError(400, "BadRequest", "fieldManager is required for apply requests")
            if sub is None and (patch.get("apiVersion") != res.api_version or patch.get("kind") != res.kind):
                raise ApiError(
                    400,
                    "BadRequest",
                    f"apply patch must set apiVersion: {res.api_version} and kind: {res.kind}",
                )
            if sub != "scale":
                return store.apply(res, ns, name, patch, sub, self._write)
        elif query.get("force"):
            raise ApiError(400, "BadRequest", "force is only allowed for apply requests")
        with store.cond:  # read-modify-write atomically
            current = store.get(res, ns, name)
            if sub == "scale":
                scale = patchers[ctype](store.scale_of(current), patch)
                return 200, store.set_scale(res, ns, name, scale, self._write)
            patched = patchers[ctype](current, patch)
            if not isinstance(patched, dict):
                raise ApiError(422, "Invalid", "the patched object is not an object")
            # A resourceVersion in the patch is a precondition; otherwise none.
            want_rv = ((patch if isinstance(patch, dict) else {}).get("metadata") or {}).get("resourceVersion")
            patched.setdefault("metadata", {})["resourceVersion"] = want_rv or current["metadata"]["resourceVersion"]
            return 200, store.update(res, ns, name, patched, sub, self._write)

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
