"""The /api/health checker over real HTTP (a local server): the status, and the version the body reports."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from services.adapters.http import HttpHealth

BODIES = {  # path -> (status, body)
    "/versioned": (200, b'{"status":"ok","version":"1.4.2"}'),
    "/numbered": (200, b'{"status":"ok","version":2}'),
    "/unversioned": (200, b'{"status":"ok"}'),
    "/empty-version": (200, b'{"status":"ok","version":""}'),
    "/text": (200, b"OK"),
    "/list": (200, b'["1.4.2"]'),
    "/down": (503, b'{"status":"starting","version":"1.4.2"}'),
}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            status, body = BODIES[self.path]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(5)


@pytest.mark.parametrize(("path", "ok", "version"), [
    ("/versioned", True, "1.4.2"), ("/numbered", True, "2"), ("/unversioned", True, None),
    ("/empty-version", True, None), ("/text", True, None), ("/list", True, None), ("/down", False, "1.4.2")])
def test_the_reported_version_is_read_from_a_json_body(base_url: str, path: str, ok: bool, version: str | None
                                                        ) -> None:
    result = HttpHealth(timeout_s=5).check(base_url + path)
    assert (result.ok, result.status, result.version) == (ok, BODIES[path][0], version)
    assert result.detail == BODIES[path][1].decode()


def test_nothing_listening_is_not_ok_and_reports_no_version() -> None:
    result = HttpHealth(timeout_s=2).check("http://127.0.0.1:1/api/health")
    assert (result.ok, result.status, result.version) == (False, None, None)
    assert result.detail.startswith("http://127.0.0.1:1/api/health: ConnectError")
