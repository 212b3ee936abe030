"""The one factory that builds the service layer, shared by the CLI, the TUI and the tests."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from pydantic import SecretStr

from services import config as config_module
from services.audit import AuditLog
from services.config import ReleaseConfig
from services.journal import Journal, state_dir
from services.locks import FileLocks, LockInfo, OnTakeover, ReleaseLocks
from services.operations import Runner, StepFailed
from services.ports import (
    AppFiles,
    CommandRunner,
    DeployTarget,
    HealthChecker,
    ImageBuilder,
    MetricsSource,
    MigrationDatabase,
    Notification,
    Notifier,
    ObjectStore,
    OnLine,
    Registry,
    RevisionLog,
    SchemaChanges,
    TargetStatus,
)
from services.private import private_dir
from services.sandbox import adapters as sandbox
from services.sandbox.expand import SandboxSchemaChanges
from services.sandbox.world import World

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "food-management" / "release.toml"
T = TypeVar("T")


class Refusing:
    """Any method it does not define fails with the same clear StepFailed."""

    def __init__(self, message: str, next_options: tuple[str, ...]) -> None:
        self._refusal = (message, next_options)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise StepFailed(*self._refusal)

        return refuse


class NoDeployTarget(Refusing):
    """An environment whose config names no deploy target: says so, and refuses to deploy.

    Its services can still be stopped and started (for a restore) by the commands of
    `[environments.X.services]`, when they are configured.
    """

    def __init__(self, env: str, services: ServiceControl | None = None) -> None:
        super().__init__(f"no deploy target configured for {env}",
                         (f"set [environments.{env}.target] in release.toml",))
        self.env = env
        self._services = services

    def status(self) -> TargetStatus:
        return TargetStatus("-", 0, 0, events=("no deploy target configured",))

    def stop(self, on_line: OnLine) -> None:
        self._control("stop").stop(on_line)

    def start(self, on_line: OnLine) -> None:
        self._control("start").start(on_line)

    def _control(self, verb: str) -> ServiceControl:
        if self._services is None:
            raise StepFailed(
                f"cannot {verb} {self.env}'s services: it has no deploy target and no service commands",
                (f"set [environments.{self.env}.services] stop = [...] and start = [...] in release.toml"
                 " (argument lists)", f"or set [environments.{self.env}.target]",
                 f"or {verb} them by hand, then retry this step"))
        return self._services


class ServiceControl(Protocol):
    def stop(self, on_line: OnLine) -> None: ...
    def start(self, on_line: OnLine) -> None: ...


class LogNotifier:
    """Used when no webhook is configured: the notice still reaches the audit trail via the step log."""

    def notify(self, message: Notification) -> None:
        return None


class RoutedLocks:
    """One PostgreSQL lock table per environment: the lock lives in that environment's database."""

    def __init__(self, config: ReleaseConfig) -> None:
        self._config = config
        self._by_env: dict[str, ReleaseLocks] = {}

    def _for(self, env: str) -> ReleaseLocks:
        from services.adapters.postgres_locks import PostgresLocks

        if env not in self._by_env:
            dsn = self._config.environment(env).database_url.get_secret_value()
            self._by_env[env] = PostgresLocks(dsn)
        return self._by_env[env]

    def acquire(self, env: str, reason: str, on_takeover: OnTakeover | None = None) -> LockInfo:
        return self._for(env).acquire(env, reason, on_takeover)

    def release(self, env: str) -> None:
        self._for(env).release(env)

    def holder(self, env: str) -> LockInfo | None:
        return self._for(env).holder(env)

    def force_release(self, env: str, held: LockInfo) -> bool:
        return self._for(env).force_release(env, held)


@dataclass
class Services:
    config: ReleaseConfig
    journal: Journal
    audit: AuditLog
    locks: ReleaseLocks
    builder: ImageBuilder
    registry: Registry
    commands: CommandRunner
    store: ObjectStore
    app_files: AppFiles
    notifier: Notifier
    time_scale: float = 1.0
    world: World | None = None
    _per_env: dict[str, Callable[[str], Any]] = field(default_factory=dict)
    # Other stores that hold backups too (the local directory when `store` is S3): listed,
    # restored from and pruned alongside the store new backups go to.
    other_stores: list[ObjectStore] = field(default_factory=list)

    @property
    def stores(self) -> list[ObjectStore]:
        return [self.store, *self.other_stores]

    @property
    def runner(self) -> Runner:
        return Runner(self.journal, self.audit, self.locks)

    @property
    def sandbox(self) -> bool:
        return self.world is not None

    def _adapter(self, kind: str, env: str) -> Any:
        self.config.environment(env)  # unknown environment: an error, never a fallback
        return self._per_env[kind](env)

    def target(self, env: str) -> DeployTarget:
        return self._adapter("target", env)  # type: ignore[no-any-return]

    def revisions(self, env: str) -> RevisionLog:
        return self._adapter("revisions", env)  # type: ignore[no-any-return]

    def metrics(self, env: str) -> MetricsSource:
        return self._adapter("metrics", env)  # type: ignore[no-any-return]

    def database(self, env: str) -> MigrationDatabase:
        return self._adapter("database", env)  # type: ignore[no-any-return]

    def health(self, env: str) -> HealthChecker:
        return self._adapter("health", env)  # type: ignore[no-any-return]

    def schema(self, env: str) -> SchemaChanges:
        return self._adapter("schema", env)  # type: ignore[no-any-return]

    def files(self, env: str) -> AppFiles:
        """The environment's app files (its app_dir); `app_files` where they are not per environment."""
        if "app_files" not in self._per_env:
            self.config.environment(env)
            return self.app_files
        return self._adapter("app_files", env)  # type: ignore[no-any-return]

    def real_seconds(self, simulated: float) -> float:
        """How long to really wait for a span of (possibly sandbox-accelerated) time."""
        return simulated / self.time_scale


def _real_target(config: ReleaseConfig, env: str) -> DeployTarget:
    settings = config.environment(env)
    if settings.target.kind == "docker":
        from services.adapters.docker_target import DockerHostTarget

        return DockerHostTarget(config, env)
    if settings.target.kind == "kubernetes":
        from services.adapters.kube_target import KubernetesDeployTarget

        return KubernetesDeployTarget(config, env)
    if settings.services is None:
        return NoDeployTarget(env)
    from services.adapters.service_commands import CommandServices

    return NoDeployTarget(env, CommandServices(settings.services.stop, settings.services.start))


def _app_files(config: ReleaseConfig, env: str | None, base: Path) -> AppFiles:
    """The environment's app files; without an environment (Services.app_files), none are configured."""
    from services.adapters.app_files import DirectoryAppFiles

    app_dir = config.environment(env).app_dir if env else None
    # Never archive the backups themselves, should the backup directory lie inside the app.
    return DirectoryAppFiles(base / app_dir if app_dir else None, config.backup.app_paths, env or "",
                             skip=[base / config.backup.local_dir])


class _OnFirstUse:
    """An adapter made when first used, so its library is imported only by a command that needs it."""

    def __init__(self, make: Callable[[], Any]) -> None:
        object.__setattr__(self, "_make", make)
        object.__setattr__(self, "_made", None)

    def _adapter(self) -> Any:
        if self._made is None:
            object.__setattr__(self, "_made", self._make())
        return self._made

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._adapter(), name, value)


def _docker_builder(engine_url: str, max_context_mb: int) -> ImageBuilder:
    def make() -> ImageBuilder:
        from services.adapters.docker_build import DockerBuilder

        return DockerBuilder(engine_url, max_context_mb)

    return cast(ImageBuilder, _OnFirstUse(make))


def _docker_registry(engine_url: str, username: str | None, password: SecretStr | None) -> Registry:
    def make() -> Registry:
        from services.adapters.docker_build import DockerRegistry

        return DockerRegistry(engine_url, username, password)

    return cast(Registry, _OnFirstUse(make))


def _webhook(url: SecretStr, channel: str) -> Notifier:
    def make() -> Notifier:
        from services.adapters.http import WebhookNotifier

        return WebhookNotifier(url, channel)

    return cast(Notifier, _OnFirstUse(make))


def _http_health() -> HealthChecker:
    from services.adapters.http import HttpHealth  # httpx: only when a health check runs

    return HttpHealth()


def _metrics(config: ReleaseConfig, env: str) -> MetricsSource:
    from services.adapters.metrics import metrics_source  # httpx: only when used

    return metrics_source(config, env)


def _postgres_revisions(config: ReleaseConfig, env: str) -> RevisionLog:
    from services.adapters.postgres_revisions import PostgresRevisions

    return PostgresRevisions(config.environment(env).database_url.get_secret_value(), env)


def _postgres_schema(config: ReleaseConfig, env: str) -> SchemaChanges:
    from services.migrations.schema_changes import PostgresSchemaChanges  # psycopg: only when used

    return PostgresSchemaChanges(config.environment(env).database_url.get_secret_value(),
                                 config.database.migration_statement_timeout_s)


def _sign_seeded_backups(world: World, config: ReleaseConfig) -> None:
    """The simulated world's backups are signed with the configured key, as the console signs its own."""
    from services.backups.trust import sign

    key = config.backup.signing_key
    if key is None:
        return
    for name, (data, when, meta) in list(world.objects.items()):
        if name.endswith("/manifest.json"):
            signed = sign(json.loads(data), key.get_secret_value())
            world.objects[name] = (json.dumps(signed).encode(), when, meta)


def load_config(path: str | None, sandbox_mode: bool, env: Mapping[str, str] = os.environ) -> ReleaseConfig:
    """Sandbox mode falls back to the example config and fills unset ${VAR}s with sandbox URLs."""
    if sandbox_mode:
        located = Path(path) if path else _first_existing(env) or EXAMPLE_CONFIG
        return config_module.load(located, _SandboxEnv(env))
    return config_module.load(config_module.locate(path, env), env)


def _first_existing(env: Mapping[str, str]) -> Path | None:
    for candidate in (Path.cwd() / config_module.CONFIG_NAME, config_module.xdg_config_path(env)):
        if candidate.is_file():
            return candidate
    return None


class _SandboxEnv(dict[str, str]):
    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        # Of the kind its field takes (database URLs must be PostgreSQL, Redis URLs Redis).
        kind = "redis" if "REDIS" in key.upper() else "postgresql" if "DATABASE" in key.upper() else "sandbox"
        return f"{kind}://sandbox/{key.lower()}"


def build(
    config: ReleaseConfig,
    *,
    sandbox_mode: bool = False,
    seed: int = 7,
    time_scale: float = 30.0,
    state: Path | None = None,
    origin: float | None = None,
) -> Services:
    """`origin` pins the sandbox clock's start, so a drill or a screenshot can be replayed exactly."""
    state = state or state_dir()
    private_dir(state, owned=True)
    journal = Journal(state / ("sandbox-journal.sqlite3" if sandbox_mode else "journal.sqlite3"))
    if sandbox_mode:  # the sandbox has no shared trail: its world is in this process only
        audit = AuditLog(state / "sandbox-audit.jsonl", config.audit.key)
        world = World(seed, time_scale, origin)
        _sign_seeded_backups(world, config)
        return Services(
            config, journal, audit, FileLocks(state / "sandbox-locks"),
            sandbox.SandboxBuilder(world), sandbox.SandboxRegistry(world), sandbox.SandboxCommands(world),
            sandbox.SandboxStore(world), sandbox.SandboxAppFiles(world), sandbox.SandboxNotifier(world),
            time_scale, world,
            {
                "target": lambda env: sandbox.SandboxTarget(world, env),
                "revisions": lambda env: sandbox.SandboxRevisions(world, env),
                "metrics": lambda env: sandbox.SandboxMetrics(world, env),
                "database": lambda env: sandbox.SandboxMigrations(world, env),
                "health": lambda env: sandbox.SandboxHealth(world, env),
                "schema": lambda env: SandboxSchemaChanges(world, env),
            },
        )
    # Imported here: psycopg costs start-up that the sandbox never needs. The docker SDK and httpx
    # (~0.3 s more) are imported only by the adapters that use them, when first used: a backup,
    # a restore or a status never does.
    from services.adapters import pg
    from services.adapters.commands import SubprocessCommands
    from services.adapters.local_store import LocalStore
    from services.adapters.postgres import DumpBounds, PostgresMigrations
    from services.adapters.postgres_audit import PostgresAuditTrail

    audit = AuditLog(state / "audit.jsonl", config.audit.key, PostgresAuditTrail(config))

    database = config.database
    pg.configure(pg.Bounds(database.statement_timeout_s, database.lock_timeout_s,
                           database.migration_statement_timeout_s, database.migration_lock_timeout_s))
    build = config.build
    policy = config.backup
    bounds = DumpBounds(policy.lock_wait_timeout_s, policy.dump_timeout_s, policy.restore_timeout_s)
    webhook = config.notify.webhook_url
    notifier: Notifier = _webhook(webhook, config.notify.channel) if webhook else LogNotifier()
    # Relative paths in release.toml are relative to the file, not to where the console runs.
    base = config.source.parent if config.source else Path.cwd()
    context = base / config.app.context
    migrations_dir = base / config.migrations.dir
    # New backups stream to S3 when it is configured; the local directory is still listed,
    # restored from and pruned. boto3 is imported only then.
    local = LocalStore(base / config.backup.local_dir)
    store: ObjectStore = local
    if config.backup.s3:
        from services.adapters.s3_store import S3Store

        store = S3Store(config.backup.s3)
    return Services(
        config, journal, audit, RoutedLocks(config),
        _docker_builder(build.engine_url, build.max_context_mb),
        _docker_registry(build.engine_url, build.registry_username, build.registry_password),
        SubprocessCommands(context, config.app.check_timeout_s), store,
        _app_files(config, None, base), notifier,
        1.0, None,
        {
            "target": lambda env: _real_target(config, env),
            "revisions": lambda env: _postgres_revisions(config, env),
            "metrics": lambda env: _metrics(config, env),
            "database": lambda env: PostgresMigrations(
                config.environment(env).database_url, migrations_dir, config.migrations.lock_wait_s,
                connect_timeout_s=database.connect_timeout_s, scratch_server=config.backup.scratch_database_url,
                bounds=bounds),
            "app_files": lambda env: _app_files(config, env, base),
            "health": lambda env: _http_health(),
            "schema": lambda env: _postgres_schema(config, env),
        },
        other_stores=[local] if store is not local else [],
    )
