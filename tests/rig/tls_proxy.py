"""TLS in front of the rig's S3 (moto, plain HTTP), for pgBackRest's S3 repository.

pgBackRest speaks only TLS to S3, and moto's own TLS mode closes connections without TLS's
close_notify, which OpenSSL 3 refuses ("unexpected eof while reading"). Debian's nginx terminates TLS
here, with a self-signed certificate for 127.0.0.1 made by the openssl CLI; pgBackRest is given that
certificate as its CA (repo1-storage-ca-file), so it verifies the connection as it would a real one.
pgBackRest 2.45 matches the host only against DNS names in the certificate, so 127.0.0.1 is one too.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rig.helpers import free_port, wait_until


@dataclass(frozen=True)
class TlsEndpoint:
    host: str
    port: int
    ca_file: Path  # the certificate itself: it is its own CA


@contextmanager
def tls_proxy(upstream: str, directory: Path) -> Iterator[TlsEndpoint]:
    """nginx on a free 127.0.0.1 port, TLS outside, `upstream` (http://host:port) inside; stopped after."""
    for tool in ("nginx", "openssl"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: run the tests through tests/rig/run, which installs it")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   capture_output=True, check=True, timeout=60)
    cert.chmod(0o644)  # pgBackRest reads it as postgres
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(f"""
user root;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {directory}/client;
    proxy_temp_path {directory}/proxy;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 0;
        location / {{
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_http_version 1.1;
        }}
    }}
}}
""")
    base = ["nginx", "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")]
    subprocess.run(base, capture_output=True, check=True, timeout=30)
    wait_until((directory / "nginx.pid").exists, timeout=10, what="the TLS proxy's pid file")
    try:
        yield TlsEndpoint("127.0.0.1", port, cert)
    finally:
        subprocess.run([*base, "-s", "stop"], capture_output=True, timeout=30, check=False)
