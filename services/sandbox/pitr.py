"""The sandbox's pgBackRest: a stanza with a month of backups, WAL archived every few seconds, and a
cluster whose rows and migrations are the world's. A restore to a time takes back the migrations
applied after it (they are pending again). Nothing is drawn from the world's random generator, so
the rest of the seeded world stays as it was.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable

from services.core.operations import StepFailed
from services.core.pitr_port import BACKUP_TYPES, AppliedMigration, Archiver, PitrBackup, StanzaInfo
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


class SandboxPitr:
    def __init__(self, world: World, env: str) -> None:
        self.world, self.env = world, env
        self.extra: list[PitrBackup] = []
        self.running, self.replaying = True, 0
        self.restored_to: str | None = None

    def describe(self) -> str:
        return "pgBackRest stanza main (sandbox)"

    def info(self) -> StanzaInfo:
        origin = self.world.clock.origin
        backups = [PitrBackup(_label(origin - days * DAY, kind), kind, origin - days * DAY,
                              origin - days * DAY + 300, 2_400_000_000, 610_000_000 if kind == "full" else 40_000_000)
                   for days, kind in SCHEDULE]
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
        self.extra.append(PitrBackup(_label(started, backup_type), backup_type, started, stopped, 2_400_000_000,
                                     610_000_000 if backup_type == "full" else 40_000_000))

    def live(self) -> SandboxCluster:
        return SandboxCluster(self.world, self.env, self)

    def stop_database(self, on_line: OnLine) -> None:
        on_line("pg_ctl stop (sandbox)" if self.running else "PostgreSQL is not running (sandbox): nothing to stop")
        self.running = False

    def start_database(self, on_line: OnLine) -> None:
        on_line("pg_ctl start (sandbox)" if not self.running else "PostgreSQL already runs (sandbox)")
        self.running = True

    def restore(self, target_time: str, on_line: OnLine) -> None:
        """The migrations started after the target are pending again; the rows the app gained since are gone."""
        if self.running:
            raise StepFailed("pgbackrest restore failed: unable to restore while PostgreSQL is running (sandbox)")
        target = float(calendar.timegm(time.strptime(target_time[:19], "%Y-%m-%d %H:%M:%S")))
        time.sleep(self.world.clock.real_seconds(30))
        with self.world.lock:
            state = self.world.envs[self.env]
            undone = [m for m in state.migrations if (m.started_at or 0) > target]
            state.migrations = [m for m in state.migrations if m not in undone]
            state.pending[:0] = [m.name for m in undone]
            days = max(0.0, self.world.clock.now() - target) / DAY
            for table in state.rows:
                state.rows[table] = max(0, state.rows[table] - round(GROWTH_PER_DAY.get(table, 0.0) * days))
        self.replaying, self.restored_to = 2, target_time
        on_line(f"restored to {target_time}: {len(undone)} migrations after it undone (sandbox)")


def _label(when: float, kind: str) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(when)) + {"full": "F", "diff": "D", "incr": "I"}[kind]


def _segment(when: float) -> str:
    return f"000000010000002A{int(when // 60) % 0xFFFFFFFF:08X}"
