"""Deploy and rollback through the environment's deploy target, with a plan shown first and
every revision recorded: image digest, who, when, the migration head and the backup before.

What a target runs is pinned to a digest (repo:tag@sha256:...): the one the resolve step found,
or the one a revision recorded for a rollback. A tag pushed again after the plan changes nothing,
and a rollback whose digest the registry no longer holds is refused, never run by its tag."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from services.core.actions import Param, action, confirm_step
from services.core.audit import who
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.ports import Change, Deploy, Plan, Revision
from services.core.references import check_reference, check_tag, digest_of, pinned, unpinned, version_of
from services.environments.health import Check, failing_dependencies, named
from services.migrations.lint import lint_migrations

if TYPE_CHECKING:
    from services.core.container import Services

# Lint rules whose migrations the previous app version cannot live with: it still reads the
# dropped or renamed column or table, or inserts rows without the new NOT NULL column.
BREAKS_OLD_CODE = frozenset({"dropping-column", "dropping-table", "renaming-column", "renaming-table",
                             "changing-column-type", "setting-not-null", "adding-not-null-without-default"})

DRY_RUN = Param("dry_run", "show the plan (what would change) and apply nothing", switch=True)


def image_reference(services: Services, wanted: str) -> str:
    """A tag ("1.4.2") means the app's image at that tag; anything with ':' or '/' is a full reference.

    Bad input is a ValueError: refused before the operation starts.
    """
    if not wanted.strip():
        raise ValueError("no version given: pass --version TAG (or a full image reference)")
    # Not stripped before the check: a version with a newline is refused, never trimmed into shape.
    if ":" in wanted or "/" in wanted or "@" in wanted:
        return check_reference(wanted, "version")
    return f"{services.config.app.image}:{check_tag(wanted)}"


def resolve_step(services: Services, reference: Callable[[StepContext], str]) -> Step:
    """Look the image up in the registry first: a missing image fails here, before anything changes.

    What it finds is what runs: ctx.state["image"] is the reference pinned to the digest found now
    (repo:tag@sha256:...), so a tag pushed again later does not change the bits deployed."""

    def run(ctx: StepContext) -> str:
        image = reference(ctx)
        digest = services.registry.digest(image)
        if digest is None:
            raise StepFailed(f"{image} is not in the registry", (
                "check the tag (release-console history shows what was deployed before)",
                "push it first: release-console push --version TAG, or run the pipeline"))
        ctx.state["image"], ctx.state["digest"] = pinned(image, digest), digest
        return f"{unpinned(image)} {digest[:19]}"

    return Step("resolve", "Find the image in the registry", run)


def plan_step(services: Services, env: str, change: Callable[[StepContext], Change]) -> Step:
    def run(ctx: StepContext) -> str:
        wanted = change(ctx)
        plan = services.target(env).plan(wanted)
        log_plan(plan, ctx.log)
        ctx.state["plan"] = describe_plan(plan)
        image = getattr(wanted, "image", None)  # a deploy or a canary: the tag and the digest it runs
        if image and (digest := digest_of(image)):
            ctx.log(f"runs {unpinned(image)} at {digest}")
            ctx.state["plan"] += f"; runs {version_of(image)} at {digest[:19]}"
        return str(ctx.state["plan"])

    return Step("plan", "Plan: what will change", run)


def log_plan(plan: Plan, log: Callable[[str], None]) -> None:
    log(f"plan for {plan.target}:")
    for change in plan.changes:
        log(f"  {change.action:<9} {change.kind} {change.name}")
        for line in change.diff.splitlines():
            log(f"    {line}")


def describe_plan(plan: Plan) -> str:
    changed = [c for c in plan.changes if c.action != "unchanged"]
    if not changed:
        return "nothing to change"
    return ", ".join(f"{c.action} {c.kind} {c.name}" for c in changed)


def record_revision(services: Services, env: str, ctx: StepContext, image: str, action_name: str) -> Revision:
    """The new revision, with the migration head and the newest backup as they are now."""
    from services.backups.catalog import list_backups  # the catalog imports this module's siblings

    head = _noted(ctx, "the migration head", lambda: _last(m.name for m in services.database(env).status()
                                                           if m.state == "applied"))
    backup = _noted(ctx, "the newest backup", lambda: _last(b.id for b in list_backups(services, env) if b.complete))
    digest = digest_of(image) or ctx.state.get("digest") or services.registry.digest(image) or ""
    user = who()
    revision = services.revisions(env).record(
        unpinned(image), digest, user["user"] + (f" ({user['ssh_client'].split()[0]})" if user["ssh_client"] else ""),
        head, backup, action_name)
    ctx.state["revision"] = revision.number
    return revision


def _last(names: Iterable[str]) -> str | None:
    return ([None, *names])[-1]


def _noted(ctx: StepContext, what: str, read: Callable[[], str | None]) -> str | None:
    """A detail of the revision; unreadable, it is left out with a warning, not lost silently."""
    try:
        return read()
    except Exception as err:  # noqa: BLE001 - the deploy happened: record it, say what is missing
        ctx.log(f"recorded without {what}: {err}", "warning")
        return None


@action("deploy", "Deploy a version (plan, confirm, switch with zero downtime)", confirm_before="apply", params=(
    Param("version", "the tag to deploy (or a full image reference)", required=True, example="1.4.2"), DRY_RUN))
def deploy(services: Services, env: str, params: dict[str, Any]) -> Operation:
    image = image_reference(services, str(params.get("version") or ""))
    steps = [resolve_step(services, lambda ctx: image),
             plan_step(services, env, lambda ctx: Deploy(ctx.state["image"]))]
    if not params.get("dry_run"):
        steps += [confirm_step(services, env, f"Deploy {image}", caveat=failing_caveat(services, env)),
                  *deploy_steps(services, env, "deploy")]
    title = f"{'Plan' if params.get('dry_run') else 'Deploy'} {image} in {env}"
    return Operation("deploy", env, title, steps, params, takes_lock=not params.get("dry_run"))


def failing_caveat(services: Services, env: str) -> Callable[[StepContext], str]:
    """For a confirmation before an image goes live (deploy, rollback, a release or canary in
    production): a warning when the app's PostgreSQL or Redis fails now, as it asks."""
    return lambda ctx: _warn_failing(ctx, failing_dependencies(services, env))


def confirm_if_failing(services: Services, env: str, title: str) -> Step:
    """Outside production a release or canary goes on unasked, unless the app's PostgreSQL or Redis
    fails now: then it asks first, naming it, as a deploy does."""
    failing: list[Check] = []

    def healthy(ctx: StepContext) -> str | None:
        failing[:] = failing_dependencies(services, env)
        return None if failing else "PostgreSQL and Redis answer: nothing to ask outside production"

    return confirm_step(services, env, title, unless=healthy, caveat=lambda ctx: _warn_failing(ctx, failing))


def _warn_failing(ctx: StepContext, failing: list[Check]) -> str:
    if not failing:
        return ""
    ctx.log(f"failing dependency: {named(failing)}")
    return f"\nFAILING dependency: {named(failing)}. The new version may not start healthy."


def deploy_steps(services: Services, env: str, action_name: str) -> list[Step]:
    """Apply the image in ctx.state["image"], record the revision, health-check: deploy, rollback, pipeline."""

    def apply(ctx: StepContext) -> str:
        services.target(env).deploy(ctx.state["image"], ctx.log)
        return f"{ctx.state['image']} serving"

    def record(ctx: StepContext) -> str:
        revision = record_revision(services, env, ctx, ctx.state["image"], action_name)
        return f"revision {revision.number}"

    return [Step("apply", "Apply: start, health-check, switch traffic", apply),
            Step("record", "Record the revision", record),
            Step("health", "Health-check", lambda ctx: _health(services, env, ctx))]


@action("rollback", "Roll back to an earlier revision", destructive=True, params=(
    Param("revision", "the revision number to go back to", default_is="the one before the current"), DRY_RUN))
def rollback(services: Services, env: str, params: dict[str, Any]) -> Operation:
    wanted = str(params.get("revision") or "").strip()
    if wanted and not wanted.isdigit():  # refused before anything starts; an unknown number fails in `choose`
        raise ValueError(f"revision must be a revision number, got {wanted!r} (release-console history --env {env})")

    def choose(ctx: StepContext) -> str:
        history = services.revisions(env).list()
        revision = choose_revision(env, history, params.get("revision"))
        try:  # a revision recorded by hand or by an older console: never deployed unchecked
            check_reference(revision.image, f"revision {revision.number}'s image")
        except ValueError as err:
            raise StepFailed(str(err), ("pick another revision: release-console history",)) from None
        ctx.state["image"] = pinned_revision(services, env, history, revision)
        ctx.state["digest"], ctx.state["to"] = revision.digest, revision.number
        breaking = breaking_since(services, env, revision)
        for line in breaking:
            ctx.log(f"WARNING {line}")
        if breaking and not params.get("dry_run"):
            prompt = (f"revision {revision.number} predates {len(breaking)} migration change(s) its code may not"
                      " survive (see the log). Why roll back anyway?")
            ctx.ask_reason(prompt)
        return f"revision {revision.number}: {unpinned(revision.image)} at {revision.digest[:19]}" + (
            f" (WARNING: predates {len(breaking)} non-backward-compatible change(s))" if breaking else "")

    steps = [Step("choose", "Choose the revision", choose),
             plan_step(services, env, lambda ctx: Deploy(ctx.state["image"]))]
    if not params.get("dry_run"):
        steps += [confirm_step(services, env, _rollback_prompt, "Roll back", caveat=failing_caveat(services, env)),
                  *deploy_steps(services, env, "rollback")]
    return Operation("rollback", env, f"Roll back {env}", steps, params, takes_lock=not params.get("dry_run"))


def _rollback_prompt(ctx: StepContext) -> str:
    return f"Roll back to revision {ctx.state['to']} ({version_of(ctx.state['image'])})"


def pinned_revision(services: Services, env: str, history: list[Revision], revision: Revision) -> str:
    """What a rollback runs: the revision's image pinned to the digest it recorded, never its tag (which
    may point at other bits today). No digest recorded, or the registry no longer has it: StepFailed,
    with the nearest revisions whose digests are there and the explicit deploy of the tag."""
    tag = version_of(revision.image)
    by_tag = f"or deploy the tag as the registry has it today: release-console deploy --env {env} --version {tag}"
    if revision.digest:
        image = pinned(revision.image, revision.digest)
        if services.registry.digest(image) == revision.digest:
            return image
        problem = (f"revision {revision.number}'s image {unpinned(revision.image)} at {revision.digest} is no longer"
                   " in the registry (deleted or garbage-collected)")
    else:
        problem = (f"revision {revision.number} ({unpinned(revision.image)}) was recorded without a digest, so what"
                   " it ran cannot be told")
    options = [f"roll back to revision {r.number} instead ({version_of(r.image)} at {r.digest[:19]}):"
               f" release-console rollback --env {env} --revision {r.number}"
               for r in _neighbours(services, history, revision)]
    raise StepFailed(f"{problem}; a rollback runs the recorded digest, never the tag, so nothing was changed",
                     (*options, by_tag))


def _neighbours(services: Services, history: list[Revision], revision: Revision) -> list[Revision]:
    """The nearest revision before and after `revision` (not the one running now) whose digest the
    registry still has."""
    earlier = [r for r in history[:-1] if r.number < revision.number][::-1]
    later = [r for r in history[:-1] if r.number > revision.number]
    present = (next((r for r in side if r.digest and services.registry.digest(pinned(r.image, r.digest)) == r.digest),
                    None) for side in (earlier, later))
    return [r for r in present if r is not None]


def choose_revision(env: str, history: list[Revision], wanted: Any) -> Revision:
    """The asked-for revision, or the newest one running other bits than the current (another image, or
    the same tag at another digest)."""
    if wanted not in (None, ""):
        try:
            number = int(wanted)
        except (TypeError, ValueError):
            raise StepFailed(f"revision must be a number, got {wanted!r}", ("see release-console history",)) from None
        match = next((r for r in history if r.number == number), None)
        if match is None:
            raise StepFailed(f"{env} has no revision {number}; known: {', '.join(str(r.number) for r in history)}",
                             ("see release-console history",))
        return match
    current = (history[-1].image, history[-1].digest) if history else None
    earlier = [r for r in history if (r.image, r.digest) != current]
    if not earlier:
        raise StepFailed(f"{env} has no earlier revision to roll back to", ("deploy a fixed version instead",))
    return earlier[-1]


def breaking_since(services: Services, env: str, revision: Revision) -> list[str]:
    """Findings in migrations applied after the revision's head that the older code may not survive."""
    applied = [m.name for m in services.database(env).status() if m.state == "applied"]
    if revision.migration_head is None or revision.migration_head not in applied:
        later = applied if revision.migration_head is None else []
    else:
        later = applied[applied.index(revision.migration_head) + 1:]
    scripts = [(name, sql) for name, sql in services.database(env).scripts() if name in later]
    return [f"{f.migration}: {f.rule}: {f.statement}" for f in lint_migrations(scripts) if f.rule in BREAKS_OLD_CODE]


def history_lines(revisions: list[Revision]) -> list[str]:
    """The revision history as a table, newest first; shared by `history` and the environments pane."""
    if not revisions:
        return []
    lines = [f"{'REV':>4} {'ACTION':<8} {'WHEN':<16} {'WHO':<14} {'IMAGE':<40} {'DIGEST':<19} MIGRATION / BACKUP"]
    for r in reversed(revisions):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.when))
        lines.append(f"{r.number:>4} {r.action:<8} {when:<16} {r.who[:14]:<14} {r.image[-40:]:<40} "
                     f"{r.digest[:19]:<19} {r.migration_head or '-'} / {r.backup_id or '-'}")
    return lines


HEALTH_TRIES, HEALTH_INTERVAL_S = 5, 1.0  # nginx's new workers take over a moment after a reload


def _health(services: Services, env: str, ctx: StepContext) -> str:
    """/api/health answers 2xx and reports the deployed version (the VERSION the target gives the app).

    Another version is retried within the tries (traffic may still be switching) and fails the step
    if it never changes: the deploy did not take. A body without a version cannot be compared: a
    warning, not a failure."""
    url = services.config.health_url(env)
    expected = version_of(ctx.state["image"])
    for attempt in range(1, HEALTH_TRIES + 1):
        result = services.health(env).check(url)
        ctx.log(f"GET {url} -> {result.status}: {result.detail[:200]}")
        if result.ok and result.version is None:
            ctx.log(f"health answers {result.status} but reports no version: it could not be compared with"
                    f" {expected}", "warning")
            return f"{result.status} OK; no version reported, not compared with {expected}"
        if result.ok and result.version == expected:
            return f"{result.status} OK, version {expected}"
        if result.ok:
            ctx.log(_other_version(result.status, result.version, expected), "warning")
        if attempt < HEALTH_TRIES:
            ctx.sleep(services.real_seconds(HEALTH_INTERVAL_S))
    if result.ok:
        raise StepFailed(f"{_other_version(result.status, result.version, expected)} after {HEALTH_TRIES} tries", (
            "check that traffic reaches the new version (the proxy's upstream, the Service's selector) and that"
            " the app's health reports the VERSION it is given",
            "if a canary runs, its answers count too: promote or abort it", "retry this step", "roll back"))
    raise StepFailed(f"health check failed {HEALTH_TRIES} times: {result.detail[:200]}",
                     ("retry this step", "roll back"))


def _other_version(status: int | None, version: str | None, expected: str) -> str:
    return f"health answers {status} but reports version {version}, expected {expected}"
