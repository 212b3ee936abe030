"""A local HTTP receiver for notifications: a real http.server on 127.0.0.1 in a thread, which keeps
every JSON body POSTed to it and answers with the statuses it is told, in order (then 200)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Receiver:
    url: str
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (path, body)
    statuses: list[int] = field(default_factory=list)  # answered in order; 200 once they run out
    answered: list[int] = field(default_factory=list)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for where, body in self.received if where == path]


@contextmanager
def receiver(*statuses: int) -> Iterator[Receiver]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    got = Receiver(f"http://127.0.0.1:{server.server_address[1]}", statuses=list(statuses))
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                status = got.statuses.pop(0) if got.statuses else 200
                got.answered.append(status)
                if status < 300:
                    got.received.append((self.path, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
