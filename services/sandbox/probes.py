"""The sandbox's dependency probes: steady, made-up readings per environment.

Deterministic (a function of the environment and the probe count, never of the world's random
generator, so probing changes nothing else). Staging's Redis runs near its maxmemory, to show a warning.
"""

from __future__ import annotations

from services.core.ports import Reading
from services.sandbox.world import World

_MEMORY = {"development": 21.0, "staging": 83.5, "production": 46.0}


class SandboxProbes:
    def __init__(self, world: World, env: str) -> None:
        self.world, self.env = world, env
        self.count = 0
        self.down: set[str] = set()  # for tests and drills: dependencies that fail, as a stopped server does

    def probe(self, timeout_s: float) -> list[Reading]:
        self.count += 1
        wobble = (self.count * 7 + len(self.env)) % 5  # 0..4: a little movement for the sparklines
        state = self.world.envs[self.env]
        api = (Reading("api", True, state.version, {"latency_ms": 40.0 + 6 * wobble},
                       (f"GET /api/health -> 200 in {40 + 6 * wobble} ms",))
               if state.running else Reading("api", False, error="connection refused"))
        memory = _MEMORY.get(self.env, 30.0)
        readings = [
            api,
            Reading("postgres", True, "15.6", {"latency_ms": 3.0 + wobble, "connections_percent": 12.0,
                                               "longest_transaction_s": 0.4, "blocked": 0.0},
                    ("PostgreSQL 15.6", "connections 12/100", "longest transaction 0.4 s", "database size 48.2 MB")),
            Reading("redis", True, "7.0.15", {"latency_ms": 0.5 + wobble / 10, "memory_percent": memory,
                                              "rejected_clients": 0.0, "evicted_keys": 0.0,
                                              "persistence_errors": 0.0},
                    ("role master", f"memory {memory:g}% of 256 MB", "clients 8 connected, 0 rejected; 0 keys evicted",
                     "persistence: last RDB save ok, AOF off")),
        ]
        return [Reading(r.dependency, False, error=f"sandbox-{r.dependency}:1: Connection refused")
                if r.dependency in self.down else r for r in readings]
