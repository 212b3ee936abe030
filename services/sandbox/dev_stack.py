"""The sandbox's development stack: the strategy's four compose services, plausible and in memory."""

from __future__ import annotations

from services.core.operations import StepFailed
from services.core.ports import DevService, OnLine

IMAGES = {"app": "food-management-app", "postgres": "postgres:15", "redis": "redis:7",
          "prisma-studio": "food-management-app"}
HEALTHCHECKED = {"postgres", "redis"}
SAID = {
    "app": ["▲ Next.js 14.2.3", "- Local: http://localhost:3000", "✓ Ready in 2.1s", "GET /api/health 200 in 4ms"],
    "postgres": ["LOG:  database system is ready to accept connections", "LOG:  checkpoint complete"],
    "redis": ["* Ready to accept connections tcp", "* 1 changes in 3600 seconds. Saving..."],
    "prisma-studio": ["Prisma Studio is up on http://localhost:5555"],
}


class SandboxDevStack:
    def __init__(self) -> None:
        self._running = dict.fromkeys(IMAGES, True)

    def services(self) -> list[str]:
        return list(IMAGES)

    def _known(self, service: str) -> str:
        if service not in IMAGES:
            raise StepFailed(f"{service!r} is not a service of docker-compose.yml; its services: {', '.join(IMAGES)}")
        return service

    def status(self) -> list[DevService]:
        return [DevService(name, "running", "healthy" if name in HEALTHCHECKED else "", IMAGES[name], 1)
                if self._running[name] else DevService(name, "absent") for name in IMAGES]

    def up(self, service: str | None, on_line: OnLine) -> None:
        for name in [self._known(service)] if service else list(IMAGES):
            on_line(f"Creating food-management_{name}_1 ... done" if not self._running[name]
                    else f"food-management_{name}_1 is up-to-date")
            self._running[name] = True

    def down(self, on_line: OnLine) -> None:
        for name in reversed(IMAGES):
            if self._running[name]:
                on_line(f"Removing food-management_{name}_1 ... done")
            self._running[name] = False

    def restart(self, service: str, on_line: OnLine) -> None:
        on_line(f"Restarting food-management_{self._known(service)}_1 ... done")
        self._running[service] = True

    def logs(self, service: str, on_line: OnLine, follow: bool = False, tail: int = 200) -> None:
        for line in SAID[self._known(service)][-tail:]:
            on_line(f"{service}_1  | {line}")
