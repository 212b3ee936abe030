"""The environments overview, shared by `status` and the environments pane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.core.ages import short_age
from services.core.locks import LockUnknown
from services.core.references import version_of
from services.environments.drift import Difference, Drift, drift_of, note

if TYPE_CHECKING:
    from services.core.container import Services
    from services.core.ports import Revision, TargetStatus


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
    drift: tuple[str, ...] = ()  # what differs from the record and the console's last change (see drift.py)
    drift_detail: tuple[dict[str, str], ...] = ()  # the same, as fields (for --json)


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
        revisions, recent = _revisions(services, env)
        drift = _drift(services, env, status, revisions)
        rows.append(EnvironmentRow(env, config.production, config.target.kind, status.version,
                                   f"{status.ready}/{status.desired}", status.canary_version,
                                   status.canary_weight, lock, None, status.restarts,
                                   status.events[-3:], recent, status.canary_ready, drift.lines,
                                   tuple(d.as_json() for d in drift.differences)))
    return rows


def _drift(services: Services, env: str, status: TargetStatus, revisions: list[Revision] | None) -> Drift:
    """The row's drift, audited the first time it is seen; with no readable history, the image is not
    compared (the history line says why) but the replicas and the weight still are."""
    drift = drift_of(services, env, status, revisions or [])
    try:
        note(services, drift)
    except Exception as err:  # noqa: BLE001 - the audit says why elsewhere; the pane must still show it
        if drift:
            return Drift(env, (*drift.differences, Difference("audit", "", "", f"drift not audited: {err}")))
    return drift


def _lock(services: Services, env: str) -> str | None:
    """Who holds env's lock; None when free; "unknown: why" when it cannot be read, never free."""
    try:
        held = services.locks.holder(env)
    except LockUnknown as err:
        return f"unknown: {err}"
    return held.describe() if held else None


def _revisions(services: Services, env: str, count: int = 3) -> tuple[list[Revision] | None, tuple[str, ...]]:
    """The history (None when unreadable) and its latest `count` revisions as lines, newest first."""
    try:
        revisions = services.revisions(env).list()
    except Exception as err:  # noqa: BLE001 - the history is a detail; the row still shows
        return None, (f"history unreadable: {err}",)
    now = services.clock.now()
    return revisions, tuple(f"#{r.number} {version_of(r.image)} {r.action} {_age(now - r.when)}"
                            for r in reversed(revisions[-count:]))


def _age(seconds: float) -> str:
    age = short_age(seconds)
    return f"{age} ago" if age else "just now"
