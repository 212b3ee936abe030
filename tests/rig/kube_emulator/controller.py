"""The controllers, on a background clock: Deployments roll out over time, namespaces terminate.

Every ``tick_s`` the Deployment controller syncs each Deployment once, as kube-controller-manager's
does: it notes the generation it saw (observedGeneration lags a write by up to a tick), keeps one
replica set per pod template (by a hash of the template, so a rollback revives the old one), and
scales them by the strategy. RollingUpdate: the new set grows while all pods stay within replicas +
maxSurge, old sets shrink (not-ready pods first) while the ready ones stay at least replicas -
maxUnavailable (25%/25% by default, rounded up and down). Recreate: old sets to 0 first. A new pod is
ready ``pod_ready_s`` after it was made (available after minReadySeconds more), unless its image was
marked with ``never_ready``: then the rollout stalls and, ``progressDeadlineSeconds`` after its last
progress, the Progressing condition turns False with reason ProgressDeadlineExceeded. With ``nodes`` set
(a stand-in for the kubelets that runs real containers, tests/rig/kube_pods.py), a pod is ready only
once ``nodes(owner, images)`` says its Deployment's ("namespace/name") containers of those images are.
The status is written through /status as manager kube-controller-manager.

Replica sets and pods are the controller's own state, not API objects (nothing lists them).
The namespace controller empties a terminating namespace and removes it after the store's grace.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .resources import now
from .store import Store

DEPLOYMENTS = ("apps", "deployments")


@dataclass
class ReplicaSet:
    template_hash: str
    images: tuple[str, ...]
    owner: str = ""  # "namespace/name" of its Deployment
    born: list[float] = field(default_factory=list)  # one creation time per pod

    @property
    def replicas(self) -> int:
        return len(self.born)

    def scale(self, replicas: int, clock: float) -> None:
        """To `replicas` pods: new ones are born now; the youngest (least likely ready) go first."""
        self.born = sorted(self.born)[:replicas] + [clock] * max(0, replicas - len(self.born))


@dataclass
class Rollout:
    """One Deployment's replica sets (oldest first) and when it last made progress."""

    sets: dict[str, ReplicaSet] = field(default_factory=dict)
    last_progress: float = 0.0


def _resolve(value: Any, total: int, round_up: bool) -> int:
    """maxSurge (rounded up) or maxUnavailable (rounded down): a number or a percentage of `total`."""
    if isinstance(value, str) and value.endswith("%"):
        share = int(value[:-1]) * total / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(value or 0)


def _template_hash(template: Any) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _condition(kind: str, status: str, reason: str, message: str, previous: dict[str, Any] | None,
               progressed: bool) -> dict[str, Any]:
    stamp = now()
    same = previous is not None and previous.get("status") == status
    keep_update = same and previous.get("reason") == reason and not progressed
    return {"type": kind, "status": status,
            "lastUpdateTime": previous["lastUpdateTime"] if keep_update and previous else stamp,
            "lastTransitionTime": previous["lastTransitionTime"] if same and previous else stamp,
            "reason": reason, "message": message}


class Controllers:
    """The Deployment and namespace controllers of one store, ticking in a daemon thread."""

    def __init__(self, store: Store, tick_s: float = 0.01, pod_ready_s: float = 0.02):
        self.store, self.tick_s, self.pod_ready_s = store, tick_s, pod_ready_s
        self.never_ready: set[str] = set()  # images whose pods never become ready
        # Called under the store's lock: it must answer from its own state, never call the API.
        self.nodes: Callable[[str, tuple[str, ...]], bool] | None = None
        self.rollouts: dict[str, Rollout] = {}  # by the Deployment's uid
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kube-emulator-controllers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.tick()

    def tick(self, clock: float | None = None) -> None:
        clock = time.monotonic() if clock is None else clock
        store = self.store
        with store.cond:
            store.finalize_namespaces(clock)
            if not store.auto_rollout:
                return
            live = set()
            for key, obj in list(store.objects.items()):
                if key[:2] == DEPLOYMENTS:
                    live.add(obj["metadata"]["uid"])
                    self._sync(obj, clock)
            for uid in set(self.rollouts) - live:  # deleted Deployments
                del self.rollouts[uid]

    # -- the Deployment controller
    def _ready(self, rs: ReplicaSet, clock: float, min_ready_s: float = 0.0) -> int:
        if self.never_ready & set(rs.images) or (self.nodes is not None and not self.nodes(rs.owner, rs.images)):
            return 0
        return sum(1 for born in rs.born if clock - born >= self.pod_ready_s + min_ready_s)

    def _sync(self, obj: dict[str, Any], clock: float) -> None:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        containers = (template.get("spec") or {}).get("containers") or []
        state = self.rollouts.setdefault(meta["uid"], Rollout(last_progress=clock))
        template_hash = _template_hash(template)
        created = template_hash not in state.sets
        if created:
            images = tuple(c.get("image", "") for c in containers)
            state.sets[template_hash] = ReplicaSet(template_hash, images, f"{meta.get('namespace')}/{meta['name']}")
        new = state.sets[template_hash]
        olds = [rs for h, rs in state.sets.items() if h != template_hash]
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("rollingUpdate") or {}
        surge = _resolve(rolling.get("maxSurge"), desired, round_up=True)
        unavailable = _resolve(rolling.get("maxUnavailable"), desired, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1

        if not spec.get("paused"):
            if strategy.get("type") == "Recreate":
                if any(rs.replicas for rs in olds):
                    for rs in olds:
                        rs.scale(0, clock)
                else:
                    new.scale(desired, clock)
            elif not any(rs.replicas for rs in olds) or new.replicas > desired:
                new.scale(desired, clock)
            else:
                self._roll(new, olds, desired, surge, unavailable, clock)
        for h in [h for h, rs in state.sets.items() if rs is not new and not rs.replicas]:
            if len(state.sets) - 1 > int(spec.get("revisionHistoryLimit", 10)):
                del state.sets[h]
        self._write_status(obj, state, new, desired, unavailable, created, clock)

    def _roll(self, new: ReplicaSet, olds: list[ReplicaSet], desired: int, surge: int, unavailable: int,
              clock: float) -> None:
        total = new.replicas + sum(rs.replicas for rs in olds)
        if new.replicas < desired:
            new.scale(min(desired, new.replicas + max(0, desired + surge - total)), clock)
        min_available = desired - unavailable
        all_pods = new.replicas + sum(rs.replicas for rs in olds)
        budget = all_pods - min_available - (new.replicas - self._ready(new, clock))
        for rs in olds:  # first the old pods that are not ready
            down = min(rs.replicas - self._ready(rs, clock), max(budget, 0))
            if down > 0:
                rs.scale(rs.replicas - down, clock)
                budget -= down
        available = self._ready(new, clock) + sum(self._ready(rs, clock) for rs in olds)
        budget = available - min_available
        for rs in olds:
            down = min(rs.replicas, max(budget, 0))
            if down > 0:
                rs.scale(rs.replicas - down, clock)
                budget -= down

    def _write_status(self, obj: dict[str, Any], state: Rollout, new: ReplicaSet, desired: int, unavailable: int,
                      created: bool, clock: float) -> None:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        min_ready = float(spec.get("minReadySeconds") or 0)
        sets = list(state.sets.values())
        counts = {
            "replicas": sum(rs.replicas for rs in sets),
            "updatedReplicas": new.replicas,
            "readyReplicas": sum(self._ready(rs, clock) for rs in sets),
            "availableReplicas": sum(self._ready(rs, clock, min_ready) for rs in sets),
        }
        counts["unavailableReplicas"] = max(0, desired - counts["availableReplicas"])
        old = obj.get("status") or {}
        progressed = created or any(old.get(k, 0) != v for k, v in counts.items())
        if progressed:
            state.last_progress = clock
        previous = {c.get("type"): c for c in old.get("conditions") or []}
        rs_name = f"{meta['name']}-{new.template_hash}"
        complete = counts["updatedReplicas"] == counts["replicas"] == counts["availableReplicas"] == desired
        deadline = spec.get("progressDeadlineSeconds")
        if complete:
            progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.')
        elif not progressed and deadline is not None and clock - state.last_progress > float(deadline):
            progressing = ("False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.')
        elif not progressed and (prior := previous.get("Progressing")) and prior.get("reason") in (
                "ProgressDeadlineExceeded", "NewReplicaSetCreated", "ReplicaSetUpdated"):
            progressing = (prior["status"], prior["reason"], prior["message"])
        else:
            progressing = ("True", "NewReplicaSetCreated" if created else "ReplicaSetUpdated",
                           f'Created new replica set "{rs_name}"' if created
                           else f'ReplicaSet "{rs_name}" is progressing.')
        available = counts["availableReplicas"] >= desired - unavailable
        status: dict[str, Any] = {"observedGeneration": meta.get("generation", 1)}
        status.update({k: v for k, v in counts.items() if v})  # the API omits zeros
        status["conditions"] = [
            _condition("Available", *(("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
                                      if available else ("False", "MinimumReplicasUnavailable",
                                                         "Deployment does not have minimum availability.")),
                       previous.get("Available"), False),
            _condition("Progressing", *progressing, previous.get("Progressing"), progressed),
        ]
        if {k: v for k, v in status.items() if k != "conditions"} == {
                k: v for k, v in old.items() if k != "conditions"} and [
                (c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
                (c.get("type"), c.get("status"), c.get("reason")) for c in old.get("conditions") or []]:
            return  # nothing new to say: no write
        self.store.write_status(self.store.resource(*DEPLOYMENTS), meta.get("namespace"), meta["name"], status)
