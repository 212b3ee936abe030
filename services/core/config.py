"""release.toml: pydantic models, ${VAR} secret references, and config discovery.

Secrets (database and Redis URLs, webhook URLs, S3 keys) are `SecretStr`, so that
printing a model, an error or an audit record can never show them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.core import masking
from services.core.health_config import HealthConfig
from services.core.notify_config import NotifyConfig
from services.core.pitr_config import PitrConfig
from services.core.references import check_kube_name, check_name, check_repository

CONFIG_NAME = "release.toml"
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """Bad config: names the file, the key and what is wrong. Never carries a secret."""

    def __init__(self, path: Path | None, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        where = str(path) if path else "release.toml"
        lines = [f"{where}: {key}: {message}" for key, message in problems]
        super().__init__("\n".join(lines))


class UnknownEnvironment(ConfigError):
    def __init__(self, path: Path | None, name: str, known: list[str]) -> None:
        super().__init__(
            path,
            [(f"environments.{name}", f"unknown environment {name!r}; known: {', '.join(known)}")],
        )
        self.name = name


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _name(value: str) -> str:
    """Names that go into generated config (nginx upstream file, container names): [A-Za-z0-9._-] only."""
    return check_name(value, "name")


class AppConfig(Strict):
    name: str = Field(min_length=1)
    image: str = Field(min_length=1, description="image repository, without a tag")
    check_timeout_s: float = Field(1800, gt=0, description="each pipeline check (npm test ...) is stopped after this")
    context: str = "."
    dockerfile: str = "Dockerfile"
    target: str = "runner"
    build_args: dict[str, str] = {}
    health_path: str = "/api/health"
    port: int = Field(3000, ge=1, le=65535)
    checks: dict[str, list[str]] = Field(
        default_factory=dict, description="pipeline commands by name: test, type-check, lint"
    )

    @field_validator("health_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        if any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError("must not contain spaces or control characters")
        return value

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return _name(value)

    @field_validator("image")
    @classmethod
    def _repository(cls, value: str) -> str:
        return check_repository(value, "image")


class BuildConfig(Strict):
    """Where images are built and pushed. The image repository itself is app.image."""

    engine_url: str = "unix:///var/run/docker.sock"  # or ssh://user@host
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    max_context_mb: int = Field(500, ge=1, description="refuse a larger build context; suggest a .dockerignore")
    require_init: bool = Field(False, description="the image policy asks for an init process (tini)")
    log_dir: str = Field("build-logs", description="where each build's full log is saved")
    builder: Literal["buildkit", "classic"] = Field(
        "buildkit", description="buildkit through the docker CLI; classic (docker-py) when no CLI can")
    docker_cli: str = Field(
        "docker", min_length=1,
        description="the docker CLI for BuildKit builds: a path, or a name whose every match on PATH is asked")
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="BuildKit build secrets by id (`RUN --mount=type=secret,id=ID`), as ${VAR}")
    registry_cache: bool = Field(
        True, description="BuildKit: inline cache in the pushed image, and --cache-from the tags' previous push")

    @field_validator("secrets")
    @classmethod
    def _secret_ids(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
                raise ValueError(f"secret id {name!r} must be letters, digits, '.', '_' or '-'")
        return value


class FeatureFlags(Strict):
    analytics: bool = False
    notifications: bool = False
    experimental_features: bool = False


class NginxSplit(Strict):
    """The nginx on the Docker host that splits traffic between the stable and canary containers.

    The console writes `upstream_file` (an `upstream <upstream> { server ... weight=N; }` block
    that nginx includes) and runs `reload` (an argument list) on that host: locally, or through
    ssh for an ssh:// docker_url.
    """

    upstream_file: str = Field(min_length=1)
    upstream: str = Field("food_management", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    reload: list[str] = Field(default_factory=lambda: ["nginx", "-s", "reload"], min_length=1)


class DockerTarget(Strict):
    kind: Literal["docker"]
    docker_url: str = "unix:///var/run/docker.sock"
    service: str = Field("app", pattern=r"^[A-Za-z0-9._-]+$")  # part of the containers' names
    # "host": each container listens on its own host port (the app reads PORT); any other
    # network: the app's port is published on that host port.
    network: str = "host"
    ports: tuple[int, int] = (3100, 3199)  # the host ports the app's containers may use
    replicas: int = Field(1, ge=1)  # stable containers
    env: dict[str, str] = Field(default_factory=dict)  # extra, non-secret container environment
    ready_timeout_s: int = Field(120, ge=1)
    stop_timeout_s: int = Field(10, ge=0)
    drain_s: float = Field(2.0, ge=0)  # after a switch, before the old container stops
    nginx: NginxSplit

    @model_validator(mode="after")
    def _ports_in_order(self) -> DockerTarget:
        low, high = self.ports
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"ports must be [low, high] within 1..65535, got {list(self.ports)}")
        return self


class KubernetesTarget(Strict):
    kind: Literal["kubernetes"]
    namespace: str = Field(min_length=1)
    context: str | None = None  # a kubeconfig context; the current one when unset
    api_url: str | None = None  # without a kubeconfig: the API server's URL (with `token`)
    token: SecretStr | None = None
    traffic_split: Literal["ingress-nginx", "gateway-api"] = "ingress-nginx"
    host: str = ""  # the Ingress host / HTTPRoute hostname
    gateway: str = "food-management-gateway"  # the HTTPRoute's parent Gateway
    ready_timeout_s: int = Field(300, ge=1)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return check_kube_name(value, "namespace", "label")

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str) -> str:
        return check_kube_name(value, "gateway", "subdomain")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:  # a host name, maybe a wildcard; no port, no IP address
        if value and not re.fullmatch(r"[0-9.]+", value):
            check_kube_name(value.removeprefix("*."), "host", "subdomain")
        elif value:
            raise ValueError(f"host {value!r} must be a DNS name, not an IP address")
        return value


class NoTarget(Strict):
    kind: Literal["none"] = "none"


DeployTarget = Annotated[DockerTarget | KubernetesTarget | NoTarget, Field(discriminator="kind")]


class ServiceCommands(Strict):
    """How to stop and start the app's services where no deploy target does it (argument lists)."""

    stop: list[str] = Field(min_length=1)
    start: list[str] = Field(min_length=1)


# The metrics a canary is judged on. Each is one number per series (canary, stable).
METRICS = ("error_rate", "p95_ms", "cpu_percent", "memory_percent", "requests_per_s")
SERIES = ("canary", "stable")

# PromQL per metric. $selector is replaced by the series' label matchers (see
# EnvironmentMetrics.selectors) and $window by MetricsConfig.window. Each query must return one
# value (aggregate with sum, avg, max ...). CPU and memory come from the app's own process
# metrics, which carry the same target labels (track="canary") as its request counters:
# cpu_percent is the average per instance in percent of one core; memory_percent is resident
# memory over the limit the app reports in its app_memory_limit_bytes gauge. For cAdvisor or
# kube-state-metrics queries, see "Canary metrics" in docs/operations.md.
DEFAULT_QUERIES = {
    "error_rate": 'sum(rate(http_requests_total{status=~"5..",$selector}[$window]))'
                  " / sum(rate(http_requests_total{$selector}[$window]))",
    "p95_ms": "1000 * histogram_quantile(0.95,"
              " sum by (le) (rate(http_request_duration_seconds_bucket{$selector}[$window])))",
    "cpu_percent": "100 * sum(rate(process_cpu_seconds_total{$selector}[$window]))"
                   " / count(process_cpu_seconds_total{$selector})",
    "memory_percent": "100 * sum(process_resident_memory_bytes{$selector})"
                      " / sum(app_memory_limit_bytes{$selector})",
    "requests_per_s": "sum(rate(http_requests_total{$selector}[$window]))",
}


class MetricsConfig(Strict):
    """How the canary's metrics are read, for the app (queries) rather than per environment."""

    queries: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_QUERIES))
    window: str = Field("1m", pattern=r"^[0-9]+[smh]$")
    timeout_s: float = Field(5.0, gt=0)  # per request to Prometheus or a /metrics endpoint
    min_samples: int = Field(10, ge=3)  # fewer per series and metric: "not enough data", promotion blocked
    misses_before_asking: int = Field(3, ge=1)  # checks in a row without fresh data, then ask the operator
    # The judge compares the latest this many samples per series (60: the strategy's 30 min of 30 s
    # checks). Bounded so that a long canary's check costs no more than a short one's: the
    # Hodges-Lehmann interval is quadratic in the samples.
    judge_samples: int = Field(60, ge=3)

    @field_validator("queries")
    @classmethod
    def _defaults_for_the_rest(cls, value: dict[str, str]) -> dict[str, str]:
        return {**DEFAULT_QUERIES, **_known_queries(value)}


    @model_validator(mode="after")
    def _judge_sees_enough(self) -> MetricsConfig:
        if self.judge_samples < self.min_samples:
            raise ValueError(f"judge_samples ({self.judge_samples}) is below min_samples ({self.min_samples}):"
                             " the judge would never have enough data; raise judge_samples")
        return self


def _known_queries(value: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(value) - set(METRICS))
    if unknown:  # a misspelt name would silently leave the default query in place
        raise ValueError(f"unknown metric {', '.join(map(repr, unknown))}; known: {', '.join(METRICS)}")
    empty = sorted(name for name, query in value.items() if not query.strip())
    if empty:
        raise ValueError(f"empty query for {', '.join(empty)}")
    return value


def _http_url(url: str) -> str:
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"must be an http:// or https:// URL, got {url.split('@')[-1]!r}")
    return url


_SCHEME = re.compile(r"^\s*([a-z][a-z0-9+.-]{0,30})://", re.I)
_KEYWORD_DSN = re.compile(r"^\s*[a-z_]+\s*=", re.I)


def _scheme_problem(value: SecretStr | None, schemes: tuple[str, ...], what: str,
                    keyword_dsn: bool) -> SecretStr | None:
    """A URL of another kind is refused naming only its scheme: the value itself may hold a password."""
    if value is None:
        return None
    text = value.get_secret_value()
    scheme = _SCHEME.match(text)
    if scheme and scheme.group(1).lower() in schemes:
        return value
    if keyword_dsn and not scheme and _KEYWORD_DSN.match(text):
        return value
    got = f"got a {scheme.group(1)}:// URL" if scheme else "got something else (value not shown)"
    dsn = " or a keyword DSN (host=... dbname=... user=...)" if keyword_dsn else ""
    raise ValueError(f"must be {what} ({', '.join(s + '://' for s in schemes)}){dsn}; {got}")


def _postgres_url(value: SecretStr | None) -> SecretStr | None:
    return _scheme_problem(value, ("postgres", "postgresql"), "a PostgreSQL URL, without a +driver", True)


class EnvironmentMetrics(Strict):
    """Where an environment's metrics come from: its Prometheus, else a scrape of the app's /metrics.

    `selectors` are PromQL label matchers without braces, one per series, e.g. 'track="canary"'.
    `queries` replace the app's `[metrics].queries` here only: an environment on another kind of
    target (cAdvisor on a Docker host, kube-state-metrics on Kubernetes) measures CPU differently.
    `scrape` lists, per series, the /metrics URLs to read directly when there is no Prometheus.
    """

    prometheus_url: str | None = None  # may carry a path prefix; user:password@ is never shown
    selectors: dict[str, str] = Field(
        default_factory=lambda: {"canary": 'track="canary"', "stable": 'track="stable"'})
    queries: dict[str, str] = Field(default_factory=dict)
    scrape: dict[str, list[str]] = Field(default_factory=dict)  # series -> /metrics URLs, without Prometheus

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value.rstrip("/"))

    @field_validator("selectors")
    @classmethod
    def _both_series(cls, value: dict[str, str]) -> dict[str, str]:
        if set(value) != set(SERIES):
            raise ValueError(f"define exactly the series {' and '.join(SERIES)}, got {', '.join(value) or 'none'}")
        for series, selector in value.items():
            if not selector.strip() or "{" in selector or "}" in selector:
                raise ValueError(f"{series}: label matchers without braces, e.g. track=\"{series}\"")
        return {series: selector.strip().rstrip(",") for series, selector in value.items()}

    @field_validator("queries")
    @classmethod
    def _known_metrics(cls, value: dict[str, str]) -> dict[str, str]:
        return _known_queries(value)

    @field_validator("scrape")
    @classmethod
    def _known_series(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(value) - set(SERIES))
        if unknown:
            raise ValueError(f"unknown series {', '.join(map(repr, unknown))}; use {' and '.join(SERIES)}")
        return {series: [_http_url(url) for url in urls] for series, urls in value.items()}


class EnvironmentConfig(Strict):
    api_url: str
    database_url: SecretStr
    redis_url: SecretStr
    log_level: Literal["debug", "info", "warn", "error"] = "info"
    production: bool = False
    features: FeatureFlags = FeatureFlags()
    target: DeployTarget = NoTarget()
    services: ServiceCommands | None = None
    app_dir: str | None = Field(None, description="where the app's files live on this host, for backup and restore")
    metrics: EnvironmentMetrics = EnvironmentMetrics()

    _database_url = field_validator("database_url")(_postgres_url)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr) -> SecretStr | None:
        return _scheme_problem(value, ("redis", "rediss"), "a Redis URL", False)


RULES = ("error_rate", "p95_ms", "cpu_percent", "memory_percent", "traffic_share", "judge")
Automation = Literal["observe", "ask", "act"]
DEFAULT_AUTOMATION: dict[str, Automation] = {
    "error_rate": "act", "p95_ms": "act", "cpu_percent": "act", "memory_percent": "act",
    "traffic_share": "observe", "judge": "ask"}


_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h)?\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}


def duration_s(value: object) -> int:
    """A duration as release.toml and the CLI say it: "30s", "5m", "1h", or whole seconds; in seconds.
    Anything else is a ValueError that says what is expected."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"a duration is a whole number of seconds, minutes or hours, like \"30s\", \"5m\""
                             f" or \"1h\"; got {value!r}")
        seconds = int(match.group(1)) * _UNIT_S[match.group(2) or "s"]
    if seconds < 1:
        raise ValueError(f"a duration must be at least 1s, got {value!r}")
    return seconds


def shown_duration(seconds: int) -> str:
    """Seconds as the config says them: 300 -> "5m", 90 -> "90s", 3600 -> "1h"."""
    for unit in ("h", "m"):
        if seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"


class CanaryStep(Strict):
    """One step of a progressive canary: the canary takes `weight` percent, then holds it for `pause`
    while the rules check it every check_interval_s; it goes on only on a pass at the end of the pause."""

    weight: int = Field(ge=1, le=100)
    pause: Annotated[int, BeforeValidator(duration_s)] = Field(description="seconds; written \"30s\", \"5m\", \"1h\"")

    def describe(self) -> str:
        return f"{self.weight}% for {shown_duration(self.pause)}"


class CanaryPolicy(Strict):
    stable_replicas: int = Field(9, ge=1)
    canary_replicas: int = Field(1, ge=1)
    weight_percent: int = Field(10, ge=0, le=100)
    check_interval_s: int = Field(30, ge=1)
    duration_s: int = Field(1800, ge=1)
    error_rate_factor: float = Field(1.5, gt=1)
    p95_factor: float = Field(2.0, gt=1)
    cpu_scale_up_percent: float = Field(80, gt=0, le=100)
    memory_scale_up_percent: float = Field(85, gt=0, le=100)
    # Over a zero baseline 1.5x is zero: an error rate at or under this floor never trips the rule.
    error_rate_floor: float = Field(0.001, ge=0)
    scale_step: int = Field(1, ge=1)  # replicas added per scale-up
    scale_cooldown_checks: int = Field(5, ge=1)  # checks between two scale-ups
    traffic_share_tolerance: float = Field(5.0, gt=0)  # points between observed and configured weight
    # Per rule: observe (log the verdict), ask (prompt, with a countdown and a default), act.
    # Rules: error_rate, p95_ms, cpu_percent, memory_percent, traffic_share, judge.
    automation: dict[str, Automation] = Field(default_factory=lambda: dict(DEFAULT_AUTOMATION))
    ask_timeout_s: int = Field(60, ge=1)  # how long an "ask" waits before its default
    ask_default: Literal["act", "skip"] = "act"  # what an unanswered "ask" does
    # A progressive canary: each step's weight and pause, in order; promoted after the last.
    # Empty: the strategy's single step, weight_percent for duration_s.
    steps: list[CanaryStep] = Field(default_factory=list)

    @property
    def ladder(self) -> list[CanaryStep]:
        """The steps the canary runs through: the configured ones, else weight_percent for duration_s."""
        return self.steps or [CanaryStep(weight=max(1, self.weight_percent), pause=self.duration_s)]

    @field_validator("steps")
    @classmethod
    def _steps_climb(cls, value: list[CanaryStep]) -> list[CanaryStep]:
        check_ladder([step.weight for step in value])
        return value

    @field_validator("automation")
    @classmethod
    def _known_rules(cls, value: dict[str, Automation]) -> dict[str, Automation]:
        unknown = set(value) - set(RULES)
        if unknown:
            raise ValueError(f"unknown automation rule(s) {sorted(unknown)}; known: {', '.join(RULES)}")
        return {**DEFAULT_AUTOMATION, **value}

    @model_validator(mode="after")
    def _interval_fits(self) -> CanaryPolicy:
        if self.check_interval_s > self.duration_s:
            raise ValueError("check_interval_s must not exceed duration_s")
        for number, step in enumerate(self.steps, 1):
            if step.pause < self.check_interval_s:
                raise ValueError(f"steps: step {number} ({step.weight}%) pauses {shown_duration(step.pause)}, less than"
                                 f" check_interval_s ({self.check_interval_s}s): it would never be checked")
        return self


class MonitorPolicy(Strict):
    """The post-deploy monitor: after every deploy, release, pipeline deploy and rollback, the new version
    is checked against the previous one's baseline (taken just before the switch) by the canary's rules.

    `after_deploy`: act (roll back, scale up), ask (a question with the canary's countdown and default),
    observe (log what it would do) or off (no monitor). The interval and the window default to the
    canary's ([canary] check_interval_s and duration_s: the strategy's 30 s for 30 min).
    """

    after_deploy: Literal["act", "ask", "observe", "off"] = "act"
    check_interval_s: int | None = Field(None, ge=1)
    duration_s: int | None = Field(None, ge=1)


def check_ladder(weights: list[int]) -> None:
    """Canary step weights: each 1-100, strictly increasing. A ValueError says which one is wrong."""
    for number, weight in enumerate(weights, 1):
        if not 1 <= weight <= 100:
            raise ValueError(f"step {number}: a weight is a percentage 1-100, got {weight}")
        if number > 1 and weight <= weights[number - 2]:
            raise ValueError(f"step {number}: weights must increase strictly, got {weights[number - 2]} then {weight}")


class S3Store(Strict):
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = "backups/"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    server_side_encryption: Literal["AES256", "aws:kms"] | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None


class BackupPolicy(Strict):
    local_dir: str = "/var/backups/food-management"
    retention_days: int = Field(30, ge=1)
    keep_newest: int = Field(3, ge=1)
    prune_after: bool = Field(True, description="after each backup, delete the backups past retention_days from"
                              " its store, as `backup prune` does (pinned and the newest keep_newest are kept)")
    compression: Literal["zstd", "gzip"] = "zstd"
    s3: S3Store | None = None
    app_paths: list[str] = ["."]
    excludes: list[str] = ["node_modules", ".next", ".git"]
    scratch_database_url: SecretStr | None = Field(
        None, description="server for trial restores and drills (default: the environment's own server)")
    signing_key: SecretStr | None = Field(
        None, description="HMAC-SHA256 key that signs each backup's manifest; restores check it (a ${VAR})")
    lock_wait_timeout_s: float = Field(60, gt=0, description="pg_dump --lock-wait-timeout: how long it waits for"
                                       " a table lock before failing, rather than queueing behind a migration")
    dump_timeout_s: float = Field(6 * 3600, gt=0, description="pg_dump is stopped after this long")
    restore_timeout_s: float = Field(6 * 3600, gt=0, description="pg_restore or psql is stopped after this long")
    pitr: PitrConfig | None = Field(None, description="point-in-time recovery through pgBackRest (pitr_config.py)")

    _scratch_database_url = field_validator("scratch_database_url")(_postgres_url)


class RecoveryPolicy(Strict):
    health_tries: int = Field(30, ge=1)
    health_interval_s: float = Field(10, gt=0)


MigrationBackup = Literal["dump", "pitr"]


class MigrationsConfig(Strict):
    dir: str = "prisma/migrations"
    backup: MigrationBackup | dict[str, MigrationBackup] = Field(
        "dump", description='what `migrate` takes before applying: "dump" (pg_dump) or "pitr" (a pgBackRest backup,'
                            ' [backup.pitr]); one word for every environment, or a table per environment'
                            ' ({ production = "pitr" }, the rest "dump")')
    integrity_tables: list[str] = ["Ingredient", "Category", "User"]
    reindex_tables: list[str] = ["Ingredient", "Category", "User"]
    lock_wait_s: float = Field(30, gt=0, description="how long to wait for Prisma's migration lock")
    lint_blocking_mb: float = Field(
        10, ge=0, description="a lint finding that locks a table for a scan, rewrite or index build stays "
                              "blocking from this size on (MB, indexes and TOAST included); below it, a warning")


class DatabaseConfig(Strict):
    """Bounds on every query the console runs: no query or lock wait hangs an operation.

    Work that legitimately runs long (a Prisma migration's SQL, REINDEX) has its own bound.
    """

    statement_timeout_s: float = Field(30, gt=0)
    lock_timeout_s: float = Field(5, gt=0)
    connect_timeout_s: int = Field(5, ge=1)
    migration_statement_timeout_s: float = Field(3600, gt=0, description="a migration's SQL, REINDEX, ANALYZE")
    migration_lock_timeout_s: float = Field(30, gt=0, description="the locks a migration's SQL waits for")


class AuditConfig(Strict):
    key: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of the audit chain, as ${VAR}: kept outside the state dir")

    @field_validator("key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the audit key must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value


class StateConfig(Strict):
    database_url: SecretStr | None = Field(
        None, description="PostgreSQL database for the shared audit trail (default: each environment's own)")
    _database_url = field_validator("database_url")(_postgres_url)


class DevConfig(Strict):
    """The development environment's compose stack (app, postgres, redis, prisma-studio)."""

    compose_file: str = Field("docker-compose.yml", min_length=1, description="relative to release.toml")
    project: str = Field("food-management", pattern=r"^[a-z0-9][a-z0-9_-]*$",
                         description="the compose project name (its containers' com.docker.compose.project label)")
    environment: str = Field("development", description="the environment the stack is, for the audit trail")
    studio_url: str = Field("http://localhost:5555", description="prisma-studio, as the browser opens it")
    engine_url: str = Field("unix:///var/run/docker.sock", description="the Docker engine the stack runs on")
    timeout_s: float = Field(600, gt=0, description="each compose command (up, down, restart) is stopped after this")
    _studio_url = field_validator("studio_url")(_http_url)


class ReleaseConfig(Strict):
    app: AppConfig
    environments: dict[str, EnvironmentConfig]
    canary: CanaryPolicy = CanaryPolicy()
    monitor: MonitorPolicy = MonitorPolicy()
    metrics: MetricsConfig = MetricsConfig()
    backup: BackupPolicy = BackupPolicy()
    recovery: RecoveryPolicy = RecoveryPolicy()
    build: BuildConfig = BuildConfig()
    migrations: MigrationsConfig = MigrationsConfig()
    notify: NotifyConfig = NotifyConfig()
    health: HealthConfig = HealthConfig()
    database: DatabaseConfig = DatabaseConfig()
    audit: AuditConfig = AuditConfig()
    state: StateConfig = StateConfig()
    dev: DevConfig | None = None
    keys: dict[str, str] = Field(
        default_factory=dict, description='the TUI keymap: binding id -> key(s), e.g. "action.release" = "ctrl+r"')
    source: Path | None = Field(None, exclude=True)

    @field_validator("keys", mode="before")
    @classmethod
    def _flat_keys(cls, value: Any) -> Any:
        return flatten_keys(value) if isinstance(value, dict) else value

    @field_validator("environments")
    @classmethod
    def _some_environment(cls, value: dict[str, EnvironmentConfig], info: ValidationInfo
                          ) -> dict[str, EnvironmentConfig]:
        if not value:
            raise ValueError("define at least one environment")
        for name in value:
            check_name(name, "environment name")
        app = info.data.get("app")
        on_kubernetes = [name for name, env in value.items() if isinstance(env.target, KubernetesTarget)]
        if app is not None and on_kubernetes:  # its Services are N-app and N-canary: DNS-1035 labels
            check_kube_name(app.name, f"app.name (which names the Kubernetes objects of {on_kubernetes[0]})",
                            "dns1035", 63 - len("-canary"))
        return value

    @model_validator(mode="after")
    def _monitor_interval_fits(self) -> ReleaseConfig:
        if self.monitor_policy().check_interval_s > self.monitor_policy().duration_s:
            raise ValueError("[monitor] check_interval_s must not exceed duration_s (each defaults to [canary]'s)")
        return self

    @model_validator(mode="after")
    def _dev_environment_known(self) -> ReleaseConfig:
        if self.dev is not None and self.dev.environment not in self.environments:
            raise ValueError(f"[dev] environment {self.dev.environment!r} is not one of [environments]: "
                             f"{', '.join(self.environments)}")
        return self

    @model_validator(mode="after")
    def _pitr_environment_known(self) -> ReleaseConfig:
        pitr = self.backup.pitr
        if pitr is not None and pitr.environment not in self.environments:
            raise ValueError(f"[backup.pitr] environment {pitr.environment!r} is not one of [environments]: "
                             f"{', '.join(self.environments)}")
        return self

    @model_validator(mode="after")
    def _pitr_backup_has_pitr(self) -> ReleaseConfig:
        """`backup = "pitr"` for an environment [backup.pitr] does not cover would find out mid-deploy."""
        chosen = self.migrations.backup
        unknown = sorted(set(chosen) - set(self.environments)) if isinstance(chosen, dict) else []
        if unknown:
            raise ValueError(f"[migrations] backup names {', '.join(unknown)}, not in [environments]: "
                             f"{', '.join(self.environments)}")
        wanting = [env for env in self.environments if self.migration_backup(env) == "pitr"]
        covered = self.backup.pitr.environment if self.backup.pitr else None
        strays = [env for env in wanting if env != covered]
        if strays:
            whose = f"it covers {covered} only" if covered else "there is no [backup.pitr] section"
            fix = (f'write backup = {{ {covered} = "pitr" }} (the others keep "dump")' if covered else
                   'add a [backup.pitr] section (docs/operations.md, "A dump or PITR"), or set backup = "dump"')
            raise ValueError(f'[migrations] backup = "pitr" needs [backup.pitr] for {", ".join(strays)}, but {whose}:'
                             f" {fix}")
        return self

    def migration_backup(self, env: str) -> MigrationBackup:
        """What `migrate` takes first in `env`: "dump" or "pitr" (validated against [backup.pitr] at load)."""
        chosen = self.migrations.backup
        return chosen.get(env, "dump") if isinstance(chosen, dict) else chosen

    def monitor_policy(self) -> CanaryPolicy:
        """The canary's rules with the post-deploy monitor's interval, window and mode: every rule in
        [monitor] after_deploy's mode ("off": observe, though no monitor runs then)."""
        mode = self.monitor.after_deploy
        return self.canary.model_copy(update={
            "check_interval_s": self.monitor.check_interval_s or self.canary.check_interval_s,
            "duration_s": self.monitor.duration_s or self.canary.duration_s,
            "automation": dict.fromkeys(RULES, "observe" if mode == "off" else mode)})

    def environment(self, name: str) -> EnvironmentConfig:
        """The named environment; an unknown name is an error, never a fallback."""
        try:
            return self.environments[name]
        except KeyError:
            raise UnknownEnvironment(self.source, name, list(self.environments)) from None

    def health_url(self, env: str) -> str:
        """The app's health endpoint in an environment: its api_url's origin plus app.health_path."""
        parts = urlsplit(self.environment(env).api_url)
        return f"{parts.scheme}://{parts.netloc}{self.app.health_path}"


def flatten_keys(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A keymap table as binding id -> key. TOML reads `action.release = "x"` as a nested table,
    so nested tables are joined with dots: quoted and bare dotted ids mean the same."""
    flat: dict[str, str] = {}
    for name, value in table.items():
        if isinstance(value, Mapping):
            flat.update(flatten_keys(value, f"{prefix}{name}."))
        elif isinstance(value, str):
            flat[f"{prefix}{name}"] = value
        else:
            raise ValueError(f'{prefix}{name}: a key must be a string such as "ctrl+r", not {type(value).__name__}')
    return flat


def locate(explicit: str | os.PathLike[str] | None, env: Mapping[str, str] = os.environ) -> Path:
    """--config, then ./release.toml, then $XDG_CONFIG_HOME/release-console/release.toml."""
    candidates = [Path(explicit)] if explicit else [Path.cwd() / CONFIG_NAME, xdg_config_path(env)]
    for path in candidates:
        if path.is_file():
            return path
    searched = ", ".join(str(p) for p in candidates)
    raise ConfigError(None, [("config", f"no config file found (looked at {searched}); pass --config")])


def xdg_config_path(env: Mapping[str, str] = os.environ) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "release-console" / CONFIG_NAME


def load(path: Path, env: Mapping[str, str] = os.environ) -> ReleaseConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(path, [("file", f"cannot read: {err.strerror}")]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, [("syntax", str(err))]) from None
    return parse(raw, env, path)


def parse(raw: dict[str, Any], env: Mapping[str, str], path: Path | None = None) -> ReleaseConfig:
    problems: list[tuple[str, str]] = []
    resolved = _resolve_references(raw, env, (), problems)  # registers each value with masking
    if problems:
        raise ConfigError(path, problems)
    try:
        config = ReleaseConfig.model_validate(resolved)
    except ValidationError as err:
        # Format ourselves: pydantic's text echoes the input value, which may be a secret.
        raise ConfigError(
            path, [(".".join(str(p) for p in e["loc"]) or "config", e["msg"]) for e in err.errors()]
        ) from None
    masking.register_config(config)  # SecretStr values written in the file itself
    return config.model_copy(update={"source": path})


def _resolve_references(
    node: Any, env: Mapping[str, str], key: tuple[str, ...], problems: list[tuple[str, str]]
) -> Any:
    if isinstance(node, dict):
        return {k: _resolve_references(v, env, (*key, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_references(v, env, (*key, str(i)), problems) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            problems.append((".".join(key), f"${{{name}}} is not set in the environment"))
            return ""
        masking.register([env[name]])  # masked in every output from now on, whatever field it lands in
        return env[name]

    return _REFERENCE.sub(substitute, node)


def references(path: Path) -> dict[str, list[str]]:
    """Which ${VAR} each key refers to, for `config check` to show beside the masked value."""
    found: dict[str, list[str]] = {}

    def walk(node: Any, key: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*key, k))
        elif isinstance(node, list):  # [[notify.routes]]: notify.routes.0.url
            for i, v in enumerate(node):
                walk(v, (*key, str(i)))
        elif isinstance(node, str) and (names := _REFERENCE.findall(node)):
            found[".".join(key)] = names

    walk(tomllib.loads(path.read_text(encoding="utf-8")), ())
    return found
