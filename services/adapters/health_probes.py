"""The real dependency probes of an environment: its /api/health, its PostgreSQL and its Redis.

Each probe is one short connection with every wait bounded by the timeout; a probe that cannot
connect reports why (masked: never a password) and is judged a failure by services/environments/health.py.
"""

from __future__ import annotations

import math
import time
from typing import Any

import psycopg
from pydantic import SecretStr

from services.adapters.http import HttpHealth
from services.adapters.resp import RedisError, RespClient, number, parse_info
from services.core.config import ReleaseConfig
from services.core.masking import mask_text
from services.core.ports import Reading
from services.core.units import byte_size

_BLOCKED = """
SELECT w.pid, w.usename, w.application_name, extract(epoch FROM now() - w.query_start)::float8,
       b.pid, b.usename, b.application_name, b.state
FROM pg_stat_activity w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocker(pid)
JOIN pg_stat_activity b ON b.pid = blocker.pid
ORDER BY 4 DESC NULLS LAST LIMIT 5
"""
_SUMMARY = """
SELECT current_setting('server_version'), current_setting('max_connections')::int,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
       (SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8 FROM pg_stat_activity
         WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'),
       (SELECT count(*) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0),
       pg_database_size(current_database()), pg_is_in_recovery(),
       (SELECT max(extract(epoch FROM replay_lag))::float8 FROM pg_stat_replication),
       (SELECT count(*) FROM pg_stat_replication),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END
"""
# A replica's lag: 0 once it replayed all it received, else the age of the last transaction it replayed
# (on an idle primary that age grows with no lag at all, hence the LSN comparison first). A primary's:
# its replicas' worst replay_lag, which PostgreSQL sets back to NULL once they caught up and it is idle.


def _ms_since(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)


def probe_api(url: str, timeout_s: float) -> Reading:
    start = time.monotonic()
    result = HttpHealth(timeout_s).check(url)
    latency = _ms_since(start)
    if result.status is None:
        return Reading("api", False, error=result.detail)
    facts = (f"GET {url} -> {result.status} in {latency:g} ms",)
    if not result.ok:
        return Reading("api", False, result.version, {"latency_ms": latency}, facts,
                       f"answers {result.status}: {result.detail[:120]}")
    return Reading("api", True, result.version, {"latency_ms": latency}, facts)


def probe_postgres(dsn: str, timeout_s: float) -> Reading:
    start = time.monotonic()
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=max(2, math.ceil(timeout_s)),
                             application_name="release-console health") as conn:
            conn.execute("SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
                         (f"{round(timeout_s * 1000)}ms", f"{round(timeout_s * 1000)}ms"))
            row = conn.execute(_SUMMARY).fetchone()
            blocked = conn.execute(_BLOCKED).fetchall() if row and row[4] else []
    except psycopg.Error as err:
        text = str(err).strip()
        return Reading("postgres", False, error=mask_text(text.splitlines()[-1] if text else type(err).__name__))
    latency = _ms_since(start)
    assert row is not None
    version, max_conn, used, longest, waiting, size, replica, lag, replicas, replay_age = row
    numbers = {"latency_ms": latency, "connections_percent": round(100 * used / max(max_conn, 1), 1),
               "longest_transaction_s": round(longest, 1), "blocked": float(waiting)}
    facts = [f"PostgreSQL {version}", f"connections {used}/{max_conn}", f"longest transaction {longest:.1f} s",
             f"database size {byte_size(size)}"]
    worst_lag = replay_age if replica else (lag or 0.0) if replicas else None
    if worst_lag is not None:
        numbers["replication_lag_s"] = round(worst_lag, 1)
        where = "this is a replica" if replica else f"{replicas} replicas"
        facts.append(f"replication lag {worst_lag:.1f} s ({where})")
    facts += [_blocking(r) for r in blocked]
    return Reading("postgres", True, str(version), numbers, tuple(facts))


def _blocking(row: tuple[Any, ...]) -> str:
    pid, user, app, waited, by_pid, by_user, by_app, by_state = row
    who = f"pid {pid} ({user}{f', {app}' if app else ''})"
    by = f"pid {by_pid} ({by_user}{f', {by_app}' if by_app else ''}, {by_state})"
    return mask_text(f"{who} waits {waited or 0:.1f} s, blocked by {by}")


def probe_redis(client: RespClient) -> Reading:
    start = time.monotonic()
    try:
        with client:
            client.command("PING")
            latency = _ms_since(start)
            info = client.command("INFO")
    except RedisError as err:
        return Reading("redis", False, error=mask_text(str(err)))
    fields = parse_info(info if isinstance(info, str) else "")
    used, most = number(fields, "used_memory") or 0, number(fields, "maxmemory") or 0
    numbers = {"latency_ms": latency}
    for key, field in (("rejected_clients", "rejected_connections"), ("evicted_keys", "evicted_keys")):
        if (value := number(fields, field)) is not None:
            numbers[key] = value
    rdb, aof = fields.get("rdb_last_bgsave_status", "?"), fields.get("aof_last_write_status", "?")
    aof_on = fields.get("aof_enabled") == "1"
    numbers["persistence_errors"] = float((rdb not in ("ok", "?")) + (aof_on and aof not in ("ok", "?")))
    if most:
        numbers["memory_percent"] = round(100 * used / most, 1)
    facts = (f"role {fields.get('role', '?')}, PING {latency:g} ms",
             f"memory {byte_size(used)} of {byte_size(most) if most else 'no maxmemory'}",
             f"clients {fields.get('connected_clients', '?')} connected, {fields.get('rejected_connections', '?')}"
             f" rejected; {fields.get('evicted_keys', '?')} keys evicted",
             f"persistence: last RDB save {rdb}, AOF {f'last write {aof}' if aof_on else 'off'}")
    return Reading("redis", True, fields.get("redis_version"), numbers, facts)


class LiveProbes:
    def __init__(self, config: ReleaseConfig, env: str) -> None:
        self.config, self.env = config, env

    def probe(self, timeout_s: float) -> list[Reading]:
        settings = self.config.environment(self.env)
        return [probe_api(self.config.health_url(self.env), timeout_s),
                probe_postgres(settings.database_url.get_secret_value(), timeout_s),
                _redis(settings.redis_url.get_secret_value(), timeout_s)]


def _redis(url: str, timeout_s: float) -> Reading:
    try:
        client = RespClient(SecretStr(url), timeout_s)
    except RedisError as err:
        return Reading("redis", False, error=str(err))
    return probe_redis(client)
