"""Every action the console offers, listed: the TUI's bindings and palette, the CLI's
subcommands and resume all read this one table.
"""

from __future__ import annotations

from typing import Any

from services.backups import actions as backups
from services.backups import pitr, pitr_drill, pitr_restore, recovery, verify
from services.canary import after_deploy, control, rollout
from services.core.actions import Action, check_params, confirm_step
from services.core.container import Services
from services.core.operations import Operation
from services.environments import dev_stack, lock_break
from services.migrations import deploy as migrations
from services.migrations.expand import add_column, rename_column
from services.release import adopt, deploy, pipeline

ACTIONS: dict[str, Action] = {
    action.kind: action
    for action in (
        pipeline.release, pipeline.build_image, pipeline.push_image, deploy.deploy, deploy.rollback,
        rollout.canary, rollout.canary_watch,
        control.canary_start, control.step, control.promote, control.abort, control.scale,
        migrations.migrate, migrations.resolve, migrations.migrate_rollback,
        add_column.add_column, rename_column.rename_column,
        backups.backup, backups.prune, backups.pin, verify.verify,
        recovery.restore, recovery.restore_drill, pitr.pitr_backup, pitr_restore.pitr_restore,
        pitr_drill.pitr_drill,
        lock_break.lock_break, adopt.adopt,
    )
}

# Their production confirmation names a failing PostgreSQL or Redis (deploy and rollback always do).
PUTS_AN_IMAGE_LIVE = frozenset({"release", "canary", "canary-start"})


def all_actions() -> dict[str, Action]:
    return ACTIONS


def build_operation(services: Services, kind: str, env: str, params: dict[str, Any] | None = None) -> Operation:
    services.config.environment(env)
    if kind in dev_stack.KINDS:  # the dev stack's own commands and screen start these; resumed or retried here
        return dev_stack.rebuild(services, kind, dict(params or {}))
    try:
        spec = ACTIONS[kind]
    except KeyError:
        raise ValueError(f"unknown action {kind!r}; known: {', '.join(sorted(ACTIONS))}") from None
    check_params(spec, params or {})
    operation = spec.build(services, env, dict(params or {}))
    production = services.config.environment(env).production
    # Destructive ones, and those with their own confirm step (before `confirm_before` if named),
    # confirm already: an abort-expand asks once, after checking what it drops. A dry run (no
    # `confirm_before` step) changes nothing, so it asks nothing.
    ids = [step.id for step in operation.steps]
    at = ids.index(spec.confirm_before) if spec.confirm_before in ids else None if spec.confirm_before else 0
    confirmed = at is not None and "confirm" in (ids[:at] if spec.confirm_before else ids)
    if spec.changes_env and not spec.destructive and at is not None and not confirmed:
        if production:
            caveat = deploy.failing_caveat(services, env) if kind in PUTS_AN_IMAGE_LIVE else None
            operation.steps.insert(at, confirm_step(services, env, spec.title, caveat=caveat))
        elif kind in PUTS_AN_IMAGE_LIVE:
            operation.steps.insert(at, deploy.confirm_if_failing(services, env, spec.title))
    return after_deploy.attach(services, env, operation)  # a deploy, release or rollback is watched after
