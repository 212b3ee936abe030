"""The sandbox's app logs and resource use: plausible lines and figures from its seeded world, so
`--sandbox` shows something in `logs`, `top` and the logs screen."""

from __future__ import annotations

import datetime
import random
import threading
from collections.abc import Iterator

from services.core.observe import LogRecord, Usage, UsageReport
from services.sandbox.world import World

PATHS = ("/api/meals", "/api/pantry", "/api/recipes", "/api/health", "/api/shopping-list")
EVERY_S = 2.0  # simulated seconds between two lines of one replica
FOLLOW_S = 0.5  # real seconds between two looks at the simulated clock when following
KEPT = 40  # lines each replica has kept when asked without --since


class SandboxObserver:
    def __init__(self, world: World, env: str) -> None:
        self.world, self.env = world, env
        self.state = world.envs[env]

    def _replicas(self, role: str | None) -> list[tuple[str, str, str]]:
        s = self.state
        with self.world.lock:
            found = [(f"{self.env}-stable-{i}", "stable", s.version) for i in range(min(s.ready, 3))] \
                if s.running else []
            if s.canary_version:
                found.append((f"{self.env}-canary-0", "canary", s.canary_version))
        return [r for r in found if role in (None, r[1])]

    def _line(self, name: str, role: str, version: str, n: int) -> LogRecord:
        draw = random.Random(f"{self.world.seed}:{name}:{n}")
        when = datetime.datetime.fromtimestamp(n * EVERY_S, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        failing = role == "canary" and draw.random() < 0.2
        status = 500 if failing else draw.choice((200, 200, 200, 201, 304, 404))
        text = (f"level={'error' if failing else 'info'} version={version} method=GET path={draw.choice(PATHS)}"
                f" status={status} ms={draw.randint(3, 400 if failing else 90)}")
        return LogRecord(name, role, when, text)

    def logs(self, role: str | None, since_s: float | None, follow: bool,
             cancel: threading.Event) -> Iterator[LogRecord]:
        now = int(self.world.clock.now() / EVERY_S)
        back = KEPT if since_s is None else min(int(since_s / EVERY_S), 10 * KEPT)
        for n in range(now - back, now + 1):
            for name, each_role, version in self._replicas(role):
                yield self._line(name, each_role, version, n)
        while follow and not cancel.wait(FOLLOW_S):
            last, now = now, int(self.world.clock.now() / EVERY_S)
            for n in range(max(last + 1, now - 2), now + 1):  # at most three lines a replica per wake
                for name, each_role, version in self._replicas(role):
                    yield self._line(name, each_role, version, n)

    def usage(self) -> UsageReport:
        tick = int(self.world.clock.now() / 10)
        rows = []
        for name, role, _ in self._replicas(None):
            draw = random.Random(f"{self.world.seed}:{name}:{tick}")
            rows.append(Usage(name, role, round(draw.uniform(2, 35 if role == "stable" else 60), 1),
                              draw.randint(90, 220) << 20, 512 << 20))
        return UsageReport(tuple(rows), "sandbox")
