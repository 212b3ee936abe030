"""Requests through the rig's nginx: which version answered, its share, a client that keeps
sending while a deploy, a canary or a rollback runs (it must see no failure), and the load that
makes a canary's metrics."""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from typing import Protocol

from rig.helpers import Background


class Served(Protocol):
    @property
    def port(self) -> int: ...


def get_version(nginx: Served) -> str:
    """GET /api/health through nginx on a new connection: the VERSION of the container that answered."""
    connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=5)
    try:
        connection.request("GET", "/api/health")
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}")
        return str(json.loads(body)["version"])
    finally:
        connection.close()


def shares(nginx: Served, count: int = 1000) -> Counter[str]:
    return Counter(get_version(nginx) for _ in range(count))


class Traffic(Background):
    """Requests through nginx, one after another, on a thread, for as long as the block lasts."""

    def __init__(self, nginx: Served) -> None:
        super().__init__()
        self.nginx = nginx
        self.sent = 0
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sent += 1
            try:
                self.versions[get_version(self.nginx)] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                self.failures.append(f"{type(exc).__name__}: {exc}")

    def check(self) -> None:
        assert self.sent > 50, f"only {self.sent} requests went out"
        assert not self.failures, f"{len(self.failures)} of {self.sent} requests failed: {self.failures[:5]}"


class Load(Background):
    """Real requests to the app's "/" through nginx (or what stands in for it), all along: they make the
    metrics. Failures are not counted: `sent` is the requests answered."""

    def __init__(self, nginx: Served) -> None:
        super().__init__()
        self.nginx, self.sent = nginx, 0

    def _run(self) -> None:
        while not self._stop.is_set():
            connection = http.client.HTTPConnection("127.0.0.1", self.nginx.port, timeout=5)
            try:
                connection.request("GET", "/")
                connection.getresponse().read()
                self.sent += 1
            except OSError:
                time.sleep(0.05)
            finally:
                connection.close()

