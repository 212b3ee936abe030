"""The example config (the one `--sandbox` and the wheel ship) carries the deployment strategy's
numbers and flags. The table below is the strategy's, written down once; a change to either side
that makes them differ fails here."""

from __future__ import annotations

import pytest

from services.core.config import ReleaseConfig
from services.factory import EXAMPLE_CONFIG, load_config

# The strategy's numbers: (where in release.toml, the strategy's value).
NUMBERS = [
    ("canary.stable_replicas", 9),  # stable Deployment, 9 replicas
    ("canary.canary_replicas", 1),  # canary, 1 replica
    ("canary.weight_percent", 10),  # nginx ingress canary weight 10 %
    ("canary.check_interval_s", 30),  # baseline vs current every 30 s
    ("canary.duration_s", 30 * 60),  # for 30 min
    ("canary.error_rate_factor", 1.5),  # error rate above 1.5x baseline: roll back
    ("canary.p95_factor", 2.0),  # p95 above 2x baseline: roll back
    ("canary.cpu_scale_up_percent", 80),  # CPU above 80 %: scale up
    ("canary.memory_scale_up_percent", 85),  # memory above 85 %: scale up
    ("backup.retention_days", 30),  # 30-day retention
    ("backup.prune_after", True),  # old backups deleted after each backup
    ("backup.compression", "gzip"),  # pg_dump | gzip
    ("backup.excludes", ["node_modules", ".next", ".git"]),  # the app files' tar leaves these out
    ("app.health_path", "/api/health"),  # the restore's last check
    ("app.port", 3000),
]

# The strategy's environments: log level and feature flags.
ENVIRONMENTS = {
    "development": ("debug", {"analytics": False, "notifications": True, "experimental_features": True}),
    "staging": ("info", {"analytics": True, "notifications": True, "experimental_features": True}),
    "production": ("warn", {"analytics": True, "notifications": True, "experimental_features": False}),
}


@pytest.fixture(scope="module")
def example() -> ReleaseConfig:
    return load_config(str(EXAMPLE_CONFIG), True, {})


def _value(config: object, dotted: str) -> object:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


@pytest.mark.parametrize(("key", "strategy"), NUMBERS, ids=[key for key, _ in NUMBERS])
def test_the_example_config_has_the_strategys_number(example: ReleaseConfig, key: str, strategy: object) -> None:
    assert _value(example, key) == strategy, f"{key} in {EXAMPLE_CONFIG} differs from the strategy's {strategy!r}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_environment_has_the_strategys_log_level_and_flags(example: ReleaseConfig, env: str) -> None:
    level, flags = ENVIRONMENTS[env]
    environment = example.environment(env)
    assert environment.log_level == level
    assert environment.features.model_dump() == flags
    assert environment.production == (env == "production")


def test_the_build_passes_the_public_api_url_and_checks_run_in_the_strategys_order(example: ReleaseConfig) -> None:
    assert "NEXT_PUBLIC_API_URL" in example.app.build_args
    assert list(example.app.checks) == ["test", "type-check", "lint"]  # then build, push, deploy
