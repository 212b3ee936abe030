"""connections_to(): nginx's connections to upstream ports, counted with `ss` on the host (here this one)."""

from __future__ import annotations

import socket

import pytest

from services.adapters.nginx_split import LocalHost, connections_to


def test_counts_open_connections_to_the_ports_and_only_those() -> None:
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    ports = [int(s.getsockname()[1]) for s in servers]
    clients = [socket.create_connection(("127.0.0.1", port)) for port in (ports[0], ports[0], ports[1])]
    accepted = [servers[0].accept()[0], servers[0].accept()[0], servers[1].accept()[0]]
    try:
        host = LocalHost()
        assert connections_to(host, ports[:1]) == {ports[0]: 2}  # the client side only: nginx's, not the app's
        assert connections_to(host, ports) == {ports[0]: 2, ports[1]: 1, ports[2]: 0}
        assert connections_to(host, []) == {}
        for sock in clients[:2]:
            sock.close()
        assert connections_to(host, ports[:1]) == {ports[0]: 0}  # closed by the client: not open any more
    finally:
        for sock in clients + accepted + servers:
            sock.close()


def test_none_when_ss_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert connections_to(LocalHost(), [80]) is None
