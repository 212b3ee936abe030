"""The emulator: its store served over HTTP from a daemon thread, the request log and the faults."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Self

from .handlers import Handler
from .request_log import DEFAULT_USER, Fault, Request
from .resources import now
from .store import Store


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: KubeEmulator


class KubeEmulator:
    """The emulator's HTTP server; ``start()`` serves it from a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | Path | None = None,
        auto_rollout: bool = True,
    ):
        self.store = Store(auto_rollout=auto_rollout)
        self._server = Server((host, port), Handler)
        self._server.emulator = self
        self._thread: threading.Thread | None = None
        self._log_file = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 - closed in stop()
        self._log_lock = threading.Lock()
        self._requests: list[Request] = []
        self._faults: list[Fault] = []

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def auto_rollout(self) -> bool:
        return self.store.auto_rollout

    @auto_rollout.setter
    def auto_rollout(self, value: bool) -> None:
        self.store.auto_rollout = value

    def _log(self, line: str) -> None:
        if self._log_file:
            with self._log_lock:
                self._log_file.write(f"{now()} {line}\n")

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, name="kube-emulator", daemon=True)
        self._thread.start()
        self._log(f"serving on {self.url}")
        return self

    def stop(self) -> None:
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
        """Forget every object (but the default namespaces), the request log and the faults."""
        self.store.reset()
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
