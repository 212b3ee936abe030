"""Every action the console offers, by kind: title, whether it is destructive, and its builder.

The TUI's bindings and palette, the CLI's subcommands and resume all read this one table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.operations import Operation, Step, StepContext, StepFailed

if TYPE_CHECKING:
    from services.factory import Services

Builder = Callable[["Services", str, dict[str, Any]], Operation]


@dataclass(frozen=True)
class Param:
    """A parameter an action asks for: the CLI makes it a flag, the TUI a form field."""

    name: str
    help: str
    default: str = ""
    required: bool = False
    switch: bool = False  # a yes/no flag (--dry-run); the TUI has no field for it: its plan step shows first
    form: bool = True  # False: a CLI flag only, not asked in the TUI's form (the release's version: from git)
    # Checks a given value before the operation starts (raises ValueError or StepFailed with the reason).
    check: Callable[[str], object] | None = None

    @property
    def in_form(self) -> bool:
        return self.form and not self.switch


@dataclass(frozen=True)
class Action:
    kind: str
    title: str
    destructive: bool
    build: Builder
    changes_env: bool = True
    # In production, the typed confirmation comes right before this step (default: the first).
    confirm_before: str | None = None
    params: tuple[Param, ...] = ()


ACTIONS: dict[str, Action] = {}


def action(
    kind: str, title: str, destructive: bool = False, changes_env: bool = True, confirm_before: str | None = None,
    params: tuple[Param, ...] = (),
) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        ACTIONS[kind] = Action(kind, title, destructive, build, changes_env, confirm_before, params)
        return build

    return register


def build_operation(services: Services, kind: str, env: str, params: dict[str, Any] | None = None) -> Operation:
    _load_all()
    services.config.environment(env)
    try:
        spec = ACTIONS[kind]
    except KeyError:
        raise ValueError(f"unknown action {kind!r}; known: {', '.join(sorted(ACTIONS))}") from None
    check_params(spec, params or {})
    operation = spec.build(services, env, dict(params or {}))
    production = services.config.environment(env).production
    # Destructive ones, and those with their own confirm step before `confirm_before`, confirm
    # already. A dry run (no `confirm_before` step) changes nothing, so it asks nothing.
    ids = [step.id for step in operation.steps]
    at = ids.index(spec.confirm_before) if spec.confirm_before in ids else None if spec.confirm_before else 0
    confirmed = at is not None and "confirm" in ids[:at]
    if production and spec.changes_env and not spec.destructive and at is not None and not confirmed:
        operation.steps.insert(at, confirm_step(services, env, spec.title))
    return operation


def check_params(spec: Action, params: dict[str, Any]) -> None:
    """Every key must be a declared Param: a misspelt one would silently fall back to a default.

    Here rather than in the CLI, so the TUI and a resumed operation are held to it too.
    """
    known = [p.name for p in spec.params]
    unknown = sorted(set(params) - set(known))
    if unknown:
        listed = ", ".join(known) if known else "none: it takes no parameters"
        raise ValueError(f"unknown parameter {', '.join(map(repr, unknown))} for {spec.kind}; known: {listed}")
    for param in spec.params:
        value = params.get(param.name)
        if param.check is not None and value not in (None, ""):
            try:
                param.check(str(value))
            except (ValueError, StepFailed) as err:
                raise ValueError(str(err)) from None


def confirm_step(services: Services, env: str, what: str | Callable[[StepContext], str], title: str = "") -> Step:
    """A destructive action's first step: production needs its name typed, others a yes.

    `what` may be worked out from earlier steps (the revision chosen). A plan step before it
    (ctx.state["plan"]) is summed up in the prompt: what will change.
    """
    production = services.config.environment(env).production
    title = title or (what if isinstance(what, str) else "the change")

    def run(ctx: StepContext) -> str:
        what_now = what if isinstance(what, str) else what(ctx)
        plan = f"\nPlan: {ctx.state['plan']}" if ctx.state.get("plan") else ""
        if production:
            ctx.confirm(f"{what_now} in PRODUCTION.{plan}\nType '{env}' to confirm.", expected=env)
        else:
            ctx.confirm(f"{what_now} in {env}?{plan}")
        return "confirmed"

    return Step("confirm", f"Confirm: {title}", run)


def all_actions() -> dict[str, Action]:
    _load_all()
    return ACTIONS


def _load_all() -> None:
    # Importing the modules registers their actions.
    from services import canary, canary_control, deploy, lock_break, pipeline, recovery  # noqa: F401
    from services.backups import actions as backups  # noqa: F401
    from services.backups import verify  # noqa: F401
    from services.migrations import deploy as migrate  # noqa: F401
    from services.migrations import expand  # noqa: F401
