"""Drift: what runs compared with what the console recorded, for the environments pane and `status`.

Three things are compared, each from one place:

- **The image.** The stable references the target runs (TargetStatus.running, as the engine reports
  them) against the latest revision (services.revisions(env).list()[-1]: image and digest). A running
  reference that pins a digest compares by digest; one without (a `kubectl set image app:tag`, a
  `docker run app:tag`) compares by repository:tag against the recorded image and, where the engine
  resolved it (Docker's RepoDigests), by that digest too.
- **The replicas and the canary weight.** What the console last set is kept by the targets
  themselves, in the state the console already writes there, so every operator on every bastion
  reads the same record and nothing new has to be stored or kept in step:
  - the Docker host: the nginx upstream file, which only the console writes, carries a header
    line with the split it applied (stable and canary servers, weight); the live count is the
    stable containers that serve and the live weight is what the server lines give;
  - Kubernetes: the console applies with its own field manager, so the Deployment's and the
    Ingress'/HTTPRoute's managedFields say whether spec.replicas or the weight was last set by the
    console or by someone else (kubectl, a script), and when; the cluster keeps no earlier value,
    so the drift names the live value, who set it and when (TargetStatus.outside);
  - the sandbox: its world keeps the values its console set.

`note` audits a drift the first time this console sees it (once per distinct drift, not every 2 s
poll): the last drift audited per environment is kept in a private file in the state dir. A drift
that goes away is forgotten, so the same one coming back is audited again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.core.private import replace_private
from services.core.references import parts_of

if TYPE_CHECKING:
    from services.core.container import Services
    from services.core.ports import Revision, Running, TargetStatus

SEEN_FILE = "drift-seen.json"


@dataclass(frozen=True)
class Difference:
    what: str  # image, replicas, weight
    running: str
    recorded: str  # what the console recorded or last set ("" when the target says only who changed it)
    detail: str  # the line shown: names what runs and what was recorded

    def as_json(self) -> dict[str, str]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class Drift:
    env: str
    differences: tuple[Difference, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.differences)

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(d.detail for d in self.differences)

    @property
    def key(self) -> str:
        """One drift's identity: the same differences give the same key, poll after poll."""
        text = json.dumps([d.as_json() for d in self.differences], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _same_image(running: Running, recorded: Revision) -> bool:
    repo, tag, digest = parts_of(running.reference)
    recorded_repo, recorded_tag, recorded_pin = parts_of(recorded.image)
    recorded_digest = recorded.digest or recorded_pin
    if digest:
        return digest == recorded_digest if recorded_digest else (repo, tag) == (recorded_repo, recorded_tag)
    if (repo, tag or "latest") != (recorded_repo, recorded_tag or "latest"):
        return False
    return not (running.digest and recorded_digest) or running.digest == recorded_digest


def _shown(running: Running) -> str:
    if running.digest and running.digest not in running.reference:
        return f"{running.reference} ({running.digest[:19]})"
    return running.reference


def compare(env: str, status: TargetStatus, latest: Revision | None) -> Drift:
    """What differs between what runs (status) and what the console recorded and set."""
    found: list[Difference] = []
    if latest is not None and status.running:
        others = [r for r in status.running if not _same_image(r, latest)]
        if others:
            recorded = f"{latest.image}@{latest.digest}" if latest.digest else latest.image
            running = ", ".join(_shown(r) for r in others)
            found.append(Difference("image", running, recorded,
                                    f"image changed outside the console: runs {running}, revision #{latest.number}"
                                    f" recorded {recorded}"))
    if status.applied_replicas is not None and status.applied_replicas != status.desired:
        found.append(Difference("replicas", str(status.desired), str(status.applied_replicas),
                                f"replicas changed outside the console: {status.desired} running, the console"
                                f" set {status.applied_replicas}"))
    if status.applied_weight is not None and status.applied_weight != status.canary_weight:
        found.append(Difference("weight", f"{status.canary_weight}%", f"{status.applied_weight}%",
                                f"canary weight changed outside the console: {status.canary_weight}% in the"
                                f" split, the console set {status.applied_weight}%"))
    for line in status.outside:
        what = line.split(" ", 1)[0]
        running = str(status.desired) if what == "replicas" else f"{status.canary_weight}%"
        found.append(Difference(what, running, "", f"{line}, not by the console"))
    return Drift(env, tuple(found))


def drift_of(services: Services, env: str, status: TargetStatus, revisions: list[Revision] | None = None) -> Drift:
    """The environment's drift; `revisions` when the caller read them already (oldest first)."""
    history = services.revisions(env).list() if revisions is None else revisions
    return compare(env, status, history[-1] if history else None)


def note(services: Services, drift: Drift) -> bool:
    """Audit a drift the first time this console sees it; True when it did. Kept per environment in
    the state dir, so the TUI's poll and a cron `status --check-drift` record it once, not each run."""
    path = services.state / SEEN_FILE
    seen = _read(path)
    if not drift:
        if seen.pop(drift.env, None) is not None:
            replace_private(path, json.dumps(seen))
        return False
    if seen.get(drift.env) == drift.key:
        return False
    services.audit.append(drift.env, "drift", {"differences": [d.as_json() for d in drift.differences]},
                          "seen: " + "; ".join(drift.lines))
    seen[drift.env] = drift.key
    replace_private(path, json.dumps(seen))
    return True


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
