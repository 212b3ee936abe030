"""What ingress-nginx (or a Gateway's implementation) does in a real cluster, for the API emulator: an HTTP
proxy that sends each request to the stable or the canary backend by the weights the API serves.

It reads only the API, every `interval` s on a thread (never per request): for ingress-nginx, the namespace's
Ingresses (the one with ``nginx.ingress.kubernetes.io/canary: "true"`` takes
``nginx.ingress.kubernetes.io/canary-weight`` percent, the other the rest); for gateway-api, the HTTPRoutes'
``backendRefs`` and their weights. Each backend is a Service, whose selector picks the ready containers of
rig.kube_pods (what Endpoints would list). A backend without a ready container answers 503, as ingress-nginx
does; a reading that fails keeps the last good one.
"""

from __future__ import annotations

import http.client
import http.server
import random
import threading
from typing import Any

from rig.helpers import wait_until
from rig.kube_cluster import Cluster
from rig.kube_pods import Nodes

CANARY = "nginx.ingress.kubernetes.io/canary"
CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/{}/httproutes"
INGRESSES = "/apis/networking.k8s.io/v1/namespaces/{}/ingresses"

Backend = tuple[int, dict[str, str]]  # (weight, the Service's selector)


class Ingress:
    """A context manager: serves on 127.0.0.1:`port` while the block lasts."""

    def __init__(self, cluster: Cluster, namespace: str, split: str, nodes: Nodes, interval: float = 0.2) -> None:
        self.cluster, self.namespace, self.split, self.nodes = cluster, namespace, split, nodes
        self.interval = interval
        self.backends: list[Backend] = []  # replaced whole by the poller: a request reads one reading
        self.readings = 0  # how many readings of the API it has made
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=f"kube-ingress-{namespace}", daemon=True)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def read_again(self, timeout: float = 30) -> None:
        """Wait until it has read the API afresh: a reading begun after this call (its poll, as
        ingress-nginx's sync, lags a change of the split by up to one interval)."""
        wanted = self.readings + 2  # the reading under way may have begun before the call
        wait_until(lambda: self.readings >= wanted, timeout=timeout, what="the ingress stand-in to read the API")

    # -- the reading
    def _poll(self) -> None:
        while True:
            try:
                self.backends = self._read()
                self.readings += 1
            except Exception as err:  # noqa: BLE001 - kept: the last good reading serves meanwhile
                self.problems.append(f"{type(err).__name__}: {err}")
            if self._stop.wait(self.interval):
                return

    def _read(self) -> list[Backend]:
        if self.split == "gateway-api":
            routes = (self.cluster.read(ROUTES.format(self.namespace)) or {}).get("items") or []
            refs = [ref for route in routes for rule in route["spec"].get("rules") or []
                    for ref in rule.get("backendRefs") or []]
            return [(int(ref.get("weight", 1)), self._selector(ref["name"])) for ref in refs]
        ingresses = (self.cluster.read(INGRESSES.format(self.namespace)) or {}).get("items") or []
        canaries = [i for i in ingresses if (i["metadata"].get("annotations") or {}).get(CANARY) == "true"]
        mains = [i for i in ingresses if i not in canaries]
        if not mains:
            return []
        weight = int(canaries[0]["metadata"]["annotations"].get(CANARY_WEIGHT) or 0) if canaries else 0
        backends = [(100 - weight, self._selector(_service_of(mains[0])))]
        return backends + ([(weight, self._selector(_service_of(canaries[0])))] if canaries else [])

    def _selector(self, service: str) -> dict[str, str]:
        found = self.cluster.read(f"/api/v1/namespaces/{self.namespace}/services/{service}")
        return dict(((found or {}).get("spec") or {}).get("selector") or {"no such service": service})

    # -- the routing
    def pick(self) -> int | None:
        """A ready container's port for one request: a backend by weight, then one of its containers."""
        backends = [(w, s) for w, s in self.backends if w > 0]
        if not backends:
            return None
        _, selector = random.choices(backends, weights=[w for w, _ in backends])[0]
        ports = self.nodes.endpoints(selector)
        return random.choice(ports) if ports else None

    def __enter__(self) -> Ingress:
        self._poller.start()
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._poller.join(10)
        self._server.shutdown()
        self._server.server_close()


def _service_of(ingress: dict[str, Any]) -> str:
    return str(ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"])


def _handler(ingress: Ingress) -> type[http.server.BaseHTTPRequestHandler]:
    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            port = ingress.pick()
            if port is None:
                self._answer(503, "text/plain", b"no endpoints\n")
                return
            upstream = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                upstream.request("GET", self.path)
                answer = upstream.getresponse()
                self._answer(answer.status, answer.getheader("Content-Type") or "text/plain", answer.read())
            except OSError as err:
                self._answer(502, "text/plain", f"upstream 127.0.0.1:{port}: {err}\n".encode())
            finally:
                upstream.close()

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    return Proxy
