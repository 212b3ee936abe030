"""The sandbox's pgBackRest: a stanza with a month of backups, WAL archived every few seconds, and a
cluster whose rows and migrations are the world's. A restore to a time takes back the migrations
applied after it (they are pending again). Nothing is drawn from the world's random generator, so
the rest of the seeded world stays as it was.
"""

from __future__ import annotations

import time

from services.core.pitr_port import BACKUP_TYPES, AppliedMigration, Archiver, PitrBackup, StanzaInfo
from services.core.ports import OnLine
from services.sandbox.world import World

DAY = 86400.0
SYSTEM_ID = 7316224720815728340
# (days before the world's start, type): a weekly full, a diff mid-week, an incr the other days.
SCHEDULE = [(29 - day, "full" if day % 7 == 0 else "diff" if day % 7 == 3 else "incr") for day in range(29)]


class SandboxCluster:
    def __init__(self, world: World, env: str) -> None:
        self.world, self.env = world, env

    def describe(self) -> str:
        return "the live cluster (sandbox)"

    def migrations(self) -> list[AppliedMigration]:
        return [AppliedMigration(m.name, m.started_at, m.finished_at) for m in self.world.envs[self.env].migrations
                if m.state == "applied" and m.started_at is not None]

    def archiver(self) -> Archiver:
        now = self.world.clock.now()
        archived_at = now - (now % 60) % 7  # archive_timeout 60s: a segment a few seconds ago
        return Archiver(int(now // 60) % 100000, _segment(archived_at), archived_at, 0, None, None, now)


class SandboxPitr:
    def __init__(self, world: World, env: str) -> None:
        self.world, self.env = world, env
        self.extra: list[PitrBackup] = []

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
        return SandboxCluster(self.world, self.env)


def _label(when: float, kind: str) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(when)) + {"full": "F", "diff": "D", "incr": "I"}[kind]


def _segment(when: float) -> str:
    return f"000000010000002A{int(when // 60) % 0xFFFFFFFF:08X}"
