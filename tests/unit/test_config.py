"""release.toml: the example's strategy values, every kind of bad input, secrets, discovery."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from services.core import config
from services.core.config import ConfigError, UnknownEnvironment

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "food-management" / "release.toml"
SECRET = "s3cr3t-Pa55w0rd"
ENV = {
    "DEV_DATABASE_URL": "postgresql://dev:devpass@localhost:5432/food",
    "DEV_REDIS_URL": "redis://localhost:6379/0",
    "STAGING_DATABASE_URL": "postgresql://stage:stagepass@staging-db:5432/food",
    "STAGING_REDIS_URL": "redis://staging-redis:6379/0",
    "DATABASE_URL": f"postgresql://app:{SECRET}@prod-db:5432/food",
    "REDIS_URL": f"redis://:{SECRET}@prod-redis:6379/0",
    "SLACK_WEBHOOK_URL": f"https://hooks.slack.example.com/services/{SECRET}",
    "BACKUP_SIGNING_KEY": f"signing-{SECRET}",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "release.toml"
    path.write_text(text, encoding="utf-8")
    return path


def example_with(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert old in text, f"the example no longer contains {old!r}"
    return write(tmp_path, text.replace(old, new, 1))


def load_error(path: Path, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        config.load(path, ENV if env is None else env)
    return caught.value


# --- the example carries the strategy ---------------------------------------------------------


def test_example_loads_with_strategy_values() -> None:
    cfg = config.load(EXAMPLE, ENV)
    assert cfg.source == EXAMPLE
    assert set(cfg.environments) == {"development", "staging", "production"}

    canary = cfg.canary
    assert (canary.stable_replicas, canary.canary_replicas) == (9, 1)
    assert canary.weight_percent == 10
    assert canary.check_interval_s == 30
    assert canary.duration_s == 1800
    assert canary.error_rate_factor == 1.5
    assert canary.p95_factor == 2.0
    assert canary.cpu_scale_up_percent == 80
    assert canary.memory_scale_up_percent == 85

    assert cfg.backup.retention_days == 30
    assert cfg.backup.excludes == ["node_modules", ".next", ".git"]
    assert cfg.backup.s3 is not None and cfg.backup.s3.bucket == "food-management-backups"
    assert cfg.migrations.integrity_tables == ["Ingredient", "Category", "User"]
    assert cfg.app.build_args["NEXT_PUBLIC_API_URL"] == "https://api.food-management.example.com"
    assert cfg.app.health_path == "/api/health"

    prod = cfg.environment("production")
    assert prod.production is True
    assert prod.target.kind == "kubernetes"
    assert prod.database_url.get_secret_value() == ENV["DATABASE_URL"]
    assert cfg.environment("staging").production is False


def test_unknown_environment_is_an_error_never_a_fallback() -> None:
    cfg = config.load(EXAMPLE, ENV)
    with pytest.raises(UnknownEnvironment) as caught:
        cfg.environment("prod")
    message = str(caught.value)
    assert "'prod'" in message
    assert "production" in message  # the known names are listed
    assert str(EXAMPLE) in message
    assert isinstance(caught.value, ConfigError)


# --- each kind of bad input names the file and the key -----------------------------------------


def assert_names(err: ConfigError, path: Path, key: str) -> None:
    message = str(err)
    assert str(path) in message, message
    assert key in message, message
    assert any(k == key for k, _ in err.problems), err.problems


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = example_with(tmp_path, 'name = "food-management"', 'name = "food-management')
    err = load_error(path)
    assert_names(err, path, "syntax")
    line = EXAMPLE.read_text(encoding="utf-8").splitlines().index('name = "food-management"') + 1
    assert f"line {line}" in str(err)


def test_unknown_key_is_forbidden(tmp_path: Path) -> None:
    path = example_with(tmp_path, "weight_percent = 10", "weight_percent = 10\nweigth = 5")
    assert_names(load_error(path), path, "canary.weigth")


def test_wrong_type(tmp_path: Path) -> None:
    path = example_with(tmp_path, "port = 3000", 'port = "three thousand"')
    assert_names(load_error(path), path, "app.port")


def test_out_of_range_weight(tmp_path: Path) -> None:
    path = example_with(tmp_path, "weight_percent = 10", "weight_percent = 150")
    err = load_error(path)
    assert_names(err, path, "canary.weight_percent")
    assert "100" in str(err)


def test_missing_required_section(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index("[app]")
    end = text.index("[environments.development]")
    path = write(tmp_path, text[:start] + text[end:])
    err = load_error(path)
    assert_names(err, path, "app")
    assert "required" in str(err).lower()


def test_no_environments(tmp_path: Path) -> None:
    path = write(tmp_path, '[app]\nname = "x"\nimage = "x"\n[environments]\n')
    assert_names(load_error(path), path, "environments")


def test_unset_reference_names_key_and_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if k != "STAGING_REDIS_URL"}
    err = load_error(EXAMPLE, env)
    assert_names(err, EXAMPLE, "environments.staging.redis_url")
    assert "${STAGING_REDIS_URL}" in str(err)


def test_bad_bucket_name(tmp_path: Path) -> None:
    path = example_with(tmp_path, 'bucket = "food-management-backups"', 'bucket = "Food_Management_Backups"')
    assert_names(load_error(path), path, "backup.s3.bucket")


def test_bad_health_path(tmp_path: Path) -> None:
    path = example_with(tmp_path, 'health_path = "/api/health"', 'health_path = "api/health"')
    err = load_error(path)
    assert_names(err, path, "app.health_path")
    assert "must start with '/'" in str(err)


def test_check_interval_longer_than_duration(tmp_path: Path) -> None:
    path = example_with(tmp_path, "check_interval_s = 30", "check_interval_s = 3600")
    err = load_error(path)
    assert_names(err, path, "canary")
    assert "check_interval_s must not exceed duration_s" in str(err)


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert_names(load_error(missing), missing, "file")


# --- secrets never show ----------------------------------------------------------------------


def test_secrets_masked_in_str_repr_and_json() -> None:
    cfg = config.load(EXAMPLE, ENV)
    for text in (str(cfg), repr(cfg), cfg.model_dump_json(), str(cfg.environment("production")),
                 repr(cfg.environment("production")), str(cfg.model_dump())):
        assert SECRET not in text
        assert "devpass" not in text
    assert "**********" in cfg.model_dump_json()


def test_secrets_absent_from_errors_on_another_key(tmp_path: Path) -> None:
    path = example_with(tmp_path, "weight_percent = 10", "weight_percent = 150")
    err = load_error(path)
    assert "canary.weight_percent" in str(err)
    assert SECRET not in str(err) and SECRET not in repr(err)
    assert all(SECRET not in k and SECRET not in m for k, m in err.problems)


def test_secret_field_with_wrong_type_does_not_echo_value(tmp_path: Path) -> None:
    path = example_with(tmp_path, 'database_url = "${DATABASE_URL}"', "database_url = 987654321987")
    err = load_error(path)
    assert_names(err, path, "environments.production.database_url")
    assert "987654321987" not in str(err)


def test_secret_in_unknown_key_does_not_echo_value(tmp_path: Path) -> None:
    path = example_with(tmp_path, 'channel = "#deployments"', 'channel = "#deployments"\npassword = "${DATABASE_URL}"')
    err = load_error(path)
    assert_names(err, path, "notify.password")
    assert SECRET not in str(err)


@pytest.mark.parametrize(("key", "value"), [
    ("environments.production.database_url", f"postgresql+psycopg2://app:{SECRET}@db/food"),
    ("environments.production.database_url", f"mysql://app:{SECRET}@db/food"),
    ("environments.production.database_url", f"{SECRET}"),
    ("environments.production.redis_url", f"postgresql://:{SECRET}@cache/0"),
    ("environments.production.redis_url", f"memcached://:{SECRET}@cache"),
    ("backup.scratch_database_url", f"sqlite:///{SECRET}.db"),
])
def test_database_urls_must_be_postgresql_and_redis_urls_redis(tmp_path: Path, key: str, value: str) -> None:
    env = {**ENV, "DATABASE_URL": value} if key.endswith("database_url") and "production" in key else dict(ENV)
    if key.endswith("redis_url"):
        env["REDIS_URL"] = value
    path = EXAMPLE
    if key.startswith("backup."):
        path = example_with(tmp_path, "[backup]", '[backup]\nscratch_database_url = "${SCRATCH}"')
        env["SCRATCH"] = value
    err = load_error(path, env)
    assert_names(err, path, key)
    assert SECRET not in str(err) and SECRET not in repr(err)


@pytest.mark.parametrize("value", [
    "postgres://app:pw@db/food", "postgresql://app:pw@db:5432/food?sslmode=require", "postgresql:///food",
    "host=db port=5432 dbname=food user=app password='a b'", "dbname=food",
])
def test_postgresql_urls_and_keyword_dsns_are_accepted(tmp_path: Path, value: str) -> None:
    path = example_with(tmp_path, "[backup]", '[backup]\nscratch_database_url = "${SCRATCH}"')
    cfg = config.load(path, {**ENV, "DATABASE_URL": value, "SCRATCH": value, "REDIS_URL": "rediss://:x@cache:6380"})
    assert cfg.environment("production").database_url.get_secret_value() == value


def test_parse_matches_load() -> None:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    cfg = config.parse(raw, ENV)
    assert cfg.canary == config.load(EXAMPLE, ENV).canary


# --- discovery --------------------------------------------------------------------------------


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    work = tmp_path / "work"
    xdg = tmp_path / "xdg"
    work.mkdir()
    (xdg / "release-console").mkdir(parents=True)
    monkeypatch.chdir(work)
    return {
        "explicit": tmp_path / "explicit.toml",
        "cwd": work / "release.toml",
        "xdg": xdg / "release-console" / "release.toml",
        "xdg_home": xdg,
    }


def test_locate_prefers_explicit(places: dict[str, Path]) -> None:
    for name in ("explicit", "cwd", "xdg"):
        places[name].write_text("")
    env = {"XDG_CONFIG_HOME": str(places["xdg_home"])}
    assert config.locate(str(places["explicit"]), env) == places["explicit"]
    assert config.locate(None, env) == places["cwd"]
    places["cwd"].unlink()
    assert config.locate(None, env) == places["xdg"]


def test_locate_explicit_missing_does_not_fall_back(places: dict[str, Path]) -> None:
    places["cwd"].write_text("")
    with pytest.raises(ConfigError) as caught:
        config.locate(str(places["explicit"]), {"XDG_CONFIG_HOME": str(places["xdg_home"])})
    assert str(places["explicit"]) in str(caught.value)


def test_locate_nothing_found(places: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as caught:
        config.locate(None, {"XDG_CONFIG_HOME": str(places["xdg_home"])})
    message = str(caught.value)
    assert str(places["cwd"]) in message and str(places["xdg"]) in message
    assert "--config" in message


@pytest.mark.parametrize(("old", "new", "key", "said"), [
    ('name = "food-management"', 'name = "Food_Management"', "environments",
     "app.name (which names the Kubernetes objects of production) 'Food_Management' is not a name Kubernetes "
     "accepts: lower case letters, digits and '-', starting with a letter and ending with a letter or digit, "
     "at most 56 characters"),
    ('namespace = "food-management"', 'namespace = "food.management"', "environments.production.target.kubernetes"
     ".namespace", "namespace 'food.management' is not a name Kubernetes accepts"),
    ('host = "food-management.example.com"', 'host = "Food.example.com:443"',
     "environments.production.target.kubernetes.host", "host 'Food.example.com:443' is not a name Kubernetes"),
    ('host = "food-management.example.com"', 'host = "10.0.0.1"',
     "environments.production.target.kubernetes.host", "must be a DNS name, not an IP address"),
])
def test_kubernetes_names_are_checked_as_the_api_server_would(tmp_path: Path, old: str, new: str, key: str,
                                                              said: str) -> None:
    """A real API server refuses these names (422) in the middle of a deploy; the config refuses them first."""
    path = example_with(tmp_path, old, new)
    err = load_error(path)
    assert_names(err, path, key)
    assert said in str(err)


def test_a_wildcard_host_is_a_kubernetes_name(tmp_path: Path) -> None:
    path = example_with(tmp_path, 'host = "food-management.example.com"', 'host = "*.example.com"')
    target = config.load(path, ENV).environment("production").target
    assert isinstance(target, config.KubernetesTarget) and target.host == "*.example.com"
