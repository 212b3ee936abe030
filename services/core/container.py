"""The service container: every port the capabilities use, built by services/factory.py.

Per-environment adapters are made on first use and kept, so a 2 s poll reuses one Kubernetes
client or one connection setting; `close()` lets them all go when the console quits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

from services.core.audit import AuditLog
from services.core.clock import Clock, WallClock
from services.core.config import ReleaseConfig
from services.core.journal import Journal
from services.core.locks import ReleaseLocks
from services.core.observe import AppObserver, NoObserver
from services.core.operations import Runner, StepFailed
from services.core.oplog import log_path_for
from services.core.pitr_port import PitrEngine
from services.core.ports import (
    AppFiles,
    CommandRunner,
    DependencyProbes,
    DeployTarget,
    DevStack,
    HealthChecker,
    ImageBuilder,
    MetricsSource,
    MigrationDatabase,
    Notifier,
    ObjectStore,
    Registry,
    RevisionLog,
    SchemaChanges,
    SourceTree,
)

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class EnvironmentAdapters:
    """How each per-environment adapter is made, from the environment's name."""

    target: Callable[[str], DeployTarget]
    revisions: Callable[[str], RevisionLog]
    metrics: Callable[[str], MetricsSource]
    database: Callable[[str], MigrationDatabase]
    health: Callable[[str], HealthChecker]
    probes: Callable[[str], DependencyProbes]  # the API, PostgreSQL and Redis health probes
    schema: Callable[[str], SchemaChanges]
    files: Callable[[str], AppFiles]
    # A directory's app files (a drill restores into a scratch one): (directory, environment).
    files_in: Callable[[Path, str], AppFiles]
    # The app's logs and resource use where it runs (services/environments/logs.py).
    observer: Callable[[str], AppObserver] = NoObserver
    # pgBackRest and the cluster it archives, for [backup.pitr]'s environment (services/backups/pitr.py).
    pitr: Callable[[str], PitrEngine] | None = None


@dataclass(kw_only=True)
class Services:
    config: ReleaseConfig
    journal: Journal
    audit: AuditLog
    locks: ReleaseLocks
    builder: ImageBuilder
    registry: Registry
    commands: CommandRunner
    store: ObjectStore
    notifier: Notifier
    source: SourceTree
    per_env: EnvironmentAdapters
    # The config loader the console started with: a restore checks the restored release.toml loads.
    load_config: Callable[[Path], ReleaseConfig]
    state: Path  # the console's private state dir: journal, audit log, operation logs
    clock: Clock = field(default_factory=WallClock)
    # Other stores that hold backups too (the local directory when `store` is S3): listed,
    # restored from and pruned alongside the store new backups go to.
    other_stores: list[ObjectStore] = field(default_factory=list)
    # For the screen only (the banner, the title): no capability asks it.
    sandbox: bool = False
    time_scale: float = 1.0
    dev: DevStack | None = None  # the development compose stack; None without a [dev] section
    _made: dict[tuple[str, str], object] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def stores(self) -> list[ObjectStore]:
        return [self.store, *self.other_stores]

    @property
    def runner(self) -> Runner:
        return Runner(self.journal, self.audit, self.locks, self.log_path, before=self.refresh, after=self.keep,
                      notifier=self.notifier)

    def refresh(self) -> None:
        """Take in what another process changed since (the sandbox's saved world); live services need nothing."""

    def keep(self) -> None:
        """Keep this process's state for the next one (the sandbox's world); live services keep it themselves."""

    def log_path(self, op_id: str) -> Path:
        """Where an operation's full log is saved (the runner writes it; the screens show where)."""
        return log_path_for(op_id, self.config.build.log_dir, self.state)

    def _adapter(self, kind: str, env: str, make: Callable[[str], T]) -> T:
        self.config.environment(env)  # unknown environment: an error, never a fallback
        with self._lock:
            if (kind, env) not in self._made:
                self._made[kind, env] = make(env)
            return cast(T, self._made[kind, env])

    def target(self, env: str) -> DeployTarget:
        return self._adapter("target", env, self.per_env.target)

    def revisions(self, env: str) -> RevisionLog:
        return self._adapter("revisions", env, self.per_env.revisions)

    def metrics(self, env: str) -> MetricsSource:
        return self._adapter("metrics", env, self.per_env.metrics)

    def database(self, env: str) -> MigrationDatabase:
        return self._adapter("database", env, self.per_env.database)

    def health(self, env: str) -> HealthChecker:
        return self._adapter("health", env, self.per_env.health)

    def probes(self, env: str) -> DependencyProbes:
        return self._adapter("probes", env, self.per_env.probes)

    def schema(self, env: str) -> SchemaChanges:
        return self._adapter("schema", env, self.per_env.schema)

    def observer(self, env: str) -> AppObserver:
        return self._adapter("observer", env, self.per_env.observer)

    def pitr(self, env: str) -> PitrEngine:
        """Point-in-time recovery of `env`: only the environment [backup.pitr] names has it."""
        settings = self.config.backup.pitr
        if settings is None or settings.environment != env or self.per_env.pitr is None:
            where = f"it covers {settings.environment} only" if settings else "there is no [backup.pitr] section"
            raise StepFailed(f"no point-in-time recovery for {env}: {where}",
                             ("configure [backup.pitr] in release.toml (see docs/operations.md, dump or PITR)",))
        return self._adapter("pitr", env, self.per_env.pitr)

    def files(self, env: str) -> AppFiles:
        """The environment's app files (its app_dir)."""
        return self._adapter("files", env, self.per_env.files)

    def files_in(self, directory: Path, env: str) -> AppFiles:
        """App files in a directory of our own (a drill's scratch copy): never cached."""
        return self.per_env.files_in(directory, env)

    def real_seconds(self, simulated: float) -> float:
        """How long to really wait for a span of (possibly sandbox-accelerated) time."""
        return self.clock.real_seconds(simulated)

    def close(self) -> None:
        """Let go of every client and connection made so far; the next use makes them again."""
        with self._lock:
            made, self._made = list(self._made.values()), {}
        for resource in [*made, self.builder, self.registry, self.store, *self.other_stores, self.locks,
                         self.notifier, self.dev]:
            close = getattr(resource, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # quitting: one client's failure must not keep the others open
                    pass
