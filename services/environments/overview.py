"""The environments overview, shared by `status` and the environments pane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.core.locks import LockUnknown

if TYPE_CHECKING:
    from services.core.container import Services


@dataclass(frozen=True)
class EnvironmentRow:
    env: str
    production: bool
    target: str
    version: str
    ready: str
    canary_version: str | None
    canary_weight: int
    lock: str | None
    error: str | None = None
    restarts: int = 0
    events: tuple[str, ...] = ()  # the rollout's latest events, newest last
    revisions: tuple[str, ...] = ()  # the latest revisions, newest first: "#3 1.4.1 deploy 2d ago"
    canary_ready: int = 0


def environment_rows(services: Services, envs: list[str]) -> list[EnvironmentRow]:
    rows = []
    for env in envs:
        config = services.config.environment(env)
        lock = _lock(services, env)
        try:
            status = services.target(env).status()
        except Exception as err:  # noqa: BLE001 - one unreachable target must not hide the others
            rows.append(EnvironmentRow(env, config.production, config.target.kind, "?", "?", None, 0,
                                       lock, str(err)))
            continue
        rows.append(EnvironmentRow(env, config.production, config.target.kind, status.version,
                                   f"{status.ready}/{status.desired}", status.canary_version,
                                   status.canary_weight, lock, None, status.restarts,
                                   status.events[-3:], _recent_revisions(services, env), status.canary_ready))
    return rows


def _lock(services: Services, env: str) -> str | None:
    """Who holds env's lock; None when free; "unknown: why" when it cannot be read, never free."""
    try:
        held = services.locks.holder(env)
    except LockUnknown as err:
        return f"unknown: {err}"
    return held.describe() if held else None


def _recent_revisions(services: Services, env: str, count: int = 3) -> tuple[str, ...]:
    try:
        revisions = services.revisions(env).list()[-count:]
    except Exception as err:  # noqa: BLE001 - the history is a detail; the row still shows
        return (f"history unreadable: {err}",)
    now = services.clock.now()
    return tuple(f"#{r.number} {r.image.rsplit(':', 1)[-1]} {r.action} {_age(now - r.when)}"
                 for r in reversed(revisions))


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"
