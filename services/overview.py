"""The environments overview, shared by `status` and the environments pane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.locks import LockInfo

if TYPE_CHECKING:
    from services.factory import Services


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


def environment_rows(services: Services, envs: list[str]) -> list[EnvironmentRow]:
    rows = []
    for env in envs:
        config = services.config.environment(env)
        lock = services.locks.holder(env) if services.sandbox else _safe_holder(services, env)
        try:
            status = services.target(env).status()
        except Exception as err:  # noqa: BLE001 - one unreachable target must not hide the others
            rows.append(EnvironmentRow(env, config.production, config.target.kind, "?", "?", None, 0,
                                       lock.describe() if lock else None, str(err)))
            continue
        rows.append(EnvironmentRow(env, config.production, config.target.kind, status.version,
                                   f"{status.ready}/{status.desired}", status.canary_version, status.canary_weight,
                                   lock.describe() if lock else None))
    return rows


def _safe_holder(services: Services, env: str) -> LockInfo | None:
    try:
        return services.locks.holder(env)
    except Exception:  # noqa: BLE001 - shown as unknown, not as free
        return None
