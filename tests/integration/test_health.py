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
from rig import config_builder as toml
from rig.helpers import wait_until

from services import factory
from services.core.container import Services
from services.environments.health import EnvironmentHealth, check

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, api_url: str = toml.NO_API) -> Path:
    return toml.release({"staging": toml.environment(api_url=api_url, redis_url=toml.secret("REDIS"))}
                        ).write(tmp_path / "release.toml")


def console_env(tmp_path: Path, dsn: str, redis: str) -> dict[str, str]:
    return {"TEST_DB": dsn, "REDIS": redis, "XDG_STATE_HOME": str(tmp_path / "state")}


@pytest.fixture
def services_for(tmp_path: Path) -> Iterator[Any]:
    built: list[Services] = []

    def make(dsn: str, redis: str, api_url: str = toml.NO_API) -> Services:
        config = toml.release({"staging": toml.environment(api_url=api_url, redis_url=toml.secret("REDIS"))}
                              ).load(tmp_path / "release.toml", {"TEST_DB": dsn, "REDIS": redis})
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
