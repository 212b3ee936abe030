"""The emulator: its store served over HTTP from a daemon thread, the request log and the faults."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Self

from .controller import Controllers
from .handlers import Handler
from .pod_logs import PodLogs
from .request_log import DEFAULT_USER, Fault, Request
from .resources import now
from .store import Store


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: KubeEmulator


class KubeEmulator:
    """The emulator's HTTP server; ``start()`` serves it and runs its controllers from daemon threads.

    ``token``: every request must carry ``Authorization: Bearer <token>`` (else 401), but the health
    checks. ``tick_s``, ``pod_ready_s``: the controllers' clock and how long a new pod takes to become
    ready; ``namespace_grace_s``: how long a deleted namespace stays Terminating.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | Path | None = None,
        auto_rollout: bool = True,
        token: str | None = None,
        tick_s: float = 0.01,
        pod_ready_s: float = 0.02,
        namespace_grace_s: float = 0.3,
    ):
        self.token = token
        self.store = Store(auto_rollout=auto_rollout, namespace_grace_s=namespace_grace_s)
        self.controllers = Controllers(self.store, tick_s=tick_s, pod_ready_s=pod_ready_s)
        self._server = Server((host, port), Handler)
        self._server.emulator = self
        self._thread: threading.Thread | None = None
        self._log_file = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 - closed in stop()
        self._log_lock = threading.Lock()
        self._requests: list[Request] = []
        self._faults: list[Fault] = []
        self.pod_logs = PodLogs()  # planted pod log lines and pod metrics (pod_logs.py)

    def plant_log(self, namespace: str, pod: str, text: str, container: str = "app") -> None:
        """A line the pod's log endpoint answers (and a follow sends as it comes)."""
        self.pod_logs.plant(namespace, pod, text, container)

    def plant_metrics(self, namespace: str, pod: str, container: str, cpu: str, memory: str) -> None:
        """A container's usage as metrics.k8s.io reports it (cpu "250m", memory "64Mi")."""
        with self.pod_logs.cond:
            self.pod_logs.metrics.setdefault((namespace, pod), {})[container] = (cpu, memory)

    @property
    def metrics_server(self) -> bool:
        """Is metrics.k8s.io served? Off (the default): 404, as on a cluster without metrics-server."""
        return self.pod_logs.metrics_server

    @metrics_server.setter
    def metrics_server(self, value: bool) -> None:
        self.pod_logs.metrics_server = value

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def auto_rollout(self) -> bool:
        """Does the Deployment controller run? Off: status changes only through /status, as a test writes it."""
        return self.store.auto_rollout

    @auto_rollout.setter
    def auto_rollout(self, value: bool) -> None:
        self.store.auto_rollout = value

    def never_ready(self, image: str) -> None:
        """Pods of this image never become ready (until reset()): a rollout to it stalls, and its
        Deployment's Progressing condition turns ProgressDeadlineExceeded at its deadline."""
        with self.store.cond:
            self.controllers.never_ready.add(image)

    def _log(self, line: str) -> None:
        if self._log_file:
            with self._log_lock:
                self._log_file.write(f"{now()} {line}\n")

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="kube-emulator",
                                        daemon=True)
        self._thread.start()
        self.controllers.start()
        self._log(f"serving on {self.url}")
        return self

    def stop(self) -> None:
        self.controllers.stop()
        self.pod_logs.stop()  # a follow of a pod's log ends
        with self.store.cond:
            self.store.closed = True
            self.store.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def reset(self) -> None:
        """Forget every object (but the default namespaces), the request log, the faults and the never-ready images."""
        self.store.reset()
        with self.store.cond:
            self.controllers.never_ready.clear()
        self.reset_requests()
        self.clear_faults()

    # -- the request log
    def _record(self, request: Request) -> None:
        with self._log_lock:
            self._requests.append(request)

    def requests(self) -> list[Request]:
        """Every request since the last reset, oldest first."""
        with self._log_lock:
            return list(self._requests)

    def writes(self) -> list[Request]:
        """The requests that would change something (not get, list, watch or discovery)."""
        return [r for r in self.requests() if r.write]

    def reset_requests(self) -> None:
        with self._log_lock:
            self._requests.clear()

    # -- faults
    def deny(self, verb: str, resource: str, user: str = DEFAULT_USER) -> None:
        """Answer `verb` on `resource` with 403 Forbidden (RBAC's wording) until clear_faults()."""
        with self._log_lock:
            self._faults.append(Fault(verb, resource, 403, once=False, user=user))

    def conflict_once(self, verb: str, resource: str) -> None:
        """Answer the next `verb` on `resource` with 409 Conflict, as if another writer got there first."""
        with self._log_lock:
            self._faults.append(Fault(verb, resource, 409, once=True))

    def clear_faults(self) -> None:
        with self._log_lock:
            self._faults.clear()

    def _take_fault(self, verb: str, resource: str) -> Fault | None:
        if not resource:
            return None  # discovery, /version, /healthz are never refused
        with self._log_lock:
            fault = next((f for f in self._faults if f.matches(verb, resource)), None)
            if fault is not None and fault.once:
                self._faults.remove(fault)
            return fault

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
