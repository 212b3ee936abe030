"""The ports: one Protocol per outside system. Each has a real adapter and a sandbox one.

Operations depend only on these, so the same step code runs against Docker, Kubernetes,
PostgreSQL, S3 and Prometheus, or against the sandbox world.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Protocol

OnLine = Callable[[str], None]
OnProgress = Callable[[float, float], None]  # done, total


@dataclass(frozen=True)
class BuildRequest:
    context: str
    dockerfile: str
    target: str
    build_args: Mapping[str, str]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class BuiltImage:
    id: str
    size_bytes: int
    layers: int
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Revision:
    number: int
    image: str
    digest: str
    who: str
    when: float
    migration_head: str | None = None
    backup_id: str | None = None


@dataclass(frozen=True)
class TargetStatus:
    version: str
    ready: int
    desired: int
    canary_version: str | None = None
    canary_weight: int = 0
    restarts: int = 0
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetricSnapshot:
    """One sample per series: series name (canary, stable) -> metric name -> value (None = no data)."""

    at: float
    series: Mapping[str, Mapping[str, float | None]]


@dataclass(frozen=True)
class MigrationRecord:
    name: str
    checksum: str
    state: str  # applied, pending, failed, rolled_back, edited, missing_folder
    started_at: float | None = None
    finished_at: float | None = None
    logs: str = ""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: float
    store: str  # local, s3, sandbox
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    status: int | None
    detail: str


@dataclass(frozen=True)
class Notification:
    env: str
    version: str
    reason: str
    severity: str = "info"


class ImageBuilder(Protocol):
    def build(self, request: BuildRequest, on_line: OnLine) -> BuiltImage: ...


class Registry(Protocol):
    def push(self, image: BuiltImage, on_progress: OnProgress, on_line: OnLine) -> str: ...
    def has(self, reference: str) -> bool: ...


class DeployTarget(Protocol):
    def status(self) -> TargetStatus: ...
    def deploy(self, image: str, on_line: OnLine) -> Revision: ...
    def history(self) -> list[Revision]: ...
    def rollback(self, to_revision: int, on_line: OnLine) -> Revision: ...
    def start_canary(self, image: str, weight: int, on_line: OnLine) -> None: ...
    def set_weight(self, weight: int) -> None: ...
    def promote(self, on_line: OnLine) -> Revision: ...
    def abort(self, on_line: OnLine) -> None: ...
    def scale(self, replicas: int) -> None: ...
    def stop(self, on_line: OnLine) -> None: ...
    def start(self, on_line: OnLine) -> None: ...


class MetricsSource(Protocol):
    def sample(self) -> MetricSnapshot: ...


class MigrationDatabase(Protocol):
    def status(self) -> list[MigrationRecord]: ...
    def apply(self, name: str, on_line: OnLine) -> MigrationRecord: ...
    def row_counts(self, tables: Iterable[str]) -> dict[str, int]: ...
    def reindex(self, table: str) -> None: ...
    def dump(self, sink: IO[bytes]) -> str: ...  # returns the server version
    def restore(self, source: IO[bytes], on_line: OnLine) -> None: ...


class ObjectStore(Protocol):
    name: str

    def list(self, prefix: str = "") -> list[StoredObject]: ...
    def put(self, key: str, chunks: Iterable[bytes], metadata: Mapping[str, str] | None = None) -> StoredObject: ...
    def get(self, key: str) -> Iterator[bytes]: ...
    def delete(self, key: str) -> None: ...


class Notifier(Protocol):
    def notify(self, message: Notification) -> None: ...


class CommandRunner(Protocol):
    def run(self, argv: list[str], on_line: OnLine) -> int: ...


class AppFiles(Protocol):
    def archive(self, sink: IO[bytes], excludes: Iterable[str]) -> int: ...  # returns files archived
    def restore(self, source: IO[bytes], on_line: OnLine) -> None: ...


class HealthChecker(Protocol):
    def check(self, url: str) -> HealthResult: ...
