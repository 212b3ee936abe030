"""The point-in-time recovery port: pgBackRest and the cluster it archives, as operations see them.

The real adapter (services/adapters/pgbackrest.py) runs pgBackRest and pg_ctl with argument lists
and reads the cluster over psycopg; the sandbox one (services/sandbox/pitr.py) simulates both.
pgBackRest does every piece of WAL work: nothing here archives, copies or replays WAL itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from services.core.ports import OnLine

BACKUP_TYPES = ("full", "diff", "incr")


@dataclass(frozen=True)
class PitrBackup:
    """One pgBackRest backup, as `info --output=json` lists it."""

    label: str  # 20261206-161251F, 20261206-161251F_20261206-170000I
    type: str  # full, diff, incr
    started: float  # epoch seconds
    stopped: float  # the backup is consistent from here: the oldest time it can restore to
    size: int  # bytes of the database
    repo_size: int  # bytes in the repository


@dataclass(frozen=True)
class StanzaInfo:
    stanza: str
    status: str  # pgBackRest's status message: "ok", "missing stanza path", "no valid backups" ...
    ok: bool  # pgBackRest's status code is 0
    backups: tuple[PitrBackup, ...]  # oldest first
    wal_min: str | None = None  # the archive's oldest and newest WAL segment
    wal_max: str | None = None
    system_id: int | None = None

    @property
    def exists(self) -> bool:
        return self.status != "missing stanza path"


@dataclass(frozen=True)
class Archiver:
    """pg_stat_archiver, with the server's own clock: the recovery point is how old the last archived WAL is."""

    archived_count: int
    last_archived_wal: str | None
    last_archived_at: float | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_at: float | None
    server_now: float

    @property
    def failing(self) -> bool:
        """The last attempt failed: a failure newer than the last success."""
        return self.last_failed_at is not None and (self.last_archived_at or 0) < self.last_failed_at

    @property
    def age_s(self) -> float | None:
        return None if self.last_archived_at is None else max(0.0, self.server_now - self.last_archived_at)


@dataclass(frozen=True)
class AppliedMigration:
    name: str
    started_at: float
    finished_at: float | None


class Cluster(Protocol):
    """A running cluster to read: the live one, or a drill's scratch copy."""

    def describe(self) -> str: ...  # "127.0.0.1:5432", "scratch /var/lib/.../drill-x on port 54123"
    def in_recovery(self) -> bool: ...  # pg_is_in_recovery(); StepFailed when it does not answer
    def system_identifier(self) -> int: ...
    def row_counts(self, tables: Iterable[str]) -> dict[str, int]: ...  # tables that exist only
    def keys(self, table: str, limit: int) -> list[str] | None: ...  # the primary key's values; None: no single key
    def migrations(self) -> list[AppliedMigration]: ...  # finished ones, in order; [] without the table
    def archiver(self) -> Archiver: ...


class PitrEngine(Protocol):
    """pgBackRest's stanza for one environment's cluster, and the cluster itself."""

    def describe(self) -> str: ...  # "pgBackRest stanza main (/etc/pgbackrest/pgbackrest.conf)"
    def info(self) -> StanzaInfo: ...
    def check(self, on_line: OnLine) -> None: ...  # `pgbackrest check`; StepFailed with pgBackRest's reason
    def backup(self, backup_type: str, on_line: OnLine) -> None: ...
    def live(self) -> Cluster: ...
    def stop_database(self, on_line: OnLine) -> None: ...
    def start_database(self, on_line: OnLine) -> None: ...
    # `pgbackrest restore --delta --type=time --target=... --target-action=promote` into the live data dir.
    def restore(self, target_time: str, on_line: OnLine) -> None: ...
    # The same restore into a fresh scratch directory, started on a free port (WAL archiving off); stopped
    # and removed when the context ends. The live cluster is not touched.
    def scratch(self, target_time: str, on_line: OnLine) -> AbstractContextManager[Cluster]: ...
