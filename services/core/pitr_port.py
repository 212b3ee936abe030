"""The point-in-time recovery port: pgBackRest and the cluster it archives, as operations see them.

The real adapter (services/adapters/pgbackrest.py) runs pgBackRest with argument lists
and reads the cluster over psycopg; the sandbox one (services/sandbox/pitr.py) simulates both.
pgBackRest does every piece of WAL work: nothing here archives, copies or replays WAL itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from services.core.ports import OnLine

BACKUP_TYPES = ("full", "diff", "incr")
# A pgBackRest backup label: a full's, or a diff's or incr's after the full it depends on.
BACKUP_LABEL = re.compile(r"\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?")


@dataclass(frozen=True)
class RecoveryTarget:
    """Where recovery stops: a time (pgBackRest's --type=time), or a backup's end (--set --type=immediate)."""

    time: str | None = None  # YYYY-MM-DD HH:MM:SS.ffffff+00, as services/backups/pitr_target.py writes it
    backup: str | None = None  # a label `info` listed

    def describe(self) -> str:
        return f"the end of backup {self.backup}" if self.backup else str(self.time)


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
class Identity:
    """Which cluster answers, and since when: a restore or a restart changes `started`."""

    system_id: int | None  # pg_control_system(); None when this login may not read it
    started: float  # pg_postmaster_start_time(), epoch seconds


@dataclass(frozen=True)
class AppliedMigration:
    name: str
    started_at: float
    finished_at: float | None


class Cluster(Protocol):
    """The running cluster, read: what it has applied and how its WAL archiving goes."""

    def describe(self) -> str: ...  # "the live cluster (/var/lib/postgresql/15/main)"
    def migrations(self) -> list[AppliedMigration]: ...  # finished ones, in order; [] without the table
    def archiver(self) -> Archiver: ...
    def in_recovery(self) -> bool: ...  # pg_is_in_recovery(); StepFailed while it does not answer
    def row_counts(self, tables: Iterable[str]) -> dict[str, int]: ...  # the tables that exist
    # A transaction commit stamped with the server's now, returned (epoch seconds). A restore to a time
    # stops at the first commit after it: without one after the target in the archived WAL, recovery
    # would end short of the target and PostgreSQL refuses to start.
    def mark_now(self) -> float: ...
    def identity(self) -> Identity: ...


class PitrEngine(Protocol):
    """pgBackRest's stanza for one environment's cluster, and the cluster itself."""

    def describe(self) -> str: ...  # "pgBackRest stanza main (/etc/pgbackrest/pgbackrest.conf)"
    def info(self) -> StanzaInfo: ...
    def check(self, on_line: OnLine) -> None: ...  # `pgbackrest check`; StepFailed with pgBackRest's reason
    def backup(self, backup_type: str, on_line: OnLine) -> None: ...
    def live(self) -> Cluster: ...
    def stop_database(self, on_line: OnLine) -> None: ...  # stopped already: said, not an error
    def start_database(self, on_line: OnLine) -> None: ...  # running already: said, not an error
    # `pgbackrest restore --delta` to the target, promoted, into data_dir, which must be stopped.
    def restore(self, target: RecoveryTarget, on_line: OnLine) -> None: ...
    # The same restore into scratch_dir/NAME, started on a free local port with archiving off: the
    # cluster it yields is that copy. Stopped and removed on the way out, whatever happened; the live
    # cluster is never stopped, written or archived to. `needed` bytes must be free there first.
    def scratch(self, target: RecoveryTarget, name: str, needed: int,
                on_line: OnLine) -> AbstractContextManager[Cluster]: ...
