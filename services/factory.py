"""The one factory that builds the service layer, shared by the CLI, the TUI and the tests."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import SecretStr

from services.core import config as config_module
from services.core.audit import AuditLog
from services.core.config import BuildConfig, ReleaseConfig
from services.core.container import EnvironmentAdapters, Services
from services.core.journal import Journal, state_dir
from services.core.locks import FileLocks, LockInfo, OnTakeover, ReleaseLocks
from services.core.no_target import NoDeployTarget
from services.core.notify import Dispatcher, Receiver, Retry, Route
from services.core.notify_config import PAGERDUTY_URL, NotifyRoute
from services.core.observe import AppObserver, NoObserver
from services.core.pitr_port import PitrEngine
from services.core.ports import (
    AppFiles,
    DependencyProbes,
    DeployTarget,
    DevStack,
    HealthChecker,
    ImageBuilder,
    MetricsSource,
    Notification,
    ObjectStore,
    Registry,
    RevisionLog,
    SchemaChanges,
)
from services.core.private import private_dir

if TYPE_CHECKING:  # the sandbox is imported by a sandbox run only: a real command never needs it
    from services.adapters.postgres_locks import PostgresLocks
    from services.sandbox.saved import KeptWorld
    from services.sandbox.world import World

# Package data, so `--sandbox` works from an installed wheel too (examples/food-management links to it).
# Wheels install unzipped, so it is a real file: relative paths in it resolve against its directory.
EXAMPLE_CONFIG = Path(str(resources.files("services.sandbox").joinpath("release.toml")))
T = TypeVar("T")


class _HttpReceiver:
    """A route's HTTP receiver, made on its first send (on the sender's thread: httpx is imported then)."""

    def __init__(self, route: NotifyRoute, timeout_s: float) -> None:
        self.name, self._route, self._timeout_s = route.name, route, timeout_s
        self._made: Receiver | None = None

    def send(self, message: Notification) -> None:
        if self._made is None:
            from services.adapters.notify_http import HttpReceiver

            route = self._route
            self._made = HttpReceiver(route.name, route.format, route.url or SecretStr(PAGERDUTY_URL),
                                      channel=route.channel, routing_key=route.routing_key, timeout_s=self._timeout_s)
        self._made.send(message)


def _notifier(config: ReleaseConfig, audit: AuditLog, receiver: Callable[[NotifyRoute], Receiver],
              sandbox_mode: bool = False) -> Dispatcher:
    """Every route of `[notify]`; the sandbox's send at once into its world, and each is audited."""
    settings = config.notify
    routes = [Route(receiver(route), route.takes) for route in settings.all_routes()]
    return Dispatcher(routes, audit, Retry(settings.attempts, settings.backoff_s, settings.flush_s),
                      inline=sandbox_mode, audit_sent=sandbox_mode)


class RoutedLocks:
    """One PostgreSQL lock table per environment: the lock lives in that environment's database."""

    def __init__(self, config: ReleaseConfig) -> None:
        self._config = config
        self._by_env: dict[str, PostgresLocks] = {}

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

    def close(self) -> None:
        made, self._by_env = list(self._by_env.values()), {}
        for locks in made:
            locks.close()


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


def _app_files(config: ReleaseConfig, env: str, base: Path) -> AppFiles:
    from services.adapters.app_files import DirectoryAppFiles

    app_dir = config.environment(env).app_dir
    # Never archive the backups themselves, should the backup directory lie inside the app.
    return DirectoryAppFiles(base / app_dir if app_dir else None, config.backup.app_paths, env,
                             skip=[base / config.backup.local_dir])


def _files_in(config: ReleaseConfig, directory: Path, env: str) -> AppFiles:
    from services.adapters.app_files import DirectoryAppFiles

    return DirectoryAppFiles(directory, config.backup.app_paths, env)


class _OnFirstUse:
    """An adapter made when first used, so its library is imported only by a command that needs it."""

    def close(self) -> None:  # never makes the adapter just to close it
        if self._made is not None and callable(close := getattr(self._made, "close", None)):
            close()

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


def _docker_builder(build: BuildConfig) -> ImageBuilder:
    """BuildKit through the docker CLI, or classic (docker-py): the CLIs are asked on the first build."""

    def make() -> ImageBuilder:
        from services.adapters.buildkit import builder_for

        return builder_for(build)

    return cast(ImageBuilder, _OnFirstUse(make))


def _docker_registry(engine_url: str, username: str | None, password: SecretStr | None) -> Registry:
    def make() -> Registry:
        from services.adapters.docker_build import DockerRegistry

        return DockerRegistry(engine_url, username, password)

    return cast(Registry, _OnFirstUse(make))


def _compose_stack(config: ReleaseConfig, base: Path) -> DevStack | None:
    """The [dev] compose project; the docker SDK is imported when the stack is first used."""
    dev = config.dev
    if dev is None:
        return None

    def make() -> DevStack:
        from services.adapters.compose import ComposeStack

        return ComposeStack(base / dev.compose_file, dev.project, dev.engine_url, dev.timeout_s)

    return cast(DevStack, _OnFirstUse(make))


def _observer(config: ReleaseConfig, env: str) -> AppObserver:
    """The app's logs and resource use: through the docker SDK or the kubernetes client, imported when used."""
    kind = config.environment(env).target.kind
    if kind == "docker":
        from services.adapters.docker_observe import DockerObserver

        return DockerObserver(config, env)
    if kind == "kubernetes":
        from services.adapters.kube_observe import KubeObserver

        return KubeObserver(config, env)
    return NoObserver(env)


def _http_health() -> HealthChecker:
    from services.adapters.http import HttpHealth  # httpx: only when a health check runs

    return HttpHealth()


def _probes(config: ReleaseConfig, env: str) -> DependencyProbes:
    from services.adapters.health_probes import LiveProbes  # httpx and psycopg: only when probed

    return LiveProbes(config, env)


def _metrics(config: ReleaseConfig, env: str) -> MetricsSource:
    from services.adapters.metrics import metrics_source  # httpx: only when used

    return metrics_source(config, env)


def _pgbackrest(config: ReleaseConfig, env: str) -> PitrEngine:
    from services.adapters.pgbackrest import PgBackRest

    assert config.backup.pitr is not None  # Services.pitr asks only then
    return PgBackRest(config.backup.pitr, config.environment(env).database_url.get_secret_value(),
                      config.database.connect_timeout_s)


def _postgres_revisions(config: ReleaseConfig, env: str) -> RevisionLog:
    from services.adapters.postgres_revisions import PostgresRevisions

    return PostgresRevisions(config.environment(env).database_url.get_secret_value(), env)


def _postgres_schema(config: ReleaseConfig, env: str) -> SchemaChanges:
    from services.adapters.postgres_schema import PostgresSchemaChanges  # psycopg: only when used

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


def suggested_params(sandbox_mode: bool) -> dict[str, dict[str, str]]:
    """Per action kind, values the sandbox's world offers for its parameters (its demo canary's
    version), which the TUI's forms and the CLI fill in. Real mode has none."""
    if not sandbox_mode:
        return {}
    from services.sandbox.adapters import SUGGESTED_PARAMS

    return SUGGESTED_PARAMS


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
        # A notification route's URL must be http(s): the sandbox's receivers never send it anywhere.
        # Databases and Redis carry a password, as real ones do: `config diff` shows their host and database.
        upper, host = key.upper(), key.lower().replace("_", "-")
        if "REDIS" in upper:
            return f"redis://:sandbox-secret@{host}.sandbox:6379/0"
        if "DATABASE" in upper:
            return f"postgresql://app:sandbox-secret@{host}.sandbox:5432/food_management"
        kind = "https" if "HOOK" in upper or upper.endswith("URL") else "sandbox"
        return f"{kind}://sandbox/{key.lower()}"


@dataclass(kw_only=True)
class SandboxServices(Services):
    """The sandbox's services, with its simulated world at hand for drills and tests."""

    world: World
    kept: KeptWorld  # the world's file under the state dir: one world across processes

    def refresh(self) -> None:
        self.kept.refresh()

    def keep(self) -> None:
        self.kept.save()

    def close(self) -> None:
        self.kept.save(only_if_unchanged=True)  # a poll's draws are not worth another process's operation
        super().close()


def build(
    config: ReleaseConfig,
    *,
    sandbox_mode: bool = False,
    seed: int = 7,
    time_scale: float = 30.0,
    state: Path | None = None,
    origin: float | None = None,
    reset: bool = False,
) -> Services:
    """`origin` pins the sandbox clock's start, so a drill or a screenshot can be replayed exactly.
    The sandbox's world is kept under the state dir between processes; `reset` seeds it anew."""
    state = state or state_dir()
    private_dir(state, owned=True)
    journal = Journal(state / ("sandbox-journal.sqlite3" if sandbox_mode else "journal.sqlite3"))
    if sandbox_mode:
        return _sandbox(config, journal, state, seed, time_scale, origin, reset)
    return _real(config, journal, state)


def _sandbox(config: ReleaseConfig, journal: Journal, state: Path, seed: int, time_scale: float,
             origin: float | None, reset: bool) -> SandboxServices:
    from services.sandbox import adapters as sandbox
    from services.sandbox.dev_stack import SandboxDevStack
    from services.sandbox.expand import SandboxSchemaChanges
    from services.sandbox.observe import SandboxObserver
    from services.sandbox.pitr import SandboxPitr
    from services.sandbox.probes import SandboxProbes
    from services.sandbox.saved import KeptWorld, world_path

    # The sandbox has no shared trail: its world is kept in a file of the state dir (services/sandbox/saved.py).
    audit = AuditLog(state / "sandbox-audit.jsonl", config.audit.key)
    path = world_path(state, seed)
    if reset and path.exists():
        path.unlink()
        audit.append("sandbox", "sandbox-reset", {"seed": seed}, f"the world of seed {seed} seeded anew")
    kept, loaded = KeptWorld.open(path, seed, time_scale, origin)
    world = kept.world
    if not loaded:
        _sign_seeded_backups(world, config)
        kept.save()
    files = sandbox.SandboxAppFiles(world)
    return SandboxServices(
        config=config, journal=journal, audit=audit, kept=kept,
        locks=FileLocks(state / "sandbox-locks"), builder=sandbox.SandboxBuilder(world),
        registry=sandbox.SandboxRegistry(world), commands=sandbox.SandboxCommands(world),
        store=sandbox.SandboxStore(world),
        notifier=_notifier(config, audit, lambda route: sandbox.SandboxReceiver(world, route.name), True),
        source=sandbox.SandboxSource(), clock=world.clock, world=world, sandbox=True, time_scale=time_scale,
        dev=SandboxDevStack() if config.dev else None,
        load_config=lambda path: load_config(str(path), True), state=state,
        per_env=EnvironmentAdapters(
            target=lambda env: sandbox.SandboxTarget(world, env),
            revisions=lambda env: sandbox.SandboxRevisions(world, env),
            metrics=lambda env: sandbox.SandboxMetrics(world, env),
            database=lambda env: sandbox.SandboxMigrations(world, env),
            health=lambda env: sandbox.SandboxHealth(world, env),
            probes=lambda env: SandboxProbes(world, env),
            schema=lambda env: SandboxSchemaChanges(world, env),
            files=lambda env: files,
            files_in=lambda directory, env: files,
            observer=lambda env: SandboxObserver(world, env),
            pitr=lambda env: SandboxPitr(world, env),
        ),
    )


def _real(config: ReleaseConfig, journal: Journal, state: Path) -> Services:
    # Imported here: psycopg costs start-up that the sandbox never needs. The docker SDK and httpx
    # (~0.3 s more) are imported only by the adapters that use them, when first used: a backup,
    # a restore or a status never does.
    from services.adapters import pg
    from services.adapters.commands import SubprocessCommands
    from services.adapters.git_source import GitSource
    from services.adapters.local_store import LocalStore
    from services.adapters.postgres import DumpBounds, PostgresMigrations
    from services.adapters.postgres_audit import PostgresAuditTrail

    database = config.database
    pg.configure(pg.Bounds(database.statement_timeout_s, database.lock_timeout_s,
                           database.migration_statement_timeout_s, database.migration_lock_timeout_s))
    build = config.build
    policy = config.backup
    bounds = DumpBounds(policy.lock_wait_timeout_s, policy.dump_timeout_s, policy.restore_timeout_s)
    audit = AuditLog(state / "audit.jsonl", config.audit.key, PostgresAuditTrail(config))
    notifier = _notifier(config, audit, lambda route: _HttpReceiver(route, config.notify.timeout_s))
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
        config=config, journal=journal,
        audit=audit,
        locks=RoutedLocks(config),
        builder=_docker_builder(build),
        registry=_docker_registry(build.engine_url, build.registry_username, build.registry_password),
        commands=SubprocessCommands(context, config.app.check_timeout_s), store=store, notifier=notifier,
        source=GitSource(context.resolve()), other_stores=[local] if store is not local else [],
        load_config=lambda path: load_config(str(path), False), state=state, dev=_compose_stack(config, base),
        per_env=EnvironmentAdapters(
            target=lambda env: _real_target(config, env),
            revisions=lambda env: _postgres_revisions(config, env),
            metrics=lambda env: _metrics(config, env),
            database=lambda env: PostgresMigrations(
                config.environment(env).database_url, migrations_dir, config.migrations.lock_wait_s,
                connect_timeout_s=database.connect_timeout_s, scratch_server=config.backup.scratch_database_url,
                bounds=bounds),
            health=lambda env: _http_health(),
            probes=lambda env: _probes(config, env),
            schema=lambda env: _postgres_schema(config, env),
            files=lambda env: _app_files(config, env, base),
            files_in=lambda directory, env: _files_in(config, directory, env),
            observer=lambda env: _observer(config, env),
            pitr=lambda env: _pgbackrest(config, env),
        ),
    )
