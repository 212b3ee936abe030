"""Live dependency health against real services: the sample app, PostgreSQL and Redis (issue #15)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr
from rig import config_builder as toml
from rig.helpers import wait_until
from rig.pg_cluster import PrivateCluster, cluster_dir

from services import factory
from services.adapters.resp import RespClient
from services.core.container import Services
from services.environments.health import EnvironmentHealth, check

ROOT = Path(__file__).resolve().parents[2]


# What these tests judge is reachability, versions and each reading's own rule, never speed: a loaded
# CI machine answering /api/health in 572 ms must not turn "ok" into a latency warning.
UNHURRIED = {"timeout_s": 10, **{dependency: {"latency_ms": {"warn": 10_000, "fail": 20_000}}
                                 for dependency in ("api", "postgres", "redis")}}


def health_section(**rules: Any) -> dict[str, Any]:
    """UNHURRIED with a test's own rules merged in, dependency by dependency."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in UNHURRIED.items()}
    for key, value in rules.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return merged


def write_config(tmp_path: Path, api_url: str = toml.NO_API) -> Path:
    return toml.release({"staging": toml.environment(api_url=api_url, redis_url=toml.secret("REDIS"))},
                        health=health_section()).write(tmp_path / "release.toml")


def console_env(tmp_path: Path, dsn: str, redis: str) -> dict[str, str]:
    return {"TEST_DB": dsn, "REDIS": redis, "XDG_STATE_HOME": str(tmp_path / "state")}


@pytest.fixture
def services_for(tmp_path: Path) -> Iterator[Any]:
    built: list[Services] = []

    def make(dsn: str, redis: str, api_url: str = toml.NO_API, **health: Any) -> Services:
        config = toml.release({"staging": toml.environment(api_url=api_url, redis_url=toml.secret("REDIS"))},
                              health=health_section(**health)).load(tmp_path / "release.toml",
                                                                    {"TEST_DB": dsn, "REDIS": redis})
        built.append(factory.build(config, state=tmp_path / "state"))
        return built[-1]

    yield make
    for services in built:
        services.close()


def by_dependency(health: EnvironmentHealth) -> dict[str, Any]:
    return {c.dependency: c for c in health.checks}


def health_cli(tmp_path: Path, dsn: str, redis: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **console_env(tmp_path, dsn, redis)}
    return subprocess.run([sys.executable, "-m", "console.cli", "--config", str(tmp_path / "release.toml"),
                           "health", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_sample_app_postgres_and_rig_redis_are_healthy(tmp_path: Path, run_sample_app: Any, pg_database: str,
                                                        redis_url: str) -> None:
    app = run_sample_app(VERSION="2.3.4")
    write_config(tmp_path, api_url=f"{app.url}/api")
    done = health_cli(tmp_path, pg_database, redis_url, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    [staging] = json.loads(done.stdout)
    found = {d["dependency"]: d for d in staging["dependencies"]}
    assert staging["status"] == "ok"
    assert found["api"]["version"] == "2.3.4"
    assert found["api"]["numbers"]["latency_ms"] >= 0
    assert found["postgres"]["version"].startswith("15")
    assert any(fact.startswith("connections ") for fact in found["postgres"]["facts"])
    assert found["redis"]["facts"][0].startswith("role master")
    password = redis_url.split(":")[2].split("@")[0]
    assert password not in done.stdout + done.stderr


def test_a_stopped_redis_fails_within_one_poll(tmp_path: Path, services_for: Any, pg_database: str,
                                              private_redis: Any) -> None:
    services = services_for(pg_database, private_redis.url)
    assert by_dependency(check(services, "staging"))["redis"].status == "ok"
    private_redis.stop()
    redis = by_dependency(check(services, "staging"))["redis"]
    assert redis.status == "fail"
    assert "unreachable" in redis.reasons[0] and f"127.0.0.1:{private_redis.port}" in redis.reasons[0]
    assert private_redis.password not in redis.reasons[0]
    write_config(tmp_path)
    done = health_cli(tmp_path, pg_database, private_redis.url, "--json", "--env", "staging")
    assert done.returncode == 1, done.stdout + done.stderr
    assert json.loads(done.stdout)[0]["status"] == "fail"
    assert private_redis.password not in done.stdout + done.stderr


def test_memory_near_maxmemory_warns(services_for: Any, pg_database: str, private_redis: Any) -> None:
    used = int(next(line.split(":")[1] for line in private_redis.cli("INFO", "memory").splitlines()
                    if line.startswith("used_memory:")))
    assert private_redis.cli("CONFIG", "SET", "maxmemory", str(int(used / 0.88))) == "OK"
    redis = by_dependency(check(services_for(pg_database, private_redis.url), "staging"))["redis"]
    assert redis.status == "warn", redis
    assert 80 <= redis.reading.numbers["memory_percent"] < 95
    assert redis.reasons[0].startswith("memory_percent") and "warn 80" in redis.reasons[0]


def test_a_held_lock_warns_naming_the_blocked_and_the_blocking(services_for: Any, pg_database: str,
                                                              redis_url: str) -> None:
    with psycopg.connect(pg_database, autocommit=True) as setup:
        setup.execute("CREATE TABLE stock (id int PRIMARY KEY, n int)")
        setup.execute("INSERT INTO stock VALUES (1, 0)")
    holder = psycopg.connect(pg_database, application_name="stock-holder")
    holder.execute("UPDATE stock SET n = n + 1 WHERE id = 1")  # its transaction stays open: the row lock is held
    waiter = psycopg.connect(pg_database, autocommit=True, application_name="stock-waiter")
    waiter_pid = waiter.info.backend_pid
    waiting = threading.Thread(target=lambda: waiter.execute("UPDATE stock SET n = n + 1 WHERE id = 1"))
    waiting.start()
    try:
        holder_pid = holder.info.backend_pid
        with psycopg.connect(pg_database, autocommit=True) as watch:
            wait_until(lambda: watch.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                             "cardinality(pg_blocking_pids(pid)) > 0").fetchone()[0],  # type: ignore[index]
                       timeout=10, interval=0.05, what="the waiter blocked")
        postgres = by_dependency(check(services_for(pg_database, redis_url), "staging"))["postgres"]
    finally:
        holder.rollback()
        waiting.join(timeout=10)
        holder.close()
        waiter.close()
    assert postgres.status == "warn", postgres
    assert postgres.reasons == ("blocked 1 >= warn 1",)
    [line] = [fact for fact in postgres.reading.facts if "blocked by" in fact]
    assert f"pid {waiter_pid} (" in line and "stock-waiter" in line
    assert f"blocked by pid {holder_pid} (" in line and "stock-holder" in line


def test_the_database_size_and_the_longest_transaction_are_read(services_for: Any, pg_database: str,
                                                                redis_url: str) -> None:
    with psycopg.connect(pg_database, application_name="long-reader") as reader:
        reader.execute("SELECT 1")  # a transaction open from here until the probe has read it
        wait_until(lambda: reader.execute("SELECT now() < clock_timestamp() - interval '200 ms'").fetchone()[0],  # type: ignore[index]
                   timeout=10, interval=0.05, what="the transaction older than 0.2 s")
        postgres = by_dependency(check(services_for(pg_database, redis_url), "staging"))["postgres"]
    assert postgres.status == "ok", postgres
    assert postgres.reading.numbers["longest_transaction_s"] >= 0.2
    assert any(fact.startswith("database size ") and fact.endswith((" kB", " MB")) for fact in postgres.reading.facts)
    assert not any("replication" in fact for fact in postgres.reading.facts)  # no replicas: nothing said


def test_replication_lag_on_a_primary_with_a_replica_and_on_the_replica(services_for: Any, redis_url: str) -> None:
    """A real streaming replica of a private primary: each says where it stands; a replica whose
    replay is paused while the primary commits falls behind and warns, naming the lag."""
    with cluster_dir("rc-health-replica-") as directory:
        primary = PrivateCluster(directory / "primary")
        replica = None
        try:
            replica = PrivateCluster(directory / "replica", replica_of=primary)
            with psycopg.connect(primary.dsn, autocommit=True) as conn:
                wait_until(lambda: conn.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                                                ).fetchone()[0] == 1,  # type: ignore[index]
                           timeout=30, interval=0.1, what="the replica streaming")
                conn.execute("CREATE TABLE replayed (id int)")  # a transaction the replica replays: its time
            with psycopg.connect(replica.dsn, autocommit=True) as standby:
                wait_until(lambda: standby.execute("SELECT to_regclass('replayed') IS NOT NULL AND "
                                                   "pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()"
                                                   ).fetchone()[0],  # type: ignore[index]
                           timeout=30, interval=0.1, what="the replica caught up")
            on_primary = by_dependency(check(services_for(primary.dsn, redis_url), "staging"))["postgres"]
            assert on_primary.status == "ok", on_primary
            assert "replication_lag_s" in on_primary.reading.numbers
            assert any(fact.startswith("replication lag ") and fact.endswith("(1 replicas)")
                       for fact in on_primary.reading.facts), on_primary.reading.facts

            caught_up = by_dependency(check(services_for(replica.dsn, redis_url), "staging"))["postgres"]
            assert caught_up.status == "ok", caught_up
            assert "replication lag 0.0 s (this is a replica)" in caught_up.reading.facts

            with psycopg.connect(replica.dsn, autocommit=True) as standby:
                standby.execute("SELECT pg_wal_replay_pause()")
                with psycopg.connect(primary.dsn, autocommit=True) as conn:
                    conn.execute("CREATE TABLE written_while_paused (id int)")
                strict = {"postgres": {"replication_lag_s": {"warn": 0.5, "fail": 3600}}}
                services = services_for(replica.dsn, redis_url, **strict)

                def lagging() -> Any:
                    found = by_dependency(check(services, "staging"))["postgres"]
                    return found if found.status == "warn" else None

                behind = wait_until(lagging, timeout=30, interval=0.2, what="the paused replica warning")
                standby.execute("SELECT pg_wal_replay_resume()")
            assert behind.reasons[0].startswith("replication_lag_s ") and "warn 0.5" in behind.reasons[0]
            assert behind.reading.numbers["replication_lag_s"] >= 0.5
        finally:
            if replica is not None:
                replica.stop()
            primary.stop()


def redis_numbers(server: Any) -> dict[str, float]:
    with RespClient(SecretStr(server.url), 5) as client:
        info = client.command("INFO")
    return {k: float(v) for k, _, v in (line.partition(":") for line in str(info).splitlines())
            if v.strip().lstrip("-").replace(".", "", 1).isdigit()}


def test_evicted_keys_and_rejected_clients_warn(services_for: Any, pg_database: str, private_redis: Any) -> None:
    """Keys evicted under maxmemory, and a connection refused at maxclients: each warns, named."""
    private_redis.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    used = int(redis_numbers(private_redis)["used_memory"])
    private_redis.cli("CONFIG", "SET", "maxmemory", str(used + 200_000))
    with RespClient(SecretStr(private_redis.url), 5) as client:
        for n in range(2000):  # 2 MB of values into 0.2 MB of room
            client.command("SET", f"key:{n}", "x" * 1000)
    private_redis.cli("CONFIG", "SET", "maxmemory", "0")  # the evictions stay counted; memory no longer judged
    # redis_numbers' own connection is counted here: with it gone, one more gets in and the next is refused
    connected = int(redis_numbers(private_redis)["connected_clients"])
    private_redis.cli("CONFIG", "SET", "maxclients", str(connected))
    with RespClient(SecretStr(private_redis.url), 5) as first:
        first.command("PING")
        refused = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(private_redis.port), "PING"],
                                 capture_output=True, text=True, timeout=10, check=False,
                                 env={"REDISCLI_AUTH": private_redis.password})
    assert "max number of clients" in refused.stdout + refused.stderr
    private_redis.cli("CONFIG", "SET", "maxclients", "10000")
    redis = by_dependency(check(services_for(pg_database, private_redis.url), "staging"))["redis"]
    assert redis.status == "warn", redis
    assert redis.reading.numbers["evicted_keys"] > 0 and redis.reading.numbers["rejected_clients"] >= 1
    assert {reason.split()[0] for reason in redis.reasons} == {"evicted_keys", "rejected_clients"}
    [clients] = [fact for fact in redis.reading.facts if fact.startswith("clients ")]
    assert " connected, " in clients and f"{int(redis.reading.numbers['evicted_keys'])} keys evicted" in clients


def test_a_failed_rdb_save_warns_naming_persistence(services_for: Any, pg_database: str, private_redis: Any) -> None:
    """A BGSAVE that cannot put its file in place (a directory holds dump.rdb's name) is a persistence error."""
    (private_redis.directory / "dump.rdb").mkdir()
    (private_redis.directory / "dump.rdb" / "in-the-way").write_text("")
    services = services_for(pg_database, private_redis.url)
    assert by_dependency(check(services, "staging"))["redis"].reading.numbers["persistence_errors"] == 0
    assert "Background saving started" in private_redis.cli("BGSAVE")
    wait_until(lambda: redis_numbers(private_redis).get("rdb_bgsave_in_progress") == 0
               and "rdb_last_bgsave_status:err" in private_redis.cli("INFO", "persistence"),
               timeout=20, interval=0.1, what="the failed background save")
    redis = by_dependency(check(services, "staging"))["redis"]
    assert redis.status == "warn", redis
    assert redis.reasons == ("persistence_errors 1 >= warn 1",)
    assert "persistence: last RDB save err, AOF off" in redis.reading.facts
