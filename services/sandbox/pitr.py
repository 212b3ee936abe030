"""The sandbox's pgBackRest: a stanza with a month of backups, WAL archived every few seconds, and a
cluster whose rows and migrations are the world's. A restore to a time takes back the migrations
applied after it (they are pending again). Nothing is drawn from the world's random generator, so
the rest of the seeded world stays as it was.
"""

from __future__ import annotations

import calendar
import contextlib
import time
from collections.abc import Iterable, Iterator

from services.core.operations import StepFailed
from services.core.pitr_port import (
    BACKUP_TYPES,
    AppliedMigration,
    Archiver,
    Identity,
    PitrBackup,
    RecoveryTarget,
    StanzaInfo,
)
from services.core.ports import OnLine
from services.sandbox.world import GROWTH_PER_DAY, World

DAY = 86400.0
SYSTEM_ID = 7316224720815728340
# (days before the world's start, type): a weekly full, a diff mid-week, an incr the other days.
SCHEDULE = [(29 - day, "full" if day % 7 == 0 else "diff" if day % 7 == 3 else "incr") for day in range(29)]


class SandboxCluster:
    def __init__(self, world: World, env: str, engine: SandboxPitr) -> None:
        self.world, self.env, self.engine = world, env, engine

    def describe(self) -> str:
        return "the live cluster (sandbox)"

    def migrations(self) -> list[AppliedMigration]:
        return [AppliedMigration(m.name, m.started_at, m.finished_at) for m in self.world.envs[self.env].migrations
                if m.state == "applied" and m.started_at is not None]

    def archiver(self) -> Archiver:
        now = self.world.clock.now()
        archived_at = now - (now % 60) % 7  # archive_timeout 60s: a segment a few seconds ago
        return Archiver(int(now // 60) % 100000, _segment(archived_at), archived_at, 0, None, None, now)

    def in_recovery(self) -> bool:
        if not self.engine.running:
            raise StepFailed("cannot connect to the sandbox's cluster: it is stopped")
        replaying = self.engine.replaying > 0  # a restored cluster replays for a poll or two
        self.engine.replaying = max(0, self.engine.replaying - 1)
        return replaying

    def mark_now(self) -> float:
        return self.world.clock.now()

    def row_counts(self, tables: Iterable[str]) -> dict[str, int]:
        with self.world.lock:
            rows = self.world.envs[self.env].rows
            return {table: rows[table] for table in tables if table in rows}

    def identity(self) -> Identity:
        return Identity(SYSTEM_ID, self.engine.started)


class SandboxCopy:
    """A drill's copy: the world's cluster as it was at the target, read-only."""

    def __init__(self, migrations: list[AppliedMigration], rows: dict[str, int], engine: SandboxPitr) -> None:
        self.applied, self.rows, self.engine, self.replaying = migrations, rows, engine, 2
        self.started = engine.world.clock.now()

    def describe(self) -> str:
        return "the drill's copy (sandbox)"

    def migrations(self) -> list[AppliedMigration]:
        return self.applied

    def archiver(self) -> Archiver:
        raise StepFailed("a drill's copy does not archive")

    def in_recovery(self) -> bool:
        self.replaying = max(0, self.replaying - 1)
        return self.replaying > 0

    def mark_now(self) -> float:
        raise StepFailed("a drill's copy is not written to")

    def row_counts(self, tables: Iterable[str]) -> dict[str, int]:
        return {table: self.rows[table] for table in tables if table in self.rows}

    def identity(self) -> Identity:
        return Identity(SYSTEM_ID, self.started)


class SandboxPitr:
    def __init__(self, world: World, env: str) -> None:
        self.world, self.env = world, env
        self.extra: list[PitrBackup] = []
        self.running, self.replaying = True, 0
        self.restored_to: str | None = None
        self.started = world.clock.now()
        self.scratch_names: list[str] = []  # the drills' copies, while they exist

    def describe(self) -> str:
        return "pgBackRest stanza main (sandbox)"

    def info(self) -> StanzaInfo:
        origin, backups = self.world.clock.origin, list[PitrBackup]()
        for days, kind in SCHEDULE:
            backups.append(PitrBackup(_label(origin - days * DAY, kind, backups), kind, origin - days * DAY,
                                      origin - days * DAY + 300, 2_400_000_000,
                                      610_000_000 if kind == "full" else 40_000_000))
        now = self.world.clock.now()
        return StanzaInfo("main", "ok", True, (*backups, *self.extra), "000000010000002A00000001", _segment(now),
                          SYSTEM_ID)

    def check(self, on_line: OnLine) -> None:
        on_line(f"WAL segment {_segment(self.world.clock.now())} successfully archived (sandbox)")

    def backup(self, backup_type: str, on_line: OnLine) -> None:
        if backup_type not in BACKUP_TYPES:
            raise ValueError(f"backup type {backup_type!r}")
        started = self.world.clock.now()
        for percent in (10, 35, 60, 85, 100):
            time.sleep(self.world.clock.real_seconds(6))
            on_line(f"P01 DETAIL: backup file base/16384/2619 (8KB, {percent}.00%)")
        stopped = self.world.clock.now()
        label = _label(started, backup_type, self.info().backups)
        self.extra.append(PitrBackup(label, backup_type, started, stopped, 2_400_000_000,
                                     610_000_000 if backup_type == "full" else 40_000_000))

    def live(self) -> SandboxCluster:
        return SandboxCluster(self.world, self.env, self)

    def stop_database(self, on_line: OnLine) -> None:
        on_line("pg_ctl stop (sandbox)" if self.running else "PostgreSQL is not running (sandbox): nothing to stop")
        self.running = False

    def start_database(self, on_line: OnLine) -> None:
        on_line("pg_ctl start (sandbox)" if not self.running else "PostgreSQL already runs (sandbox)")
        if not self.running:
            self.started = self.world.clock.now()
        self.running = True

    def restore(self, target: RecoveryTarget, on_line: OnLine) -> None:
        """The migrations started after the target are pending again; the rows the app gained since are gone."""
        if self.running:
            raise StepFailed("pgbackrest restore failed: unable to restore while PostgreSQL is running (sandbox)")
        time.sleep(self.world.clock.real_seconds(30))
        with self.world.lock:
            state = self.world.envs[self.env]
            kept, undone, rows = self._at(self._epoch(target))
            state.migrations = [m for m in state.migrations if m.name not in undone]
            state.pending[:0] = undone
            state.rows.update(rows)
        self.replaying, self.restored_to = 2, target.describe()
        on_line(f"restored to {target.describe()}: {len(undone)} migrations after it undone (sandbox)")

    @contextlib.contextmanager
    def scratch(self, target: RecoveryTarget, name: str, needed: int, on_line: OnLine) -> Iterator[SandboxCopy]:
        on_line(f"pgbackrest restore (drill) into {name}: {needed / 1e9:.1f} GB (sandbox)")
        time.sleep(self.world.clock.real_seconds(30))
        with self.world.lock:
            kept, undone, rows = self._at(self._epoch(target))
        self.scratch_names.append(name)
        try:
            yield SandboxCopy(kept, rows, self)
        finally:
            self.scratch_names.remove(name)
            on_line(f"the drill's copy {name} stopped and removed (sandbox)")

    def _epoch(self, target: RecoveryTarget) -> float:
        if target.backup:
            return next(b.stopped for b in self.info().backups if b.label == target.backup)
        return float(calendar.timegm(time.strptime(str(target.time)[:19], "%Y-%m-%d %H:%M:%S")))

    def _at(self, target: float) -> tuple[list[AppliedMigration], list[str], dict[str, int]]:
        """The cluster at `target`: the migrations it had applied, those after it, and its rows."""
        state = self.world.envs[self.env]
        applied = [AppliedMigration(m.name, m.started_at, m.finished_at) for m in state.migrations
                   if m.state == "applied" and m.started_at is not None]
        days = max(0.0, self.world.clock.now() - target) / DAY
        rows = {table: max(0, count - round(GROWTH_PER_DAY.get(table, 0.0) * days))
                for table, count in state.rows.items()}
        return ([m for m in applied if m.started_at <= target], [m.name for m in applied if m.started_at > target],
                rows)


def _label(when: float, kind: str, earlier: Iterable[PitrBackup]) -> str:
    """As pgBackRest labels it: a diff or incr after the label of the full it depends on."""
    own = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when)) + {"full": "F", "diff": "D", "incr": "I"}[kind]
    full = [b.label for b in earlier if b.type == "full"]
    return own if kind == "full" else f"{full[-1]}_{own}"


def _segment(when: float) -> str:
    return f"000000010000002A{int(when // 60) % 0xFFFFFFFF:08X}"
