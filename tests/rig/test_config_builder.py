"""The release.toml builder writes what the real loader reads back, piece by piece."""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from rig.config_builder import (
    RIG_REDIS,
    ReleaseToml,
    backup,
    docker_target,
    environment,
    kubernetes_target,
    nginx_split,
    prometheus,
    release,
    render,
    rig_docker_target,
    rig_staging,
    s3_store,
    scrape,
    secret,
    staging_and_production,
)
from services.core.config import ConfigError, DockerTarget, KubernetesTarget, NoTarget

# Resolved secrets are registered for masking in this process: long, distinctive values only.
ENV = {
    "TEST_DB": "postgresql://builder:pw-builder-test-db@127.0.0.1:5432/builder",
    "PROD_DB": "postgresql://builder:pw-builder-prod-db@127.0.0.1:5432/prod",
    "KUBE_TOKEN": "builder-test-kube-token-0123456789",
    "AWS_SECRET": "builder-test-aws-secret-0123456789",
    "SIGNING_KEY": "builder-test-signing-key-0123456789",
    "AUDIT_KEY": "builder-test-audit-key-0123456789",
    "REDIS": "redis://:builder-test-redis-password@127.0.0.1:6379/0",
    "WEBHOOK": "http://127.0.0.1:1/hooks/builder-test-webhook",
}


def full_release(tmp_path: Path) -> ReleaseToml:
    staging = environment(
        app_dir=tmp_path / "app", stop=["docker", "stop", "app"], start=["docker", "start", "app"],
        target=docker_target(nginx_split(tmp_path / "upstream.conf", upstream="food", reload=["nginx", "-s", "reload"]),
                             docker_url="ssh://root@127.0.0.1:2222", ports=(21000, 21019), service="web",
                             env={"LATENCY_MS": "0"}),
        metrics=prometheus("http://127.0.0.1:9090", selectors={"canary": 'track="canary"', "stable": 'track="stable"'}),
        log_level="warn", features={"analytics": True})
    production = environment(
        api_url="https://food.example.test/api", database_url=secret("PROD_DB"), redis_url="rediss://127.0.0.1:6380/0",
        production=True,
        target=kubernetes_target("food", api_url="http://127.0.0.1:8001", token=secret("KUBE_TOKEN"),
                                 traffic_split="gateway-api", host="food.example.test", ready_timeout_s=5))
    store = s3_store("rc-builder-bucket", endpoint_url="http://127.0.0.1:9000", prefix="t/", access_key_id="testing",
                     secret_access_key=secret("AWS_SECRET"), server_side_encryption="AES256")
    return release(
        {"staging": staging, "production": production}, name="food", image="127.0.0.1:5000/food",
        app={"port": 3001, "build_args": {"NPM_TOKEN": "x"}},
        backup=backup(s3=store, signing_key=secret("SIGNING_KEY"), compression="gzip", lock_wait_timeout_s=3),
        migrations={"dir": "prisma/migrations", "integrity_tables": []},
        canary={"check_interval_s": 1, "duration_s": 12, "automation": {"judge": "observe"}},
        notify={"webhook_url": secret("WEBHOOK")}, audit={"key": secret("AUDIT_KEY")},
        keys={"action.release": "ctrl+r"}, recovery={"health_tries": 2, "health_interval_s": 0.5})


def test_every_piece_loads_through_the_real_loader(tmp_path: Path) -> None:
    config = full_release(tmp_path).load(tmp_path / "release.toml", ENV)

    assert (config.app.name, config.app.image, config.app.port) == ("food", "127.0.0.1:5000/food", 3001)
    assert config.app.build_args == {"NPM_TOKEN": "x"}
    staging, production = config.environment("staging"), config.environment("production")
    assert staging.database_url.get_secret_value() == ENV["TEST_DB"]
    assert (staging.api_url, staging.redis_url.get_secret_value()) == ("http://127.0.0.1:1/api", "redis://127.0.0.1:1")
    assert not staging.production and production.production
    assert (staging.log_level, staging.features.analytics, staging.app_dir) == ("warn", True, str(tmp_path / "app"))
    assert staging.services is not None
    assert (staging.services.stop, staging.services.start) == (["docker", "stop", "app"], ["docker", "start", "app"])
    assert isinstance(staging.target, DockerTarget)
    assert (staging.target.docker_url, staging.target.ports, staging.target.service, staging.target.env) == (
        "ssh://root@127.0.0.1:2222", (21000, 21019), "web", {"LATENCY_MS": "0"})
    assert (staging.target.nginx.upstream_file, staging.target.nginx.upstream, staging.target.nginx.reload) == (
        str(tmp_path / "upstream.conf"), "food", ["nginx", "-s", "reload"])
    assert staging.metrics.prometheus_url == "http://127.0.0.1:9090"
    assert staging.metrics.selectors == {"canary": 'track="canary"', "stable": 'track="stable"'}

    assert production.database_url.get_secret_value() == ENV["PROD_DB"]
    assert isinstance(production.target, KubernetesTarget)
    target = production.target
    assert (target.namespace, target.api_url, target.traffic_split, target.host, target.ready_timeout_s) == (
        "food", "http://127.0.0.1:8001", "gateway-api", "food.example.test", 5)
    assert target.token is not None and target.token.get_secret_value() == ENV["KUBE_TOKEN"]

    assert (config.backup.local_dir, config.backup.compression, config.backup.lock_wait_timeout_s) == (
        "backups", "gzip", 3)
    assert config.backup.signing_key is not None and config.backup.signing_key.get_secret_value() == ENV["SIGNING_KEY"]
    s3 = config.backup.s3
    assert s3 is not None
    assert (s3.bucket, s3.endpoint_url, s3.prefix, s3.server_side_encryption) == (
        "rc-builder-bucket", "http://127.0.0.1:9000", "t/", "AES256")
    assert s3.secret_access_key is not None and s3.secret_access_key.get_secret_value() == ENV["AWS_SECRET"]
    assert (config.migrations.dir, config.migrations.integrity_tables) == ("prisma/migrations", [])
    assert (config.canary.check_interval_s, config.canary.automation["judge"]) == (1, "observe")
    assert config.notify.webhook_url is not None and config.notify.webhook_url.get_secret_value() == ENV["WEBHOOK"]
    assert config.audit.key is not None and config.audit.key.get_secret_value() == ENV["AUDIT_KEY"]
    assert config.keys == {"action.release": "ctrl+r"}
    assert (config.recovery.health_tries, config.recovery.health_interval_s) == (2, 0.5)


def test_the_file_and_the_tree_load_alike(tmp_path: Path) -> None:
    built = full_release(tmp_path)
    assert built.parse(ENV).model_dump() == built.load(tmp_path / "release.toml", ENV).model_dump()


def test_the_file_keeps_secrets_as_references(tmp_path: Path) -> None:
    text = full_release(tmp_path).text()
    assert 'token = "${KUBE_TOKEN}"' in text and 'signing_key = "${SIGNING_KEY}"' in text
    assert not any(value in text for value in ENV.values())


def test_pieces_left_out_keep_the_loaders_defaults(tmp_path: Path) -> None:
    built = release({"staging": environment()})
    assert "None" not in built.text() and "target" not in built.text() and "production" not in built.text()
    config = built.load(tmp_path / "release.toml", ENV)
    staging = config.environment("staging")
    assert isinstance(staging.target, NoTarget) and staging.services is None and not staging.production
    assert config.backup.s3 is None and config.migrations.dir == "prisma/migrations"


def test_staging_and_production_differ_only_in_the_mark() -> None:
    config = release(staging_and_production(redis_url=secret("REDIS"))).parse(ENV)
    staging, production = config.environment("staging"), config.environment("production")
    assert (staging.production, production.production) == (False, True)
    assert staging.model_copy(update={"production": True}) == production
    assert production.redis_url.get_secret_value() == ENV["REDIS"]


def test_the_rig_docker_target_takes_the_nginx_fixtures_split(tmp_path: Path) -> None:
    nginx = SimpleNamespace(upstream_file=tmp_path / "up.conf", upstream="food_management",
                            reload=["nginx", "-p", str(tmp_path), "-s", "reload"])
    target = rig_docker_target(nginx, "unix:///var/run/docker.sock", 21000, env={"A": "1"}, drain_s=0)
    config = release({"staging": environment(target=target)}).parse(ENV)
    docker = config.environment("staging").target
    assert isinstance(docker, DockerTarget)
    assert (docker.ports, docker.ready_timeout_s, docker.stop_timeout_s, docker.drain_s, docker.env) == (
        (21000, 21019), 20, 2, 0, {"A": "1"})
    assert (docker.nginx.upstream_file, docker.nginx.reload) == (str(tmp_path / "up.conf"), nginx.reload)


def test_the_rig_staging_is_quiet_unless_told(tmp_path: Path) -> None:
    nginx = SimpleNamespace(url="http://127.0.0.1:8080", upstream_file=tmp_path / "up.conf", upstream="food",
                            reload=["nginx", "-s", "reload"])
    quiet = release({"staging": rig_staging(nginx, "unix:///var/run/docker.sock", 21000)}).parse(ENV)
    staging = quiet.environment("staging")
    assert (staging.api_url, staging.redis_url.get_secret_value()) == ("http://127.0.0.1:8080/api", RIG_REDIS)
    assert isinstance(staging.target, DockerTarget)
    assert staging.target.env == {"SYNTHETIC_RPS": "0", "LATENCY_MS": "0"}
    busy = rig_staging(nginx, "unix:///var/run/docker.sock", 21000, env={"SYNTHETIC_RPS": "50"},
                       redis_url=secret("REDIS"))
    staging = release({"staging": busy}).parse(ENV).environment("staging")
    assert staging.redis_url.get_secret_value() == ENV["REDIS"]
    assert isinstance(staging.target, DockerTarget) and staging.target.env == {"SYNTHETIC_RPS": "50"}


def test_scraped_metrics_need_no_prometheus() -> None:
    metrics = scrape(stable=["http://127.0.0.1:1/metrics"], canary=["http://127.0.0.1:2/metrics"])
    config = release({"rig": environment(metrics=metrics)}).parse(ENV)
    assert config.environment("rig").metrics.prometheus_url is None
    assert config.environment("rig").metrics.scrape == {"stable": ["http://127.0.0.1:1/metrics"],
                                                        "canary": ["http://127.0.0.1:2/metrics"]}


def test_a_misspelt_key_still_fails_in_the_loader(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environments.staging.colour"):
        release({"staging": environment(colour="red")}).load(tmp_path / "release.toml", ENV)
    with pytest.raises(ConfigError, match=r"\$\{NOT_GIVEN\} is not set"):
        release({"staging": environment(database_url=secret("NOT_GIVEN"))}).load(tmp_path / "release.toml", ENV)


AWKWARD = {
    "app": {"name": 'quote " backslash \\ tab \t newline \n', "control": "\x00\x1f\x7f", "unicode": "é 食 😀",
            "numbers": [0, -3, 2.5, 1e-05, 1e+20], "flags": [True, False], "empty": [], "nested": [[1, 2], ["a"]]},
    "environments": {"prod uction": {"api_url": "x", "deep": {"deeper": {"k": 1}}}, "empty": {}},
    "keys": {"action.release": "ctrl+r", "": "blank key"},
}


def test_render_round_trips_through_tomllib() -> None:
    assert tomllib.loads(render(AWKWARD)) == AWKWARD


def test_render_writes_lists_of_tables_inline() -> None:
    steps = {"canary": {"steps": [{"weight": 10, "pause": "5m"}, {"weight": 25, "pause": "1h 5m"}]}}
    text = render(steps)
    assert 'steps = [{weight = 10, pause = "5m"}, {weight = 25, pause = "1h 5m"}]' in text
    assert tomllib.loads(text) == steps


def test_render_refuses_what_toml_cannot_hold() -> None:
    with pytest.raises(TypeError, match="cannot hold"):
        render({"app": {"when": object()}})
    with pytest.raises(TypeError, match="cannot hold"):
        render({"app": {"servers": [{"name": None}]}})
