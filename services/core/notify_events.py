"""Which notifications an operation's start and end send, by its kind and outcome.

The runner calls these once per operation, so every operation is covered without a line in any
action: "operation.*" for all, and the events of particular kinds (a migration applied, a backup
failed, a restore started) beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.core.events import Outcome
from services.core.ports import Notification, Notifier
from services.core.references import version_of

ROLLBACKS = frozenset({"rollback", "migrate-rollback", "abort"})  # a success of these is a roll back
_ON_START = {"restore": ("restore.started", "warning")}
_ON_END: dict[tuple[str, Outcome], tuple[str, str]] = {
    ("migrate", Outcome.SUCCEEDED): ("migration.applied", "info"),
    ("migrate", Outcome.FAILED): ("migration.failed", "critical"),
    ("backup", Outcome.FAILED): ("backup.failed", "critical"),
    ("verify", Outcome.FAILED): ("verify.failed", "critical"),
    ("restore-drill", Outcome.FAILED): ("verify.failed", "critical"),
    ("restore", Outcome.SUCCEEDED): ("restore.completed", "warning"),
}
_OUTCOME = {
    Outcome.SUCCEEDED: ("operation.succeeded", "info"),
    Outcome.FAILED: ("operation.failed", "critical"),
    Outcome.CANCELLED: ("operation.cancelled", "warning"),
    Outcome.DECLINED: ("operation.cancelled", "info"),
}


def version_in(params: Mapping[str, Any]) -> str:
    """The version an operation is about, when its parameters say: a version, or an image's tag."""
    if version := params.get("version"):
        return str(version)
    if image := params.get("image"):
        try:
            return version_of(str(image))
        except ValueError:
            return ""
    return ""


def started(kind: str, env: str, op_id: str, title: str, params: Mapping[str, Any],
            resumed_at: int = 0) -> list[Notification]:
    what = f"{title}: resumed at step {resumed_at + 1}" if resumed_at else f"{title}: started"
    events = [("operation.started", "info")] + ([_ON_START[kind]] if kind in _ON_START else [])
    return [Notification(env, version_in(params), what, severity, event, kind, op_id)
            for event, severity in events]


def finished(kind: str, env: str, op_id: str, title: str, params: Mapping[str, Any], outcome: Outcome,
             detail: str, state: Mapping[str, Any] | None = None) -> list[Notification]:
    """`state`: the operation's journaled state; a migrate that applied none (state["applied"] == [])
    sends no migration.applied."""
    event, severity = _OUTCOME[outcome]
    if outcome is Outcome.SUCCEEDED and kind in ROLLBACKS:
        event, severity = "operation.rolled_back", "warning"
    events = [(event, severity)] + ([_ON_END[kind, outcome]] if (kind, outcome) in _ON_END else [])
    if kind == "migrate" and (state or {}).get("applied") == []:
        events = [(name, sev) for name, sev in events if name != "migration.applied"]
    what = f"{title}: {outcome.value}: {detail}"
    return [Notification(env, version_in(params), what, sev, name, kind, op_id) for name, sev in events]


def takeover(kind: str, env: str, op_id: str, holder: str, pid: int | None) -> Notification:
    return Notification(env, "", f"{env}'s release lock taken over from {holder} (process {pid} is gone)",
                        "warning", "lock.taken_over", kind, op_id)


def broken(kind: str, env: str, op_id: str, what: str) -> Notification:
    """A held lock deleted: `lock break`, or a restore replacing the lock row its backup brought back."""
    return Notification(env, "", what, "warning", "lock.broken", kind, op_id)


def tell(notifier: Notifier | None, notes: list[Notification]) -> None:
    """Hand notifications to the notifier (which sends them in the background); never raises."""
    if notifier is None:
        return
    for note in notes:
        try:
            notifier.notify(note)
        except Exception:  # noqa: BLE001, S112 - telling the team must never change what it reports
            continue
