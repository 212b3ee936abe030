"""The service container: per-environment adapters made once, shared across threads, and closed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from rig.opkit import sandbox_services
from rig.wiring import rewire

from services.core.config import UnknownEnvironment
from services.factory import _OnFirstUse


class Client:
    """An adapter holding something to let go of (a Kubernetes ApiClient, an HTTP pool)."""

    made: list[Client] = []

    def __init__(self, env: str) -> None:
        self.env, self.closed = env, False
        Client.made.append(self)

    def close(self) -> None:
        self.closed = True


def test_an_adapter_is_made_once_per_environment_and_closed_on_quit(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    services = sandbox_services(tmp_path, monkeypatch)
    Client.made = []
    rewire(services, metrics=Client)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(services.metrics("staging"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(Client.made) == 1 and all(s is Client.made[0] for s in seen)  # the 2 s poll reuses it
    other = services.metrics("production")
    assert other is not seen[0] and [c.env for c in Client.made] == ["staging", "production"]

    services.close()
    assert all(c.closed for c in Client.made)
    again = services.metrics("staging")  # after close, the next use makes a fresh one
    assert again is not seen[0] and not again.closed  # type: ignore[attr-defined]


def test_an_unknown_environment_is_refused_not_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = sandbox_services(tmp_path, monkeypatch)
    Client.made = []
    rewire(services, target=Client)
    with pytest.raises(UnknownEnvironment):
        services.target("prod")
    assert Client.made == []


def test_closing_never_makes_an_adapter_that_was_not_used() -> None:
    made: list[Client] = []
    lazy = _OnFirstUse(lambda: made.append(Client("-")) or made[-1])
    lazy.close()
    assert made == []
    lazy.env  # noqa: B018 - first use makes it
    lazy.close()
    assert len(made) == 1 and made[0].closed
