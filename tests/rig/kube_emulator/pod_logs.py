"""Pod logs and the metrics API, as a test plants them.

``GET /api/v1/namespaces/NS/pods/NAME/log`` answers the lines planted for that pod (``plant_log``),
with ``container``, ``sinceSeconds``, ``timestamps`` and ``follow`` (chunked: planted lines keep coming
until the client goes, the pod is deleted or the emulator stops). ``/apis/metrics.k8s.io/v1beta1``
answers only while ``metrics_server`` is on (else 404, as a cluster without metrics-server), with the
figures planted by ``plant_metrics`` for the pods its label selector picks from the store.
"""

from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .resources import ApiError, lookup
from .selectors import label_selector

if TYPE_CHECKING:
    from .handlers import Handler

FOLLOW_LIMIT_S = 120.0


@dataclass
class PodLogs:
    lines: dict[tuple[str, str, str], list[tuple[float, str]]] = field(default_factory=dict)
    metrics: dict[tuple[str, str], dict[str, tuple[str, str]]] = field(default_factory=dict)
    metrics_server: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)
    stopped: bool = False

    def plant(self, namespace: str, pod: str, text: str, container: str = "app", when: float | None = None) -> None:
        with self.cond:
            self.lines.setdefault((namespace, pod, container), []).append((time.time() if when is None else when, text))
            self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()


def _stamp(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def serve_log(handler: Handler, namespace: str, name: str, query: dict[str, str]) -> None:
    emulator = handler.server.emulator
    pod = emulator.store.get(lookup("", "pods"), namespace, name)  # 404 for a pod that is not there
    containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    container = query.get("container") or (containers[0] if len(containers) == 1 else "")
    if container not in containers:
        raise ApiError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: "
                       f"{containers}" if not container else f"container {container} is not valid for pod {name}")
    since = time.time() - float(query["sinceSeconds"]) if query.get("sinceSeconds") else 0.0
    stamps = query.get("timestamps") in ("true", "1")
    logs: PodLogs = emulator.pod_logs
    key = (namespace, name, container)

    def text(entries: list[tuple[float, str]]) -> bytes:
        return "".join(f"{_stamp(w) + ' ' if stamps else ''}{t}\n" for w, t in entries if w >= since).encode()

    with logs.cond:
        sent = len(logs.lines.get(key, []))
        first = text(logs.lines.get(key, []))
    if query.get("follow") not in ("true", "1"):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(first)))
        handler.end_headers()
        handler.wfile.write(first)
        return
    handler.send_response(200)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    deadline = time.monotonic() + FOLLOW_LIMIT_S
    try:
        data = first
        while True:
            if data:
                handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                handler.wfile.flush()
            with logs.cond:
                while len(logs.lines.get(key, [])) == sent and not logs.stopped and time.monotonic() < deadline:
                    logs.cond.wait(0.2)
                    if not _exists(emulator, namespace, name):
                        break
                new = logs.lines.get(key, [])[sent:]
                sent += len(new)
                data = text(new)
            if not new and (logs.stopped or time.monotonic() >= deadline or not _exists(emulator, namespace, name)):
                break
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        pass
    handler.close_connection = True


def _exists(emulator: Any, namespace: str, name: str) -> bool:
    try:
        emulator.store.get(lookup("", "pods"), namespace, name)
    except ApiError:
        return False
    return True


def serve_metrics(handler: Handler, rest: list[str], query: dict[str, str]) -> tuple[int, Any]:
    """/apis/metrics.k8s.io/v1beta1[/namespaces/NS]/pods: PodMetricsList of the planted figures."""
    emulator = handler.server.emulator
    logs: PodLogs = emulator.pod_logs
    if not logs.metrics_server:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    namespace = rest[1] if len(rest) >= 3 and rest[0] == "namespaces" else None
    if not rest or rest[-1] != "pods":
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    pods, _ = emulator.store.list(lookup("", "pods"), namespace, query.get("labelSelector"), None)
    wanted = label_selector(query.get("labelSelector"))
    items = []
    for pod in pods:
        meta = pod["metadata"]
        planted = logs.metrics.get((meta.get("namespace", ""), meta["name"]))
        if planted is None or not wanted(meta.get("labels")):
            continue
        items.append({
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace"), "labels": meta.get("labels") or {}},
            "timestamp": _stamp(time.time()), "window": "15s",
            "containers": [{"name": c, "usage": {"cpu": cpu, "memory": mem}} for c, (cpu, mem) in planted.items()],
        })
    return 200, {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}
