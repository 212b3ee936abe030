"""`[health]` in release.toml: how often the dependency probes run and where ok ends.

Each threshold is a pair: a reading at or above `warn` is a warning, at or above `fail` a failure
(`{ warn = 80, fail = 95 }`). An unreachable dependency always fails. The defaults suit a small app.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Threshold(_Strict):
    warn: float = Field(ge=0)
    fail: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Threshold:
        if self.fail < self.warn:
            raise ValueError(f"fail ({self.fail:g}) must not be below warn ({self.warn:g})")
        return self


def _pair(warn: float, fail: float) -> Threshold:
    return Field(default_factory=lambda: Threshold(warn=warn, fail=fail))


class ApiHealth(_Strict):
    latency_ms: Threshold = _pair(500, 2000)


class PostgresHealth(_Strict):
    latency_ms: Threshold = _pair(200, 2000)
    connections_percent: Threshold = _pair(80, 95)  # used of max_connections
    longest_transaction_s: Threshold = _pair(60, 600)
    blocked: Threshold = _pair(1, 10)  # sessions waiting on another's lock
    replication_lag_s: Threshold = _pair(10, 60)


class RedisHealth(_Strict):
    latency_ms: Threshold = _pair(50, 1000)  # PING
    memory_percent: Threshold = _pair(80, 95)  # used_memory of maxmemory (none when maxmemory is 0)
    rejected_clients: Threshold = _pair(1, 100)  # rejected_connections since the server started
    evicted_keys: Threshold = _pair(1, 10_000)  # since the server started
    persistence_errors: Threshold = _pair(1, 2)  # last RDB save and last AOF write not ok


class HealthConfig(_Strict):
    interval_s: float = Field(10, ge=1, description="seconds between polls while the console shows them")
    timeout_s: float = Field(2, gt=0, le=30, description="each probe's connect and read timeout")
    history: int = Field(30, ge=2, le=500, description="readings kept per dependency, for the sparklines")
    api: ApiHealth = ApiHealth()
    postgres: PostgresHealth = PostgresHealth()
    redis: RedisHealth = RedisHealth()

    def threshold(self, dependency: str, metric: str) -> Threshold | None:
        section = getattr(self, dependency, None)
        found = getattr(section, metric, None) if isinstance(section, BaseModel) else None
        return found if isinstance(found, Threshold) else None
