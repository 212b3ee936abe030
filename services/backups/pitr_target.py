"""A point-in-time target, as the restore walkthrough and the drill both take it.

A target is `YYYY-MM-DD HH:MM:SS` (UTC), `before:MIGRATION` (that migration's started_at, as
_prisma_migrations recorded it, less [backup.pitr] margin_s), or a backup label from `pitr check`
(recovery stops as soon as that backup is consistent). It is resolved against the recovery window
before anything stops or is copied, and what a later step needs goes into ctx.state (journaled).
"""

from __future__ import annotations

import calendar
import re
import time
from typing import TYPE_CHECKING, Any

from services.backups.pitr import TARGET_FORMAT, target_time, utc
from services.backups.recovery import counts_text
from services.core.actions import Param
from services.core.operations import StepContext, StepFailed
from services.core.pitr_port import BACKUP_LABEL, Cluster, PitrBackup, RecoveryTarget

if TYPE_CHECKING:
    from services.core.container import Services

_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_MIGRATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
SHAPES = "a UTC time YYYY-MM-DD HH:MM:SS, before:MIGRATION_NAME, or a backup label"
POLL_S = 1.0  # between reads of pg_is_in_recovery(); the first come sooner (FIRST_POLL_S, growing)
FIRST_POLL_S = 0.1  # a short replay ends within a second: seen then, not at the first whole second


def parse_target(text: str) -> tuple[str, str | float]:
    """("time", epoch seconds), ("before", migration name) or ("backup", label); ValueError with the shapes."""
    text = text.strip()
    if text.startswith("before:"):
        name = text.removeprefix("before:").strip()
        if not _MIGRATION.fullmatch(name):
            raise ValueError(f"{name!r} is not a migration name (letters, digits, '_', '.', '-')")
        return "before", name
    if BACKUP_LABEL.fullmatch(text):
        return "backup", text
    if _TIME.fullmatch(text):
        try:
            return "time", float(calendar.timegm(time.strptime(text, TARGET_FORMAT)))
        except ValueError:
            pass
    raise ValueError(f"target {text!r}: {SHAPES} (20261206-161251F)")


TARGET = Param("target", SHAPES, required=True, check=parse_target, example="2026-12-06 14:30:00")


def pgbackrest_time(epoch: float) -> str:
    """The target as pgBackRest's --target gets it: UTC to the microsecond, offset written out."""
    whole = int(epoch // 1)
    return target_time(whole) + f".{round((epoch - whole) * 1e6):06d}+00"


def recovery_target(state: dict[str, Any]) -> RecoveryTarget:
    label = state.get("target_backup")
    return RecoveryTarget(backup=label) if label else RecoveryTarget(time=state["target_time"])


def resolve(services: Services, env: str, text: str, ctx: StepContext) -> str:
    """The target inside the recovery window, or StepFailed with the window; nothing is changed."""
    engine, margin_s = services.pitr(env), services.config.backup.pitr.margin_s if services.config.backup.pitr else 0
    kind, wanted = parse_target(text)
    live = engine.live()
    applied = live.migrations()
    # The window's end: a commit now, then `pgbackrest check` switches the WAL and waits for it to be
    # archived. Any second up to that commit can then be reached.
    sealed = live.mark_now()
    engine.check(ctx.log)
    info = engine.info()
    if not info.backups:
        raise StepFailed(f"stanza {info.stanza} has no backup: nothing to restore from", ("`pitr backup`",))
    label = None
    if kind == "before":
        found = [m for m in applied if m.name == wanted]
        if not found:
            recent = ", ".join(m.name for m in applied[-3:]) or "none"
            raise StepFailed(f"migration {wanted} is not applied in {env} (the newest: {recent})",
                             ("name an applied migration: `pitr check` lists those in the window",))
        target = found[0].started_at - margin_s
        ctx.log(f"migration {wanted} started at {utc(found[0].started_at)}; the target is {margin_s:g}s before:"
                f" {utc(target)}")
    elif kind == "backup":
        backup = next((b for b in info.backups if b.label == wanted), None)
        if backup is None:
            newest = ", ".join(b.label for b in info.backups[-3:])
            raise StepFailed(f"backup {wanted} is not in stanza {info.stanza} (the newest: {newest})",
                             ("name a backup `pitr check` lists",))
        target, label = backup.stopped, backup.label
        ctx.log(f"backup {label} ({backup.type}) ended at {utc(target)}: recovery stops once it is consistent")
    else:
        target = float(wanted)
    oldest = info.backups[0]
    window = f"the recovery window is {utc(oldest.stopped)} .. {utc(sealed)}"
    if target < oldest.stopped:
        raise StepFailed(f"{utc(target)} is before the oldest backup's end ({oldest.label}, {utc(oldest.stopped)}):"
                         f" nothing older can be restored; {window}", ("choose a target inside the window",))
    if target > sealed:
        raise StepFailed(f"{utc(target)} is after the last archived WAL ({utc(sealed)}); {window}",
                         ("choose a target inside the window",))
    undone = [m.name for m in applied if m.started_at > target]
    counts = live.row_counts(services.config.migrations.integrity_tables)
    ctx.state.update(target=target, target_time=pgbackrest_time(target), target_backup=label, undone=undone,
                     counts_before=counts, head_before=applied[-1].name if applied else None,
                     restore_size=_restored_from(info.backups, target).size)
    ctx.log(window)
    ctx.log(f"migrations applied after the target, undone by a restore to it: {', '.join(undone) or 'none'}")
    ctx.log(f"rows now: {counts_text(counts)}; every write after the target is lost to a restore")
    return f"{utc(target)}; undoes {len(undone)} migration{'' if len(undone) == 1 else 's'}"


def _restored_from(backups: tuple[PitrBackup, ...], target: float) -> PitrBackup:
    """The backup pgBackRest restores for a target: the newest that ended by then."""
    return [b for b in backups if b.stopped <= target][-1]


def wait_recovered(services: Services, cluster: Cluster, ctx: StepContext) -> float:
    """Seconds until `cluster` leaves recovery (promoted); StepFailed past [backup.pitr] recovery_timeout_s."""
    settings = services.config.backup.pitr
    assert settings is not None  # services.pitr answered first
    began = time.monotonic()
    deadline = began + services.real_seconds(settings.recovery_timeout_s)
    last, interval = "", FIRST_POLL_S
    while True:
        try:
            if not cluster.in_recovery():
                return time.monotonic() - began
            said = "replaying WAL"
        except StepFailed as err:  # still starting up: it does not answer yet
            said = str(err)
        if time.monotonic() >= deadline:
            raise StepFailed(f"recovery did not end within {settings.recovery_timeout_s:g}s ({said})",
                             ("look at PostgreSQL's log", "retry this step to wait again",
                              "raise [backup.pitr] recovery_timeout_s"))
        if said != last:  # a line when it changes, not one a poll
            ctx.log(f"in recovery: {said}")
            last = said
        ctx.sleep(services.real_seconds(interval))
        interval = min(interval * 2, POLL_S)


def read_restored(services: Services, cluster: Cluster, ctx: StepContext) -> tuple[str | None, dict[str, int]]:
    """The migration head and the integrity tables' rows of a restored cluster; StepFailed when a
    migration after the target is still applied (recovery did not stop at the target)."""
    applied = [m.name for m in cluster.migrations()]
    still = [name for name in ctx.state["undone"] if name in applied]
    if still:
        raise StepFailed(f"migrations after the target are still applied in {cluster.describe()}: {', '.join(still)}",
                         ("look at PostgreSQL's log: did recovery stop at the target?",))
    counts = cluster.row_counts(services.config.migrations.integrity_tables)
    head = applied[-1] if applied else None
    ctx.log(f"{cluster.describe()}: migration head {head or 'none'}; rows: {counts_text(counts)}")
    return head, counts
