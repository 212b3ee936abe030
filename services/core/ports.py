"""The ports: one Protocol per outside system. Each has a real adapter and a sandbox one.

Operations depend only on these, so the same step code runs against Docker, Kubernetes,
PostgreSQL, S3 and Prometheus, or against the sandbox world.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

OnLine = Callable[[str], None]


class Readable(Protocol):
    """A byte stream to read from: a file, a GzipFile, a pipe."""

    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    """A byte stream to write to: a file, a GzipFile, a hashing writer, a multipart upload."""

    def write(self, data: bytes, /) -> int: ...
OnProgress = Callable[[float, float], None]  # done, total


@dataclass(frozen=True)
class BuildRequest:
    context: str
    dockerfile: str
    target: str
    build_args: Mapping[str, str]
    tags: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)  # the OCI labels (org.opencontainers.image.*)


@dataclass(frozen=True)
class BuiltImage:
    id: str
    size_bytes: int
    layers: int
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Revision:
    """One deploy, rollback or promotion of an environment, as its revision history keeps it."""

    number: int
    image: str
    digest: str
    who: str
    when: float
    migration_head: str | None = None  # the newest applied migration when it went out
    backup_id: str | None = None  # the newest backup of the environment taken before it
    action: str = "deploy"  # deploy, rollback, promote


@dataclass(frozen=True)
class Running:
    """One image reference as the engine runs it (services/environments/drift.py compares it)."""

    reference: str  # as configured: repo:tag@sha256:... (what the console runs), or a tag set by hand
    digest: str | None = None  # the registry digest the engine resolved it to (Docker: RepoDigests); None: unknown


@dataclass(frozen=True)
class TargetStatus:
    version: str  # the stable image's tag, "-" when nothing is deployed
    ready: int
    desired: int
    canary_version: str | None = None
    canary_weight: int = 0
    restarts: int = 0
    events: tuple[str, ...] = ()  # newest last: rollout progress, warnings
    image: str = ""  # the stable image reference
    canary_image: str | None = None
    canary_ready: int = 0
    # What runs, for drift: the stable references, distinct (a hand-replaced container's too).
    running: tuple[Running, ...] = ()
    # What the console last set, as the target itself keeps it; None: the target keeps no record.
    applied_replicas: int | None = None
    applied_weight: int | None = None
    # Changes the target says were made by someone other than the console (Kubernetes managedFields).
    outside: tuple[str, ...] = ()


# --- what a deploy target can be asked to change: planned first, then applied ----------------


@dataclass(frozen=True)
class Deploy:
    image: str


@dataclass(frozen=True)
class StartCanary:
    image: str
    weight: int


@dataclass(frozen=True)
class SetWeight:
    weight: int


@dataclass(frozen=True)
class Promote:
    pass


@dataclass(frozen=True)
class Abort:
    pass


@dataclass(frozen=True)
class Scale:
    replicas: int


Change = Deploy | StartCanary | SetWeight | Promote | Abort | Scale


@dataclass(frozen=True)
class PlannedChange:
    """One object (a Deployment, an Ingress, a container, the nginx upstream) and what would happen to it."""

    kind: str  # Deployment, Service, Ingress, HTTPRoute, container, upstream
    name: str
    action: str  # create, update, delete, scale, start, stop, unchanged
    diff: str = ""  # unified diff, current -> desired; secret values masked


@dataclass(frozen=True)
class Plan:
    target: str  # what it would change, e.g. "kubernetes namespace food-management (ingress-nginx)"
    changes: tuple[PlannedChange, ...]

    @property
    def empty(self) -> bool:
        return all(c.action == "unchanged" for c in self.changes)


@dataclass(frozen=True)
class MetricSnapshot:
    """One sample per series: series name (canary, stable) -> metric name -> value (None = no data).

    Metrics: error_rate (a ratio), p95_ms, cpu_percent, memory_percent, requests_per_s (for the
    observed traffic share). A value that is missing, NaN or unreadable is None here and its
    reason is in `problems`, keyed "series.metric" (e.g. "canary.p95_ms": "empty result").
    """

    at: float
    series: Mapping[str, Mapping[str, float | None]]
    problems: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MigrationRecord:
    name: str
    checksum: str
    state: str  # applied, pending, failed, rolled_back, edited, missing_folder
    started_at: float | None = None
    finished_at: float | None = None
    logs: str = ""


@dataclass(frozen=True)
class TableSize:
    """A table's size as the catalog has it, for the lint's estimates (partitions summed)."""

    rows: int | None  # pg_class.reltuples: an estimate (ANALYZE, VACUUM); None: never analyzed
    total_bytes: int  # heap, TOAST and indexes: what a rewrite writes again
    heap_bytes: int  # the heap (pg_relation_size): what a scan or an index build reads; 0: no row since creation


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
    version: str | None = None  # what the body reports as its "version"; None: it reports none


@dataclass(frozen=True)
class Notification:
    """What happened, for the team: `event` names it ("operation.failed", "monitor.rollback"; see
    services/core/notify_config.py EVENTS), `severity` is info, warning or critical."""

    env: str
    version: str
    reason: str
    severity: str = "info"
    event: str = "notice"
    operation: str = ""  # the operation's kind (deploy, migrate ...)
    op_id: str = ""
    operator: str = ""  # the OS user; filled in when sent if empty
    at: float = 0.0  # epoch seconds; filled in when sent if 0


class ImageBuilder(Protocol):
    def build(self, request: BuildRequest, on_line: OnLine) -> BuiltImage: ...
    # Docker's image inspect (GET /images/{id}/json) with its history (GET /images/{id}/history,
    # newest first) under "History": what the image policy reads (services/release/image_policy.py).
    def inspect(self, image_id: str) -> dict[str, Any]: ...


class Registry(Protocol):
    def push(self, image: BuiltImage, on_progress: OnProgress, on_line: OnLine) -> str: ...
    def has(self, reference: str) -> bool: ...
    def digest(self, reference: str) -> str | None: ...  # the manifest digest; None: not in the registry


class DeployTarget(Protocol):
    """Where an environment runs: a Docker host behind nginx, or Kubernetes.

    Every changing method waits until the change is live (healthy, ready, reloaded), or fails
    with StepFailed after putting things back as they were, saying what it did. None of them
    keeps history: the operations record revisions in the RevisionLog.
    """

    def describe(self) -> str: ...  # e.g. "docker ssh://deploy@host, nginx split"
    def status(self) -> TargetStatus: ...
    def plan(self, change: Change) -> Plan: ...  # reads only; applies nothing
    def deploy(self, image: str, on_line: OnLine) -> None: ...  # replaces stable with zero downtime
    def start_canary(self, image: str, weight: int, on_line: OnLine) -> None: ...
    def set_weight(self, weight: int, on_line: OnLine) -> None: ...
    def promote(self, on_line: OnLine) -> None: ...  # canary image becomes stable; canary removed; weight 0
    def abort(self, on_line: OnLine) -> None: ...  # weight 0, canary scaled to 0
    def scale(self, replicas: int, on_line: OnLine) -> None: ...  # stable replicas
    def stop(self, on_line: OnLine) -> None: ...
    def start(self, on_line: OnLine) -> None: ...


class RevisionLog(Protocol):
    """An environment's revision history, kept where every operator sees it (its database)."""

    def list(self) -> list[Revision]: ...  # oldest first
    def record(self, image: str, digest: str, who: str, migration_head: str | None, backup_id: str | None,
               action: str) -> Revision: ...


class MetricsSource(Protocol):
    def describe(self) -> str: ...  # e.g. "prometheus http://prom:9090" or "scrape of 2 /metrics endpoints"
    def validate(self) -> list[str]: ...  # problems with the queries (a typo), found before a canary starts
    def sample(self) -> MetricSnapshot: ...  # never raises for an unreachable source: problems say why
    def query_for(self, series: str, metric: str) -> str: ...  # what is asked for it, as the trace shows


@dataclass(frozen=True)
class DumpTool:
    """The dump tool and the server it would dump, checked before any byte is written."""

    server_version: str  # e.g. "15.18"
    tool_version: str  # e.g. "pg_dump (PostgreSQL) 15.18"
    estimate_bytes: int = 0  # rough size of the plain dump (the tables' heap), 0 if unknown


class ScratchDatabase(Protocol):
    """A new, empty database for a trial restore; dropped when its context ends."""

    name: str

    def restore(self, source: Readable, on_line: OnLine, cancelled: Callable[[], bool] = ...) -> None: ...
    def restore_plain(self, source: Readable, on_line: OnLine, cancelled: Callable[[], bool] = ...) -> None: ...
    def row_counts(self, tables: Iterable[str]) -> dict[str, int]: ...
    def sample(self, table: str) -> int: ...  # SELECT * ... LIMIT 1: how many rows it read (0 or 1)


class MigrationDatabase(Protocol):
    def scripts(self) -> list[tuple[str, str]]: ...  # (name, migration.sql) in order, for lint
    def status(self) -> list[MigrationRecord]: ...
    def lock(self, on_line: OnLine) -> AbstractContextManager[None]: ...  # Prisma's advisory lock
    def apply(self, name: str, on_line: OnLine) -> MigrationRecord: ...
    def resolve(self, name: str, applied: bool) -> str: ...
    def row_counts(self, tables: Iterable[str]) -> dict[str, int]: ...
    # Catalog estimates of the tables that exist (absent ones left out): read-only, bounded, no row read.
    def table_sizes(self, tables: Iterable[str]) -> dict[str, TableSize]: ...
    def reindex(self, table: str) -> None: ...
    def dump_tool(self) -> DumpTool: ...  # refuses (StepFailed) a pg_dump older than the server
    # A pg_dump custom archive into sink; returns the server version. `cancelled` is polled: a cancel
    # or the configured timeout kills pg_dump.
    def dump(self, sink: Writable, cancelled: Callable[[], bool] = ...) -> str: ...
    def restore(self, source: Readable, on_line: OnLine, cancelled: Callable[[], bool] = ...) -> None: ...  # archive
    # An older plain-SQL dump, already checked for meta-commands (services.backups.plain_sql).
    def restore_plain(self, source: Readable, on_line: OnLine, cancelled: Callable[[], bool] = ...) -> None: ...
    def scratch(self) -> AbstractContextManager[ScratchDatabase]: ...  # for trial restores


class ObjectStore(Protocol):
    name: str

    def list(self, prefix: str = "") -> list[StoredObject]: ...
    def put(self, key: str, chunks: Iterable[bytes], metadata: Mapping[str, str] | None = None) -> StoredObject: ...
    def open_write(self, key: str) -> AbstractContextManager[BinaryIO]: ...  # streamed; in place only when closed
    def get(self, key: str, start: int = 0) -> Iterator[bytes]: ...  # from byte `start` on (a resumed download)
    def delete(self, key: str) -> None: ...


class Notifier(Protocol):
    def notify(self, message: Notification) -> None: ...


class CommandNotFound(Exception):
    """A command's program is not on this host (or may not be run): it never started."""

    def __init__(self, program: str, problem: str) -> None:
        super().__init__(f"`{program}` {problem}")
        self.program = program


class CommandRunner(Protocol):
    def run(self, argv: list[str], on_line: OnLine) -> int: ...  # the exit code, or CommandNotFound


class AppFiles(Protocol):
    @property
    def configured(self) -> bool: ...  # False: no app dir here; archive and restore refuse, saying so

    def archive(self, sink: Writable, excludes: Iterable[str]) -> int: ...  # returns files archived
    def restore(self, source: Readable, on_line: OnLine) -> None: ...
    def restored(self) -> bool: ...  # the app dir is there (after a restore)


class HealthChecker(Protocol):
    def check(self, url: str) -> HealthResult: ...


@dataclass(frozen=True)
class DevService:
    """One service of the development compose project, as its containers' labels and state say."""

    name: str  # the compose service (com.docker.compose.service)
    state: str  # running, exited, restarting, ... or "absent": in the compose file, no container
    health: str = ""  # healthy, unhealthy, starting; "" when the image has no healthcheck
    image: str = ""
    containers: int = 0


class DevStack(Protocol):
    """The development environment's compose project: status by labels, and one service's lifecycle."""

    def services(self) -> list[str]: ...  # the compose file's services, in its order
    def status(self) -> list[DevService]: ...
    def up(self, service: str | None, on_line: OnLine) -> None: ...  # None: the whole project
    def down(self, on_line: OnLine) -> None: ...  # the whole project; volumes are kept
    def restart(self, service: str, on_line: OnLine) -> None: ...
    def logs(self, service: str, on_line: OnLine, follow: bool = False, tail: int = 200) -> None: ...


@dataclass(frozen=True)
class Reading:
    """One dependency's probe (api, postgres, redis): `numbers` are judged against `[health]`
    thresholds by their names (latency_ms, memory_percent ...); `facts` are shown as they are
    (server version, "pid 41 (app) is blocked by pid 40 (worker)"); `error` says why it is unreachable."""

    dependency: str
    reachable: bool
    version: str | None = None
    numbers: Mapping[str, float] = field(default_factory=dict)
    facts: tuple[str, ...] = ()
    error: str | None = None


class DependencyProbes(Protocol):
    """An environment's dependencies, probed once per call; every wait is bounded by `timeout_s`."""

    def probe(self, timeout_s: float) -> list[Reading]: ...


# --- zero-downtime schema changes (expand/contract) -----------------------------------------
# The operations in services/migrations/expand/ speak only in these terms; the PostgreSQL
# adapter (services/adapters/postgres_schema.py) renders them as SQL, the sandbox applies
# them to a simulated table (services/sandbox/expand.py).


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # as the catalog formats it (format_type), e.g. "timestamp(3) without time zone"
    not_null: bool
    has_default: bool = False
    owns_sequence: bool = False  # serial or identity: its sequence goes with the column


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: Mapping[str, ColumnInfo]
    primary_key: tuple[str, ...]
    triggers: frozenset[str]
    constraints: Mapping[str, bool]  # name -> validated
    uses: Mapping[str, tuple[str, ...]]  # column -> indexes and constraints that use it


@dataclass(frozen=True)
class Fill:
    """What a backfill writes into the target column, and so which rows still need it.

    `expression` is SQL typed by the operator (trusted input, like a migration file): rows are
    pending while the target IS NULL. `copy_from` is a column: rows are pending while the
    target IS DISTINCT FROM it.
    """

    expression: str | None = None
    copy_from: str | None = None


@dataclass(frozen=True)
class Batch:
    rows: int  # rows this batch wrote
    last_key: str | int | None  # the highest primary key it looked at; None: nothing left after `after`


@dataclass(frozen=True)
class AddColumn:  # nullable, no default: no table rewrite; no-op if it exists
    table: str
    column: str
    type: str


@dataclass(frozen=True)
class DropColumn:  # no-op if it is gone
    table: str
    column: str


@dataclass(frozen=True)
class AddNotNullCheck:  # CHECK (column IS NOT NULL) NOT VALID: new rows only, no scan
    table: str
    column: str
    constraint: str


@dataclass(frozen=True)
class ValidateConstraint:  # scans, but lets reads and writes go on
    table: str
    constraint: str


@dataclass(frozen=True)
class DropConstraint:  # no-op if it is gone
    table: str
    constraint: str


@dataclass(frozen=True)
class SetNotNull:  # with a valid CHECK (column IS NOT NULL) in place, SET skips the scan
    table: str
    column: str
    not_null: bool = True


@dataclass(frozen=True)
class CopyDefault:  # the source column's default (if any) becomes the target's
    table: str
    source: str
    target: str


@dataclass(frozen=True)
class CreateSyncTrigger:  # keeps `old` and `new` equal whichever one a writer sets; replaces its own
    table: str
    old: str
    new: str
    trigger: str
    function: str


@dataclass(frozen=True)
class DropSyncTrigger:  # trigger, then its function; no-op if gone
    table: str
    trigger: str
    function: str


SchemaChange = (
    AddColumn | DropColumn | AddNotNullCheck | ValidateConstraint | DropConstraint | SetNotNull | CopyDefault
    | CreateSyncTrigger | DropSyncTrigger
)


class LockBusy(Exception):
    """A change or batch did not get its lock within lock_timeout; `blockers` names who holds it."""

    def __init__(self, message: str, blockers: str = "") -> None:
        super().__init__(message)
        self.blockers = blockers


class SchemaChanges(Protocol):
    def table(self, name: str) -> TableInfo | None: ...
    def apply(self, changes: Iterable[SchemaChange], lock_timeout_ms: int) -> None: ...  # one short transaction
    def count(self, table: str, column: str, fill: Fill) -> tuple[int, int]: ...  # rows, rows pending
    def backfill_batch(
        self, table: str, key: str, column: str, fill: Fill, after: str | int | None, limit: int, lock_timeout_ms: int
    ) -> Batch: ...  # one short transaction; LockBusy when it cannot lock its rows in time
    def close(self) -> None: ...


class NotAGitRepository(Exception):
    """The app's context is not inside a git work tree (or git is missing, or it has no commit)."""


class SourceTree(Protocol):
    """The app's source: the git tags of its HEAD and its build files."""

    def image_tags(self, image: str) -> list[str] | None:
        """`image:tag` references for HEAD; None when the context is not a git repository.

        Raises NotAGitRepository when it is one but cannot be tagged (no commit yet).
        """
        ...

    def read(self, name: str) -> str | None:
        """A build file's text (the Dockerfile), None when it is not at hand."""
        ...

    def default_version(self) -> str:
        """The version to release when none is asked for and git gives none ("" for none)."""
        ...

    def provenance(self) -> tuple[str, str]:
        """(the repository's public URL, HEAD's full commit) for the image's OCI labels; "" where unknown."""
        ...


class MigrationsDirError(ValueError):
    """The migrations folder cannot be used as it is: says which path and what to do."""
