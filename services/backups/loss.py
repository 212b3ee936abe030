"""What a disaster-recovery restore loses, said before it is confirmed: the backup's time and age
(every write since then is lost), and each integrity table's rows now against in the backup.

The backup's counts come from the backup itself: its manifest records them right after the dump
(inside the signed text), or, for an older backup, the counts of a trial restore (verified.json).
The live counts come from the live database; when it cannot be reached (often why one restores),
the confirmation says so instead of failing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.backups.trust import signature_problem
from services.backups.verify import read_manifest, read_verification, store_of

if TYPE_CHECKING:
    from services.backups.catalog import BackupEntry
    from services.core.container import Services
    from services.core.operations import StepContext

NOT_RECORDED = "not recorded in this backup"


@dataclass(frozen=True)
class Loss:
    env: str
    backup_id: str
    taken: float  # when the backup was taken (epoch seconds)
    age_s: float
    tables: tuple[str, ...]
    now: dict[str, int] | None  # None: the live database could not be read
    now_problem: str
    backup: dict[str, int] | None  # None: not recorded in this backup
    backup_source: str  # where the backup's counts come from, or NOT_RECORDED

    def lines(self) -> list[str]:
        """The confirmation's plan, in lines of at most 64 characters (the confirm modal's width at 80x24)
        but for an error's own text."""
        lines = [f"restore backup {self.backup_id},",
                 f"taken {utc(self.taken)}, {ago(self.age_s)} ago.",
                 f"Every write to {self.env} since then will be LOST."]
        if self.now is None:
            lines.append(f"The live database cannot be read now: {self.now_problem}")
        width = max([10, *map(len, self.tables)])
        lines.append(f"  {'table':<{width}} {'now':>8} {'in backup':>10} {'change':>8}")
        for table in self.tables:
            now, then = _count(self.now, table), _count(self.backup, table)
            change = f"{now - then:+d}".replace("+0", "0") if isinstance(now, int) and isinstance(then, int) else "?"
            lines.append(f"  {table:<{width}} {now:>8} {then:>10} {change:>8}")
        lines.append(f"Backup counts: {NOT_RECORDED}" if self.backup is None else
                     f"Backup counts: from {self.backup_source}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"backup_id": self.backup_id, "taken_at": utc(self.taken), "age_s": round(self.age_s),
                "rows": {t: {"now": (self.now or {}).get(t), "backup": (self.backup or {}).get(t)}
                         for t in self.tables},
                "now_problem": self.now_problem or None,
                "backup_counts_from": self.backup_source}


def assess(services: Services, env: str, entry: BackupEntry) -> Loss:
    """What restoring `entry` into `env` would lose, as far as can be told now."""
    tables = tuple(services.config.migrations.integrity_tables)
    backup, source = backup_counts(services, env, entry.id)
    try:
        now, problem = services.database(env).row_counts(tables), ""
    except Exception as err:  # noqa: BLE001 - an unreachable database is said, never a failed confirmation
        now, problem = None, str(err) or type(err).__name__
    return Loss(env, entry.id, entry.created, services.clock.now() - entry.created, tables, now, problem, backup,
                source)


def say_loss(services: Services, env: str, entry: BackupEntry, ctx: StepContext) -> None:
    """Log what restoring `entry` loses and make it the plan the confirmation that follows shows."""
    loss = assess(services, env, entry)
    for line in loss.lines():
        ctx.log(line, "warning" if "LOST" in line or "cannot be read" in line else "info")
    ctx.state.update(loss=loss.to_json(), plan="\n".join(loss.lines()))


def backup_counts(services: Services, env: str, backup_id: str) -> tuple[dict[str, int] | None, str]:
    """The integrity tables' rows in the backup, and where they come from: its manifest, else a trial
    restore's verified.json, else (None, NOT_RECORDED)."""
    manifest = read_manifest(store_of(services, env, backup_id), env, backup_id)
    recorded = _counts(manifest.get("row_counts"))
    if recorded is not None:
        key = services.config.backup.signing_key
        kind, _ = signature_problem(manifest, key.get_secret_value() if key else None)
        trust = {"": "signed", "unsigned": "signature not checked", "mismatch": "signature does NOT match"}[kind]
        return recorded, "its signed manifest" if not kind else f"its manifest ({trust})"
    verification = read_verification(services, env, backup_id) or {}
    tried = _counts(verification.get("counts")) if verification.get("ok") else None
    if tried:
        return tried, f"its trial restore of {utc(float(verification.get('when') or 0))}"
    return None, NOT_RECORDED


def utc(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))


def ago(seconds: float) -> str:
    """9 h 12 min; 42 min; 3 days 4 h."""
    hours, minutes = divmod(int(max(0.0, seconds) // 60), 60)
    if not hours:
        return f"{minutes} min"
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h"


def _counts(value: Any) -> dict[str, int] | None:
    if not isinstance(value, dict):
        return None
    return {str(t): n for t, n in value.items() if isinstance(n, int) and not isinstance(n, bool)}


def _count(counts: dict[str, int] | None, table: str) -> int | str:
    """The rows, "?" when the counts are unknown, "-" when the table is not in that database."""
    return "?" if counts is None else counts.get(table, "-")
