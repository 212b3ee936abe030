"""An environment with no deploy target: it says so and refuses to deploy, yet can stop and start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from services.core.operations import StepFailed
from services.core.ports import OnLine, TargetStatus


class Refusing:
    """Any method it does not define fails with the same clear StepFailed."""

    def __init__(self, message: str, next_options: tuple[str, ...]) -> None:
        self._refusal = (message, next_options)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise StepFailed(*self._refusal)

        return refuse


class NoDeployTarget(Refusing):
    """An environment whose config names no deploy target: says so, and refuses to deploy.

    Its services can still be stopped and started (for a restore) by the commands of
    `[environments.X.services]`, when they are configured.
    """

    def __init__(self, env: str, services: ServiceControl | None = None) -> None:
        super().__init__(f"no deploy target configured for {env}",
                         (f"set [environments.{env}.target] in release.toml",))
        self.env = env
        self._services = services

    def status(self) -> TargetStatus:
        return TargetStatus("-", 0, 0, events=("no deploy target configured",))

    def stop(self, on_line: OnLine) -> None:
        self._control("stop").stop(on_line)

    def start(self, on_line: OnLine) -> None:
        self._control("start").start(on_line)

    def _control(self, verb: str) -> ServiceControl:
        if self._services is None:
            raise StepFailed(
                f"cannot {verb} {self.env}'s services: it has no deploy target and no service commands",
                (f"set [environments.{self.env}.services] stop = [...] and start = [...] in release.toml"
                 " (argument lists)", f"or set [environments.{self.env}.target]",
                 f"or {verb} them by hand, then retry this step"))
        return self._services


class ServiceControl(Protocol):
    def stop(self, on_line: OnLine) -> None: ...
    def start(self, on_line: OnLine) -> None: ...
