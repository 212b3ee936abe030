"""Plan before apply on a Docker host: what a change would do, as compose-like YAML diffs.

One diff per container (image, role, state, port, environment with secrets masked) and one of
the upstream file. It mirrors what DockerHostTarget's actions do, from the same reading of the
host, and changes nothing.
"""

from __future__ import annotations

import difflib
import json
from typing import TYPE_CHECKING, Any, Protocol

from services.adapters.docker_fleet import LIVE, Box, Fleet, choose
from services.adapters.nginx_split import Server, split
from services.core.masking import mask
from services.core.operations import StepFailed
from services.core.ports import Abort, Change, Deploy, Plan, PlannedChange, Promote, Scale, SetWeight, StartCanary
from services.core.references import version_of

if TYPE_CHECKING:
    from services.adapters.nginx_split import Upstream
    from services.core.config import DockerTarget, ReleaseConfig


class PlannedHost(Protocol):
    """What a plan reads of the Docker host target (docker_target.DockerHostTarget)."""

    config: ReleaseConfig
    target: DockerTarget
    upstream: Upstream

    def describe(self) -> str: ...
    def free_ports(self, used: set[int], count: int) -> list[int]: ...
    def environment(self, version: str, port: int) -> dict[str, str]: ...
    def as_configured(self, box: Box) -> bool: ...
    def name(self, port: int, role: str) -> str: ...


class Planner:
    """What a change would do, as a compose-like YAML diff per container and one of the upstream file."""

    def __init__(self, target: PlannedHost, fleet: Fleet, used: set[int]) -> None:
        self.t = target
        self.fleet = fleet
        self.used = set(used)
        self.now = {b.name: self._doc(b, self._role(b), b.state) for b in fleet.boxes}
        self.then: dict[str, dict[str, Any] | None] = dict(self.now)

    def _role(self, box: Box) -> str:
        role = self.fleet.role(box)
        if role:
            return role
        return "leftover" if box.state in LIVE else "stopped"

    def _doc(self, box: Box, role: str, state: str) -> dict[str, Any]:
        keys = set(self.t.environment(box.version, box.port))
        env = {k: v for k, v in sorted(box.env.items()) if k in keys}
        doc: dict[str, Any] = {"image": box.image, "role": role, "state": state, "network_mode": self.t.target.network}
        if self.t.target.network == "host":
            doc["port"] = box.port
        else:
            doc["ports"] = [f"127.0.0.1:{box.port}:{self.t.config.app.port}"]
        doc["environment"] = mask(env)
        return doc

    def _set(self, box: Box, role: str, state: str) -> None:
        self.then[box.name] = self._doc(box, role, state)

    def _up(self, image: str, count: int, role: str) -> list[Box]:
        reuse, others = choose(self.fleet, image, count, self.t.as_configured)
        for box in others:
            self._set(box, "stopped", "exited")
        for box in reuse:
            self._set(box, role, "running")
        new = []
        for port in self.t.free_ports(self.used, count - len(reuse)):
            self.used.add(port)
            version = version_of(image)
            box = Box("", self.t.name(port, role), port, image, version, "running", None, 0, "",
                      self.t.environment(version, port))
            self._set(box, role, "running")
            new.append(box)
        return reuse + new

    def _retire(self, old: list[Box], current: str) -> None:
        """Stop the old stable (kept as previous), then prune: only the previous revision stays stopped."""
        for box in old:
            self._set(box, "previous", "exited")
        previous = [b for b in old if b.image != current] or self.fleet.previous(current)
        kept = previous[0].image if previous else None
        for box in self.fleet.boxes:
            doc = self.then.get(box.name)
            if doc and doc["role"] in ("stopped", "previous") and doc["state"] not in LIVE and box.image != kept:
                self.then[box.name] = None

    def plan(self, change: Change) -> Plan:
        f = self.fleet
        stable, canary, weight = f.stable, f.canary, f.weight
        if isinstance(change, (StartCanary, Scale)) and not stable:
            raise StepFailed("nothing is deployed yet", ("deploy first",))
        if isinstance(change, (SetWeight, Promote)) and not canary:
            raise StepFailed("there is no canary", ("start a canary first",))
        servers = list(f.servers)
        lay = self._layout
        match change:
            case Deploy(image):
                up = self._up(image, len(stable) or self.t.target.replicas, "stable")
                servers = lay(up, canary, weight)
                self._retire([b for b in stable if b not in up], image)
            case StartCanary(image, w):
                servers = lay(stable, self._up(image, self.t.config.canary.canary_replicas, "canary"), w)
            case SetWeight(w):
                servers = lay(stable, canary, w)
            case Promote():
                wanted = len(stable) or self.t.target.replicas
                extra = self._up(canary[0].image, wanted - len(canary), "stable") if wanted > len(canary) else []
                for box in canary:
                    self._set(box, "stable", "running")
                servers = lay(canary + extra, [], 0)
                self._retire(stable, canary[0].image)
            case Abort():
                for box in canary:
                    self.then[box.name] = None
                servers = lay(stable, [], 0)
            case Scale(replicas):
                if replicas > len(stable):
                    servers = lay(stable + self._up(stable[0].image, replicas - len(stable), "stable"), canary, weight)
                else:
                    for box in stable[replicas:]:
                        self.then[box.name] = None
                    servers = lay(stable[:replicas], canary, weight)
        changes = [self._container(name) for name in sorted(set(self.now) | set(self.then))]
        text = self.t.upstream.render(servers)
        changes.append(PlannedChange(
            "upstream", self.t.target.nginx.upstream,
            "unchanged" if text == f.text else ("create" if f.text is None else "update"),
            "" if text == f.text else _diff(f.text or "", text, self.t.target.nginx.upstream_file),
        ))
        return Plan(self.t.describe(), tuple(changes))

    def _layout(self, stable: list[Box], canary: list[Box], weight: int) -> list[Server]:
        return split([(b.port, b.version) for b in stable], [(b.port, b.version) for b in canary],
                     weight if canary else 0)

    def _container(self, name: str) -> PlannedChange:
        before, after = self.now.get(name), self.then.get(name)
        if before == after:
            return PlannedChange("container", name, "unchanged")
        if before is None:
            action = "create"
        elif after is None:
            action = "delete"
        elif before["state"] != after["state"]:
            action = "start" if after["state"] == "running" else "stop"
        else:
            action = "update"
        return PlannedChange("container", name, action,
                             _diff(_yaml(name, before) if before else "", _yaml(name, after) if after else "", name))


def _yaml(name: str, doc: dict[str, Any], indent: str = "") -> str:
    lines = [f"{indent}{name}:"]
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(_yaml(key, value, indent + "  ").rstrip("\n"))
        elif isinstance(value, list):
            lines.append(f"{indent}  {key}:")
            lines += [f"{indent}    - {json.dumps(v)}" for v in value]
        else:
            lines.append(f"{indent}  {key}: {json.dumps(value) if isinstance(value, str) else value}")
    return "\n".join(lines) + "\n"


def _diff(before: str, after: str, name: str) -> str:
    return "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), f"{name} (now)",
                                          f"{name} (planned)", lineterm=""))
