"""moto's S3 server, over real HTTP on 127.0.0.1, for the tests' `s3_endpoint` fixture and bench/s3_upload.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def moto_s3(quiet: bool = False) -> Iterator[str]:
    """Start moto's S3 in this process on a free loopback port; yields its endpoint URL. At the end its
    backends are reset (they live in this process and keep every upload's bytes) and it stops.
    `quiet`: without werkzeug's line per request."""
    import httpx
    from moto.server import ThreadedMotoServer

    if quiet:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield endpoint
    finally:
        try:
            httpx.post(f"{endpoint}/moto-api/reset", timeout=10)
        finally:
            server.stop()
