"""What an action is: its parameters, its builder, and the confirm step destructive ones start with.

A leaf: capability modules declare their actions with `action`, and services/catalog.py lists
them; nothing here imports a capability.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.core.operations import Operation, Step, StepContext, StepFailed

if TYPE_CHECKING:
    from services.core.config import ReleaseConfig
    from services.core.container import Services

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
    # Where the default comes from when it is not the literal `default` above:
    from_config: str = ""  # a value of the loaded config, dotted: "recovery.health_tries"
    default_is: str = ""  # one worked out when it runs, in words: "the newest complete backup"
    example: str = ""  # shown when there is no default: "Ingredient"

    @property
    def in_form(self) -> bool:
        return self.form and not self.switch

    def default_for(self, config: ReleaseConfig | None) -> str:
        """What an empty field or an absent flag stands for: the config's value at `from_config`, else the
        literal default ("" when neither, or when there is no config to read it from)."""
        if self.from_config:
            return shown(config_value(config, self.from_config)) if config is not None else ""
        return self.default

    def value(self, params: Mapping[str, Any], config: ReleaseConfig | None) -> str:
        """The value an operation runs with: as given, else its default. Builders read a defaulted
        parameter through this, so the form, --help and the operation cannot disagree."""
        given = params.get(self.name)
        return str(given) if given not in (None, "") else self.default_for(config)

    def hint(self, config: ReleaseConfig | None) -> str:
        """Its default as the form and --help say it ("default 30, from recovery.health_tries", "default
        1000", "default: the newest complete backup"), else an example ("e.g. Ingredient"), else ""."""
        if self.from_config:
            value = self.default_for(config)
            return f"default {value}, from {self.from_config}" if value else f"default from {self.from_config}"
        if self.default:
            return f"default {self.default}"
        if self.default_is:
            return f"default: {self.default_is}"
        return f"e.g. {self.example}" if self.example else ""

    def placeholder(self, config: ReleaseConfig | None) -> str:
        """An empty form field's text: never the param's name, which would read as a value typed in.
        Without a default: "required, e.g. Ingredient"; an example alone ("e.g. now()": its help says
        when it is needed); else "optional"."""
        hint = self.hint(config)
        if self.required and not (self.default or self.from_config or self.default_is):
            return ", ".join(filter(None, ("required", hint)))
        return hint or "optional"


def config_value(config: ReleaseConfig, dotted: str) -> object:
    """The loaded config's value at a dotted path ("canary.weight_percent"); a path that names no
    setting is a ValueError naming it (a unit test resolves every declared one)."""
    value: object = config
    for part in dotted.split("."):
        if not hasattr(value, part):
            raise ValueError(f"{dotted!r} names no config setting ({part!r} is unknown)")
        value = getattr(value, part)
    return value


def shown(value: object) -> str:
    """A config value as a parameter's text: 10.0 as "10", True as "true", a list comma-separated."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ",".join(map(shown, value))
    return str(value)


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

    def __call__(self, services: Services, env: str, params: dict[str, Any]) -> Operation:
        return self.build(services, env, params)


def action(
    kind: str, title: str, destructive: bool = False, changes_env: bool = True, confirm_before: str | None = None,
    params: tuple[Param, ...] = (),
) -> Callable[[Builder], Action]:
    """Declares a builder as an action; services/catalog.py lists it."""

    def declare(build: Builder) -> Action:
        return Action(kind, title, destructive, build, changes_env, confirm_before, params)

    return declare


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
        if problem := param_problem(param, params.get(param.name)):
            raise ValueError(problem)


def param_problem(param: Param, value: object) -> str | None:
    """What is wrong with `value` for `param`, in its check's words; None when nothing is (or empty).

    The TUI's form asks it field by field, so a bad value is said with the form still open."""
    if param.check is None or value in (None, ""):
        return None
    try:
        param.check(str(value))
    except (ValueError, StepFailed) as err:
        return str(err)
    return None


def confirm_step(services: Services, env: str, what: str | Callable[[StepContext], str], title: str = "",
                 unless: Callable[[StepContext], str | None] | None = None,
                 caveat: Callable[[StepContext], str] | None = None, step_id: str = "confirm") -> Step:
    """A destructive action's first step: production needs its name typed, others a yes.

    `what` may be worked out from earlier steps (the revision chosen). A plan step before it
    (ctx.state["plan"]) is summed up in the prompt: what will change. `unless` says why nothing
    needs confirming (the lock is free already), or None: then it asks. `caveat` adds lines to the
    prompt, worked out as it asks ("" for none): a deploy names a failing dependency. `step_id`
    tells a second confirmation in one operation from the first (a canary's promotion).
    """
    title = title or (what if isinstance(what, str) else "the change")

    def run(ctx: StepContext) -> str:
        skipped = unless(ctx) if unless else None
        if skipped:
            return skipped
        what_now = what if isinstance(what, str) else what(ctx)
        plan = f"\nPlan: {ctx.state['plan']}" if ctx.state.get("plan") else ""
        confirm_now(services, env, ctx, what_now, plan + (caveat(ctx) if caveat else ""))
        return "confirmed"

    return Step(step_id, f"Confirm: {title}", run)


def confirm_now(services: Services, env: str, ctx: StepContext, what: str, more: str = "") -> None:
    """confirm_step's question, asked inside a step that confirms only when it has something to
    (retention after a backup: only when its dry run lists deletions). Production needs its name
    typed, others a yes; raises Declined otherwise. `more` follows the first line ("\nPlan: ...")."""
    if services.config.environment(env).production:
        ctx.confirm(f"{what} in PRODUCTION.{more}\nType '{env}' to confirm.", expected=env)
    else:
        ctx.confirm(f"{what} in {env}?{more}")
