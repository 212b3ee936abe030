"""The development stack ([dev] in release.toml): its services' status, and up/down/restart as
operations, so each is journaled and audited like every other action. down and restart confirm first.
"""

from __future__ import annotations

from collections.abc import Callable

from services.core.actions import confirm_step
from services.core.config import DevConfig
from services.core.container import Services
from services.core.log_lines import clean
from services.core.masking import mask_text
from services.core.operations import Operation, Step, StepContext, StepFailed
from services.core.ports import DevService, DevStack, OnLine

NOT_CONFIGURED = ("add a [dev] section to release.toml (compose_file, project, studio_url); "
                  "docs/operations.md, \"The development stack\"")


def settings(services: Services) -> DevConfig:
    if services.config.dev is None or services.dev is None:
        raise StepFailed("no development stack is configured", (NOT_CONFIGURED,))
    return services.config.dev


def stack(services: Services) -> DevStack:
    settings(services)
    assert services.dev is not None
    return services.dev


def status(services: Services) -> list[DevService]:
    return stack(services).status()


def studio_url(services: Services) -> str:
    return settings(services).studio_url


def logs(services: Services, service: str, on_line: OnLine, follow: bool = False, tail: int = 200) -> None:
    """A service's log lines, untrusted as every container's: cleaned of escape sequences and masked
    here, for the CLI and the TUI alike (services/environments/logs.py does the same for the app's)."""
    stack(services).logs(service, lambda line: on_line(mask_text(clean(line))), follow, tail)


def _known(services: Services, service: str) -> str:
    """A service of the compose file, refused before any operation starts (ValueError: bad input)."""
    known = stack(services).services()
    if service not in known:
        raise ValueError(f"{service!r} is not a service of the development stack; its services: {', '.join(known)}")
    return service


def _operation(services: Services, kind: str, title: str, service: str | None,
               act: Callable[[DevStack, OnLine], None], confirm: str | None = None) -> Operation:
    env = settings(services).environment
    dev = stack(services)

    def run(ctx: StepContext) -> str:
        act(dev, ctx.log)
        return f"{title}: done"

    steps = [confirm_step(services, env, confirm, title)] if confirm else []
    steps.append(Step(kind, title, run))
    params = {"service": service} if service else {}
    return Operation(kind, env, title, steps, params, takes_lock=False)


def up(services: Services, service: str | None = None) -> Operation:
    named = _known(services, service) if service else None
    return _operation(services, "dev-up", f"Start {named or 'the development stack'}", named,
                      lambda dev, on_line: dev.up(named, on_line))


def down(services: Services) -> Operation:
    project = settings(services).project
    return _operation(services, "dev-down", f"Stop the development stack ({project})", None,
                      lambda dev, on_line: dev.down(on_line),
                      f"Stop and remove every container of the compose project {project} (volumes are kept)")


def restart(services: Services, service: str) -> Operation:
    named = _known(services, service)
    return _operation(services, "dev-restart", f"Restart {named}", named,
                      lambda dev, on_line: dev.restart(named, on_line), f"Restart {named} of the development stack")


def rebuild(services: Services, kind: str, params: dict[str, str]) -> Operation:
    """A journaled dev-up/down/restart made again, for `journal resume`, the TUI's retry and resume."""
    service = params.get("service") or None
    if kind == "dev-up":
        return up(services, service)
    if kind == "dev-down":
        return down(services)
    if service is None:
        raise ValueError("dev-restart needs its service")
    return restart(services, service)


KINDS = ("dev-up", "dev-down", "dev-restart")
