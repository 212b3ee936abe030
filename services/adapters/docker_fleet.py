"""The managed containers of one app and environment on a Docker host, and what serves traffic.

What serves is what the upstream file on the host lists (nginx_split): the managed containers
(labels release-console.app/env/role/port/version) on its stable and canary ports. The role
label says what a container was started as; a promoted canary serves as stable. A stopped
container the file does not list is an earlier revision; a live one is the leftover of an
interrupted attempt, which the next attempt reuses (same image) or stops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from services.adapters.nginx_split import Server, canary_weight

LABEL = "release-console"
APP, ENV, ROLE, PORT, VERSION = (f"{LABEL}.{key}" for key in ("app", "env", "role", "port", "version"))
LIVE = ("running", "restarting", "paused")  # not serving and live: a leftover; not live: a revision


@dataclass(frozen=True)
class Box:
    """One managed container, as the engine reports it."""

    id: str
    name: str
    port: int
    image: str  # the reference it was created from
    version: str
    state: str  # running, exited, created, ...
    health: str | None  # healthy, unhealthy, starting; None: the image has no HEALTHCHECK
    restarts: int
    finished: str  # State.FinishedAt (ISO 8601: sorts by time)
    env: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting")

    @property
    def ready(self) -> bool:
        """Running, and not failing its HEALTHCHECK: a deploy switches to a container once it answers
        health_path, before the HEALTHCHECK's first run (still "starting"), so that counts as ready."""
        return self.state == "running" and self.health != "unhealthy"

    def line(self) -> str:
        return f"{self.name} ({self.version}, port {self.port})"


@dataclass(frozen=True)
class Fleet:
    """The managed containers and the upstream file, read together."""

    boxes: tuple[Box, ...]
    servers: tuple[Server, ...]
    text: str | None  # the upstream file; None: not written yet

    def role(self, box: Box) -> str | None:
        return next((s.role for s in self.servers if s.port == box.port), None)

    def serving(self, role: str) -> list[Box]:
        return [b for b in self.boxes if self.role(b) == role]

    @property
    def stable(self) -> list[Box]:
        return self.serving("stable")

    @property
    def canary(self) -> list[Box]:
        return self.serving("canary")

    @property
    def leftovers(self) -> list[Box]:
        return [b for b in self.boxes if self.role(b) is None and b.state in LIVE]

    @property
    def stopped(self) -> list[Box]:  # newest first
        idle = [b for b in self.boxes if self.role(b) is None and b.state not in LIVE]
        return sorted(idle, key=lambda b: b.finished, reverse=True)

    @property
    def weight(self) -> int:
        return canary_weight(list(self.servers))

    def previous(self, current: str) -> list[Box]:
        """The containers of the newest stopped revision whose image is not `current`."""
        older = [b for b in self.stopped if b.image != current]
        return [b for b in older if b.image == older[0].image] if older else []

    def traffic(self) -> str:
        live = [s for s in self.servers if not s.down]
        if not live:
            return "no container gets traffic (the upstream lists none)"
        parts = [f"{s.role} {s.version} on port {s.port}" for s in live]
        weight = f", canary at {self.weight}%" if any(s.role == "canary" for s in live) else ""
        return "traffic goes to " + ", ".join(parts) + weight


def choose(
    fleet: Fleet, image: str, count: int, as_configured: Callable[[Box], bool]
) -> tuple[list[Box], list[Box]]:
    """Containers of `image` to reuse (leftovers first, then stopped ones), and the other leftovers.

    Only a container still `as_configured` is reused: one made before the config changed (a new
    DATABASE_URL, a flag) would bring the old settings back.
    """
    fits = [b for b in (*fleet.leftovers, *fleet.stopped) if b.image == image and as_configured(b)]
    reuse = fits[:count]
    others = [b for b in fleet.leftovers if b not in reuse]
    return reuse, others
