"""Point-in-time recovery through pgBackRest: `pitr check` and the physical backup action.

`check` answers the on-call question "could I restore to any second right now?": does archiving
work (`pgbackrest check` pushes a fresh WAL segment and waits for it), does the stanza exist, which
full, differential and incremental backups are there, and how old is the last archived WAL
segment (the recovery point: what a disaster now would lose). The recovery window runs from the
oldest backup's end to that last archived segment; the migrations applied inside it are listed,
each a point "before migration X" can restore to.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from services.backups.loss import ago
from services.core.actions import Param, action
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.pitr_port import BACKUP_TYPES, AppliedMigration, Archiver, PitrBackup, PitrEngine, StanzaInfo

if TYPE_CHECKING:
    from services.core.container import Services

PROGRESS_EVERY_S = 0.25
_PERCENT = re.compile(r"\((?:[\d.]+\s*[KMGT]?B),\s*([\d.]+)%\)")


@dataclass(frozen=True)
class PitrCheck:
    env: str
    engine: str
    problems: tuple[str, ...]
    info: StanzaInfo | None
    archiver: Archiver | None
    window_from: float | None = None  # the oldest restorable time: the oldest backup's end
    window_to: float | None = None  # the last archived WAL segment's time
    migrations: tuple[AppliedMigration, ...] = field(default_factory=tuple)  # applied inside the window

    @property
    def ok(self) -> bool:
        return not self.problems

    def newest(self, backup_type: str) -> PitrBackup | None:
        found = [b for b in (self.info.backups if self.info else ()) if b.type == backup_type]
        return found[-1] if found else None

    def as_json(self) -> dict[str, Any]:
        return {"env": self.env, "engine": self.engine, "ok": self.ok, "problems": list(self.problems),
                "stanza": asdict(self.info) if self.info else None,
                "archiver": asdict(self.archiver) if self.archiver else None,
                "recovery_point_age_s": self.archiver.age_s if self.archiver else None,
                "newest": {t: asdict(b) if (b := self.newest(t)) else None for t in BACKUP_TYPES},
                "window": {"from": self.window_from, "to": self.window_to},
                "migrations_in_window": [asdict(m) for m in self.migrations]}


def check(services: Services, env: str, on_line: Any = None, run_check: bool = True) -> PitrCheck:
    """Every problem found, each with its reason; a part that cannot be read is one of them.
    `run_check` False skips `pgbackrest check` (it waits for a WAL segment to archive): the pane's poll."""
    engine = services.pitr(env)
    say = on_line or (lambda line: None)
    problems: list[str] = []
    info = archiver = None
    try:
        info = engine.info()
        if not info.exists:
            problems.append(f"stanza {info.stanza} does not exist ({info.status})")
        elif not info.backups:
            problems.append(f"stanza {info.stanza} has no backup yet: nothing to restore from (`pitr backup`)")
    except StepFailed as err:
        problems.append(str(err))
    if run_check:
        try:
            engine.check(say)
        except StepFailed as err:
            problems.append(f"archiving does not work: {err}")
    migrations: list[AppliedMigration] = []
    try:
        live = engine.live()
        archiver = live.archiver()
        if archiver.failing:
            problems.append(f"PostgreSQL's archive_command is failing: {archiver.last_failed_wal} failed"
                            f" {ago(archiver.server_now - (archiver.last_failed_at or 0))} ago,"
                            f" {archiver.failed_count} failures in all")
        migrations = live.migrations()
    except StepFailed as err:
        problems.append(f"the cluster does not answer: {err}")
    window_from = info.backups[0].stopped if info and info.backups else None
    window_to = archiver.last_archived_at if archiver else None
    inside = tuple(m for m in migrations if window_from is not None and m.started_at >= window_from)
    return PitrCheck(env, engine.describe(), tuple(problems), info, archiver, window_from, window_to, inside)


def describe(report: PitrCheck) -> list[str]:
    """The check as lines for the CLI and the pane."""
    lines = [f"{report.env}: {report.engine}"]
    if report.info:
        lines.append(f"stanza {report.info.stanza}: {report.info.status}; WAL archive {report.info.wal_min or '-'}"
                     f" .. {report.info.wal_max or '-'}")
    now = report.archiver.server_now if report.archiver else time.time()
    for backup_type in BACKUP_TYPES:
        newest = report.newest(backup_type)
        lines.append(f"newest {backup_type:<4}: " + (f"{newest.label}, {ago(now - newest.stopped)} ago,"
                                                     f" {newest.size / 1e6:.1f} MB" if newest else "none"))
    if report.archiver and report.archiver.age_s is not None:
        lines.append(f"recovery point: the last WAL segment ({report.archiver.last_archived_wal}) was archived"
                     f" {ago(report.archiver.age_s)} ago")
    elif report.archiver:
        lines.append("recovery point: no WAL segment archived since PostgreSQL started")
    if report.window_from is not None:
        lines.append(f"recovery window: {utc(report.window_from)} .. {utc(report.window_to or now)}")
    lines += [f"  migration {m.name} at {utc(m.started_at)}" for m in report.migrations]
    lines += [f"PROBLEM: {problem}" for problem in report.problems] or ["ok: archiving works"]
    return lines


# A restore target as the console writes it (a failed deploy's undo) and `pitr restore --target` reads it.
TARGET_FORMAT = "%Y-%m-%d %H:%M:%S"


def target_time(epoch: float) -> str:
    """UTC, in whole seconds rounded down: never after the instant it names."""
    return time.strftime(TARGET_FORMAT, time.gmtime(int(epoch)))


def utc(epoch: float) -> str:
    return f"{target_time(epoch)} UTC"


def archiving_works(services: Services, env: str, ctx: StepContext) -> PitrEngine:
    """Refuses (StepFailed) while archiving is broken: a physical backup without its WAL restores nothing
    past its own end, and a deploy would believe it could be undone to any second."""
    report = check(services, env, ctx.log)
    if not report.ok:
        raise StepFailed(f"point-in-time recovery of {env} is not working: {'; '.join(report.problems)}",
                         (f"`release-console pitr check --env {env}` says what fails", "fix it, then retry this step"))
    if report.archiver and report.archiver.age_s is not None:
        ctx.log(f"archiving works: the last WAL segment was archived {ago(report.archiver.age_s)} ago")
    return services.pitr(env)


def take_physical_backup(services: Services, env: str, backup_type: str, ctx: StepContext) -> str:
    """A pgBackRest backup, its progress read from pgBackRest's per-file lines; returns its label."""
    engine = services.pitr(env)
    before = {b.label for b in engine.info().backups}
    last = [0.0]

    def line(text: str) -> None:
        found = _PERCENT.search(text)
        if found is None:
            ctx.log(text)
        elif time.monotonic() - last[0] >= PROGRESS_EVERY_S:
            last[0] = time.monotonic()
            ctx.progress(float(found.group(1)), 100.0, "%")

    engine.backup(backup_type, line)
    ctx.progress(100.0, 100.0, "%")
    made = [b for b in engine.info().backups if b.label not in before]
    if not made:
        raise StepFailed(f"pgBackRest finished but lists no new {backup_type} backup", ("pitr check --env " + env,))
    return made[-1].label


@action("pitr-backup", "Take a pgBackRest backup (full, diff or incr)", changes_env=False, params=(
    Param("type", "full, diff or incr", default="incr",
          check=lambda value: value in BACKUP_TYPES or _bad_type(value)),
))
def pitr_backup(services: Services, env: str, params: dict[str, Any]) -> Operation:
    backup_type = str(params.get("type") or "incr")

    def checked(ctx: StepContext) -> str:
        archiving_works(services, env, ctx)
        return "archiving works"

    def run(ctx: StepContext) -> str:
        ctx.state["label"] = take_physical_backup(services, env, backup_type, ctx)
        return f"{backup_type} backup {ctx.state['label']}"

    return Operation("pitr-backup", env, f"pgBackRest {backup_type} backup of {env}", [
        Step("check", "Check that WAL archiving works", checked),
        Step("backup", f"pgBackRest {backup_type} backup", run),
    ], params, takes_lock=False)


def _bad_type(value: str) -> bool:
    raise ValueError(f"type {value!r}: one of {', '.join(BACKUP_TYPES)}")


def pitr_covers(services: Services, env: str) -> bool:
    """[backup.pitr] names `env`: it has a recovery window to show."""
    settings = services.config.backup.pitr
    return settings is not None and settings.environment == env


def read_window(services: Services, env: str) -> PitrCheck:
    """The recovery window as the backups pane polls it: without `pgbackrest check`, which would push a
    WAL segment at every poll."""
    return check(services, env, run_check=False)
