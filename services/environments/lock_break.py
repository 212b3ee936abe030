"""Breaking a release lock: the one operation behind `lock break` and the TUI's L.

It shows who holds the lock, asks why (the reason goes into the audit trail), asks for the
confirmation (production: the environment name typed), records the intent with the holder's
identity in the audit trail, locally and shared, and only then deletes that exact holder's row:
if the lock changed hands since it was shown, nothing is deleted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.core import notify_events
from services.core.actions import action, confirm_step
from services.core.locks import LockInfo, LockUnknown
from services.core.operations import Operation, Step, StepContext, StepFailed

if TYPE_CHECKING:
    from services.core.container import Services


@action("lock-break", "Break the release lock (someone else's, or a dead process's)", destructive=True)
def lock_break(services: Services, env: str, params: dict[str, Any]) -> Operation:
    def shown(ctx: StepContext) -> LockInfo:
        """The holder read in the first step (kept in the state for a resume): the only one ever deleted."""
        return LockInfo(**ctx.state["holder"])

    def holder(ctx: StepContext) -> str:
        try:
            held = services.locks.holder(env)
        except LockUnknown as err:
            raise StepFailed(f"cannot tell who holds {env}'s lock: {err}",
                             ("check that the database is reachable, then retry",)) from None
        if held is None:
            ctx.state["free"] = True
            return "free: nothing to break"
        ctx.state["holder"] = held.fields()
        ctx.log(f"{env} is locked by {held.describe()}")
        ctx.log(f"  host {held.host or '?'}, boot {held.boot_id or '?'}, ssh {held.ssh_client or '-'}")
        return held.describe()

    def reason(ctx: StepContext) -> str:
        if ctx.state.get("free"):
            return "skipped: the lock is free"
        return ctx.ask_reason(f"Why break {env}'s release lock held by {shown(ctx).holder}? (kept in the audit trail)")

    confirm = confirm_step(services, env, lambda ctx: f"Break {env}'s release lock held by {shown(ctx).describe()}",
                           "Break the lock",
                           unless=lambda ctx: "skipped: the lock is free" if ctx.state.get("free") else None)

    def delete(ctx: StepContext) -> str:
        if ctx.state.get("free"):
            return "nothing to break"
        held, why = shown(ctx), ctx.state.get("override_reason")
        # The intent is on record, with the holder down to its process, before anything is deleted.
        services.audit.append(env, "lock-break", {"holder": held.fields()}, "breaking", why)
        if services.audit.shared_problem:
            ctx.log(f"warning: {services.audit.shared_problem}")
        if not services.locks.force_release(env, held):
            raise StepFailed(f"not broken: {env}'s lock changed hands since it was shown; nothing was deleted",
                             ("release-console lock status", "run the break again if it is still stale"))
        done = f"released {env}'s lock held by {held.describe()}"
        notify_events.tell(services.notifier, [notify_events.broken("lock-break", env, ctx.op_id, f"{done}: {why}")])
        return done

    return Operation("lock-break", env, f"Break {env}'s release lock", [
        Step("holder", "Show who holds the lock", holder),
        Step("reason", "Ask why (kept in the audit trail)", reason),
        confirm,
        Step("break", "Record the break, then delete that holder's lock", delete),
    ], params, takes_lock=False)
