"""The Kubernetes deploy target: stable/canary Deployments behind ingress-nginx or Gateway API.

`KubernetesDeployTarget(config, env)` implements services.ports.DeployTarget with the official
`kubernetes` client, against `target.api_url` (+ `token`) or the kubeconfig (`context`).
Objects are rendered by services/adapters/kube_objects.py and written with server-side apply
(field manager "release-console"). An object whose managed fields already match is not written at
all, so the API server's log shows only real changes. An apply that would change a field another
manager owns (kubectl edit, an HPA) gets 409 from the server; the console then says which fields it
takes over from whom and applies again with force, so a takeover is never silent.

Every changing method records what it changed and how to put it back. When a step fails (a
rollout not ready at `ready_timeout_s`, RBAC, a 409 from another writer, the cluster gone),
it puts back what it changed, newest first, and raises StepFailed saying what failed, what it
put back, and anything it could not. Abort alone keeps what it did (weight 0 is the safe side).
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as kubeconfig
from kubernetes.client.exceptions import ApiException

from services.adapters.kube_objects import (
    CANARY_WEIGHT,
    FIELD_MANAGER,
    STOPPED_REPLICAS,
    Manifest,
    Objects,
    diff,
    event_line,
    event_time,
    image_of,
    managed_view,
    ready_of,
    replicas_of,
    rollout,
    set_elsewhere,
)
from services.core.config import KubernetesTarget, ReleaseConfig
from services.core.operations import Cancelled, StepFailed, pause
from services.core.ports import (
    Abort,
    Change,
    Deploy,
    OnLine,
    Plan,
    PlannedChange,
    Promote,
    Running,
    Scale,
    SetWeight,
    StartCanary,
    TargetStatus,
)
from services.core.references import version_of

POLL_S = 0.5  # between reads of a rollout's status; the first reads come sooner (FIRST_POLL_S, doubling)
FIRST_POLL_S = 0.05
REQUEST_TIMEOUT = (5, 30)  # connect, read (seconds) for every API call
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
EVENTS_SHOWN = 8


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str
    plural: str
    suffix: str  # the typed client's method names end in it: read_namespaced_<suffix>


SERVICE = Kind("Service", "", "services", "service")
DEPLOYMENT = Kind("Deployment", "apps", "deployments", "deployment")
INGRESS = Kind("Ingress", "networking.k8s.io", "ingresses", "ingress")
HTTPROUTE = Kind("HTTPRoute", "gateway.networking.k8s.io", "httproutes", "")
SCALE = Kind("Deployment", "apps", "deployments/scale", "deployment_scale")
POD = Kind("Pod", "", "pods", "pod")
EVENT = Kind("Event", "", "events", "event")
KINDS = {k.kind: k for k in (SERVICE, DEPLOYMENT, INGRESS, HTTPROUTE)}
_CUSTOM_VERBS = {"read": "get", "patch": "patch", "delete": "delete"}


class Kube:
    """The few API calls the target makes, as plain dicts, each failure a StepFailed that says why."""

    def __init__(self, target: KubernetesTarget, env: str) -> None:
        self.target, self.env, self.namespace = target, env, target.namespace
        self._client: Any = None

    @property
    def url(self) -> str:
        if self.target.api_url:
            return self.target.api_url
        if self._client is not None:
            return str(self._client.configuration.host)
        return f"kubeconfig context {self.target.context or '(current)'}"

    def _api(self) -> Any:
        if self._client is None:
            if self.target.api_url:
                cfg = k8s.Configuration(host=self.target.api_url)
                if self.target.token is not None:
                    cfg.api_key = {"BearerToken": self.target.token.get_secret_value()}
                    cfg.api_key_prefix = {"BearerToken": "Bearer"}
                self._client = k8s.ApiClient(cfg)
            else:
                try:
                    self._client = kubeconfig.new_client_from_config(  # type: ignore[no-untyped-call]
                        context=self.target.context)
                except (kubeconfig.ConfigException, OSError, ValueError) as err:
                    raise StepFailed(
                        f"no usable kubeconfig for {self.env} ({err})",
                        (f"set KUBECONFIG, or environments.{self.env}.target.api_url and token",
                         "check the context: kubectl config get-contexts"),
                    ) from None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- calls
    def _method(self, kind: Kind, verb: str) -> Callable[..., Any]:
        api = self._api()
        if kind is HTTPROUTE:
            fn = getattr(k8s.CustomObjectsApi(api), f"{_CUSTOM_VERBS[verb]}_namespaced_custom_object")
            return functools.partial(fn, group=kind.group, version="v1", plural=kind.plural)
        typed = {"": k8s.CoreV1Api, "apps": k8s.AppsV1Api, "networking.k8s.io": k8s.NetworkingV1Api}[kind.group]
        return getattr(typed(api), f"{verb}_namespaced_{kind.suffix}")  # type: ignore[no-any-return]

    def _call(self, verb: str, kind: Kind, name: str | None, method: str, missing_ok: bool = False,
              **kwargs: Any) -> tuple[int, Any]:
        if name is not None:
            kwargs["name"] = name
        try:
            response = self._method(kind, method)(
                namespace=self.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as err:
            body = _status_body(err)
            if err.status == 404 and missing_ok and (body.get("details") or {}).get("kind") != "namespaces":
                return 404, None
            raise self._refused(verb, kind, name, err, body) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise StepFailed(
                f"cannot reach the Kubernetes API at {self.url}: {_reason(err)}",
                (f"check environments.{self.env}.target.api_url (or the kubeconfig context) and that the "
                 "cluster is up: kubectl version", "check the network path (VPN, firewall) to the API server"),
            ) from None
        data = response.data
        response.release_conn()
        return response.status, (json.loads(data) if data else None)

    def get(self, kind: Kind, name: str) -> Manifest | None:
        return self._call("get", kind, name, "read", missing_ok=True)[1]  # type: ignore[no-any-return]

    def apply(self, manifest: Manifest, on_line: OnLine | None = None) -> bool:
        """Server-side apply; True when it created the object. With `on_line`, fields another manager
        owns are taken over only after saying so there; without it (a put-back) they are forced."""
        kind, name = KINDS[manifest["kind"]], manifest["metadata"]["name"]

        def patch(force: bool) -> int:
            return self._call("patch", kind, name, "patch", body=manifest, field_manager=FIELD_MANAGER,
                              force=force, _content_type=APPLY)[0]
        if on_line is None:
            return patch(force=True) == 201
        try:
            return patch(force=False) == 201
        except OwnedElsewhere as conflict:
            on_line(f"{kind.kind} {name}: taking over {conflict.fields} (409 without force: the console's "
                    "config is what this target deploys)")
            return patch(force=True) == 201

    def merge(self, kind: Kind, name: str, patch: Manifest) -> None:
        self._call("patch", kind, name, "patch", body=patch, _content_type=MERGE)

    def scale(self, name: str, replicas: int) -> None:
        # As the console's field manager, so status() can tell its replicas from someone else's.
        self._call("patch", SCALE, name, "patch", body={"spec": {"replicas": replicas}},
                   field_manager=FIELD_MANAGER, _content_type=MERGE)

    def delete(self, kind: Kind, name: str) -> bool:
        """Delete; False when it was already gone."""
        status, _ = self._call("delete", kind, name, "delete", missing_ok=True)
        return status != 404

    def list(self, kind: Kind, label_selector: str = "") -> list[Manifest]:
        _, body = self._call("list", kind, None, "list", label_selector=label_selector or None)
        return list((body or {}).get("items") or [])

    # -- errors
    def _refused(self, verb: str, kind: Kind, name: str | None, err: ApiException, body: dict[str, Any]) -> StepFailed:
        said = body.get("message") or err.reason or ""
        what = f"{kind.kind} {name}" if name else kind.plural
        ns = self.namespace
        causes = {c.get("reason") for c in (body.get("details") or {}).get("causes") or [] if isinstance(c, dict)}
        if err.status == 403 and "NamespaceTerminating" in causes:  # admission, not RBAC
            return StepFailed(
                f"namespace {ns} is being deleted (Terminating): nothing new can be created in it ({what}). "
                f"The API server said: {said}",
                (f"wait until it is gone (kubectl get namespace {ns}), create it again, then retry",
                 f"or fix environments.{self.env}.target.namespace"),
            )
        if err.status == 403:
            return StepFailed(
                f"RBAC forbids {verb} on {kind.plural} in namespace {ns} ({what}): the console's Role needs "
                f'apiGroups: ["{kind.group}"], resources: ["{kind.plural}"], verbs: ["{verb}"]. '
                f"The API server said: {said}",
                (f"add that rule to the Role bound to the console's account in {ns} "
                 "(docs/operations.md, 'Kubernetes target')",
                 f"check: kubectl auth can-i {verb} {kind.plural} -n {ns}"),
            )
        if err.status == 401:
            return StepFailed(
                f"the Kubernetes API at {self.url} refused the console's credentials (401): {said}",
                (f"check environments.{self.env}.target.token, or the kubeconfig user",),
            )
        if err.status == 409 and "FieldManagerConflict" in causes:
            return OwnedElsewhere(body, what)
        if err.status == 409:
            return StepFailed(
                f"{what} was changed by another writer at the same time (409 Conflict): {said}",
                ("retry: the next attempt reads the object again",
                 f"see who else manages it: kubectl -n {ns} get {kind.plural.split('/')[0]} {name} "
                 "--show-managed-fields -o yaml"),
            )
        if err.status == 404 and (body.get("details") or {}).get("kind") == "namespaces":
            return StepFailed(
                f"namespace {ns} does not exist at {self.url}",
                (f"create it: kubectl create namespace {ns}", f"or fix environments.{self.env}.target.namespace"),
            )
        if err.status == 404:
            return StepFailed(f"{what} not found in namespace {ns}", ("deploy first",))
        return StepFailed(
            f"the Kubernetes API at {self.url} answered {verb} {what} with {err.status} {err.reason}: {said}",
            ("retry", f"kubectl -n {ns} get {kind.plural.split('/')[0]}"),
        )


class OwnedElsewhere(StepFailed):
    """A server-side apply refused with 409 because other managers own fields it would change."""

    def __init__(self, body: dict[str, Any], what: str) -> None:
        owned = [(c.get("field", "?"), re.search(r'conflict with "([^"]+)"', c.get("message", "")))
                 for c in (body.get("details") or {}).get("causes") or [] if isinstance(c, dict)]
        self.fields = "; ".join(f"{path} from {m.group(1) if m else 'another manager'}" for path, m in owned)
        super().__init__(f"{what}: fields owned by another manager: {self.fields}")


def _status_body(err: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(err.body or "{}")
    except ValueError:
        return {"message": str(err.body)[:300]}
    return body if isinstance(body, dict) else {}


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None) or err
    text = str(reason)
    for known in ("Connection refused", "Name or service not known", "timed out", "No route to host"):
        if known.lower() in text.lower():
            return known.lower()
    return " ".join(text.split())[:200]


@dataclass
class Changes:
    """What one operation changed, how to put each change back (newest last), and how to wait until a
    put-back Deployment serves again."""

    on_line: OnLine
    done: list[str] = field(default_factory=list)
    undo: list[tuple[str, Callable[[], object], Callable[[], str] | None]] = field(default_factory=list)
    not_ready: list[str] = field(default_factory=list)  # put back, but not serving again at the deadline

    def did(self, what: str, put_back: str | None = None, undo: Callable[[], object] | None = None,
            settle: Callable[[], str] | None = None) -> None:
        """`settle`, for a Deployment: waits until the put-back rollout is complete, returns its state;
        StepFailed when it is not ready at its own deadline."""
        self.on_line(what)
        self.done.append(what)
        if put_back and undo:
            self.undo.append((put_back, undo, settle))

    def roll_back(self) -> str:
        """Put everything back, newest first, then wait for what serves traffic to be ready again; returns
        the report for the error message, naming what is ready again and what is not."""
        if not self.done:
            return "Nothing was changed."
        back, failed, waits = [], [], []
        for what, undo, settle in reversed(self.undo):
            try:
                undo()
                back.append(what)
                self.on_line(f"put back: {what}")
            except StepFailed as err:
                failed.append(f"{what} ({err})")
                continue
            if settle:
                waits.append((what, settle))
        report = f"Put back: {'; '.join(back)}." if back else "Nothing needed putting back."
        ready = []
        for what, settle in waits:
            try:
                ready.append(settle())
            except StepFailed as err:
                self.not_ready.append(str(err).rstrip("."))
            except Cancelled:  # the operator cancelled: put back, but not waited for
                self.not_ready.append(f"{what}: not waited for (cancelled)")
        if ready:
            report += f" Ready again: {'; '.join(ready)}."
        if self.not_ready:
            report += f" NOT ready again: {'; '.join(self.not_ready)}."
        if failed:
            report += f" Could NOT put back: {'; '.join(failed)}; fix by hand."
        return report


class KubernetesDeployTarget:
    """DeployTarget for a Kubernetes namespace (see the module docstring)."""

    def __init__(self, config: ReleaseConfig, env: str) -> None:
        target = config.environment(env).target
        if not isinstance(target, KubernetesTarget):
            raise StepFailed(f"{env}'s deploy target is {target.kind!r}, not kubernetes",
                             (f"set [environments.{env}.target] kind = \"kubernetes\"",))
        self.config, self.env, self.target = config, env, target
        self.objects = Objects(config, env)
        self.kube = Kube(target, env)
        self.stable = self.objects.deployment_name("stable")
        self.canary = self.objects.deployment_name("canary")

    def close(self) -> None:
        self.kube.close()

    def describe(self) -> str:
        return f"kubernetes namespace {self.target.namespace} at {self.kube.url} ({self.target.traffic_split})"

    # -- reads
    def _split_kind(self) -> Kind:
        return HTTPROUTE if self.target.traffic_split == "gateway-api" else INGRESS

    def _split(self) -> Manifest | None:
        return self.kube.get(self._split_kind(), self.objects.split(0)["metadata"]["name"])

    def _weight(self) -> int:
        return self.objects.weight_of(self._split())

    def _running_canary(self) -> Manifest:
        canary = self.kube.get(DEPLOYMENT, self.canary)
        if canary is None or replicas_of(canary) == 0:
            raise StepFailed(f"no canary is running in namespace {self.target.namespace} "
                             f"(Deployment {self.canary} {'is scaled to 0' if canary else 'does not exist'})",
                             ("start a canary first",))
        return canary

    @staticmethod
    def _check_weight(weight: int) -> None:
        if not 0 <= weight <= 100:
            raise StepFailed(f"canary weight must be 0..100, got {weight}", ("give a weight from 0 to 100",))

    def status(self) -> TargetStatus:
        stable, canary = self.kube.get(DEPLOYMENT, self.stable), self.kube.get(DEPLOYMENT, self.canary)
        split = self._split()
        running = canary is not None and replicas_of(canary) > 0
        pods = self.kube.list(POD, f"app={self.objects.name}")
        restarts = sum(int(c.get("restartCount") or 0)
                       for pod in pods for c in (pod.get("status") or {}).get("containerStatuses") or [])
        image, canary_image = image_of(stable) or "", image_of(canary) if running else None
        weight = self.objects.weight_of(split)
        return TargetStatus(
            version=version_of(image) if image else "-",
            ready=ready_of(stable),
            desired=replicas_of(stable),
            canary_version=version_of(canary_image) if canary_image else None,
            canary_weight=weight,
            restarts=restarts,
            events=tuple(self._events()),
            image=image,
            canary_image=canary_image,
            canary_ready=ready_of(canary) if running else 0,
            running=(Running(image),) if image else (),
            outside=self._outside(stable, split, weight),
        )

    def _outside(self, stable: Manifest | None, split: Manifest | None, weight: int) -> tuple[str, ...]:
        """The stable replicas and the canary weight, when a manager other than the console set them last
        (the console applies and scales as FIELD_MANAGER; see kube_objects.set_elsewhere)."""
        where = (("f:spec", "f:rules") if self.target.traffic_split == "gateway-api"
                 else ("f:metadata", "f:annotations", f"f:{CANARY_WEIGHT}"))
        lines = [f"replicas {replicas_of(stable)} set by {manager} at {when}"
                 for manager, when in set_elsewhere(stable, "f:spec", "f:replicas")]
        kind = self._split_kind().kind
        lines += [f"weight {weight}% set in {kind} {split['metadata']['name']} by {manager} at {when}"
                  for manager, when in set_elsewhere(split, *where) if split]
        return tuple(lines)

    def _ours(self, name: str) -> bool:
        n = self.objects.name
        return name in (n, f"{n}-app", f"{n}-canary", self.stable) or name.startswith(
            (f"{self.stable}-", f"{self.canary}-"))  # their ReplicaSets and Pods

    def _events(self, warnings_only: bool = False) -> list[str]:
        mine = [e for e in self.kube.list(EVENT) if self._ours((e.get("involvedObject") or {}).get("name", ""))
                and (not warnings_only or e.get("type") == "Warning")]
        mine.sort(key=event_time)
        return [event_line(e) for e in mine[-EVENTS_SHOWN:]]

    # -- plan
    def plan(self, change: Change) -> Plan:
        o = self.objects
        changes: list[PlannedChange] = []
        if isinstance(change, Deploy):
            stable = self.kube.get(DEPLOYMENT, self.stable)
            replicas = replicas_of(stable) if stable else self.config.canary.stable_replicas
            for manifest in (o.service("stable"), o.service("canary"),
                             o.deployment("stable", change.image, replicas), o.entry(self._weight())):
                changes.append(self._planned(manifest))
        elif isinstance(change, StartCanary):
            self._check_weight(change.weight)
            for manifest in (o.service("canary"),
                             o.deployment("canary", change.image, self.config.canary.canary_replicas),
                             o.split(change.weight)):
                changes.append(self._planned(manifest))
        elif isinstance(change, SetWeight):
            self._check_weight(change.weight)
            if change.weight:
                self._running_canary()
            changes.append(self._planned_split(change.weight))
        elif isinstance(change, Promote):
            canary = self._running_canary()
            stable = self.kube.get(DEPLOYMENT, self.stable)
            replicas = replicas_of(stable) if stable else self.config.canary.stable_replicas
            changes.append(self._planned(o.deployment("stable", image_of(canary) or "", replicas)))
            changes.append(self._planned_split(0))
            shape = o.deployment("canary", image_of(canary) or "", replicas_of(canary))
            changes.append(PlannedChange("Deployment", self.canary, "delete",
                                         diff("Deployment", self.canary, managed_view(canary, shape), None)))
        elif isinstance(change, Abort):
            changes.append(self._planned_split(0))
            changes.append(self._planned_scale(self.canary, 0))
        elif isinstance(change, Scale):
            changes.append(self._planned_scale(self.stable, change.replicas))
        return Plan(self.describe(), tuple(changes))

    def _planned(self, desired: Manifest) -> PlannedChange:
        kind, name = desired["kind"], desired["metadata"]["name"]
        current = self.kube.get(KINDS[kind], name)
        text = diff(kind, name, current, desired)
        return PlannedChange(kind, name, "create" if current is None else "update" if text else "unchanged", text)

    def _planned_split(self, weight: int) -> PlannedChange:
        desired = self.objects.split(weight)
        if weight == 0 and self._split() is None:  # as _set_weight: no split object, no traffic to move
            return PlannedChange(desired["kind"], desired["metadata"]["name"], "unchanged")
        return self._planned(desired)

    def _planned_scale(self, name: str, replicas: int) -> PlannedChange:
        current = self.kube.get(DEPLOYMENT, name)
        if current is None:
            return PlannedChange("Deployment", name, "unchanged")
        shape = {"metadata": {"name": name}, "spec": {"replicas": replicas}}
        text = diff("Deployment", name, current, shape)
        return PlannedChange("Deployment", name, "scale" if text else "unchanged", text)

    # -- changes
    @contextmanager
    def _changing(self, on_line: OnLine, keep: bool = False) -> Iterator[Changes]:
        changes = Changes(on_line)

        def put_back() -> str:
            if keep:
                return f"Kept what was done: {'; '.join(changes.done)}." if changes.done else "Nothing was changed."
            return changes.roll_back()

        try:
            yield changes
        except Cancelled as err:  # ctrl+x, SIGINT: mid-rollout; put back as a failure does
            report = put_back()
            ns = self.target.namespace
            watch = (f" Watch it: kubectl -n {ns} rollout status deployment/{self.stable}."
                     if changes.not_ready else "")
            raise Cancelled(f"{err}. {report}{watch}") from None
        except StepFailed as err:
            report = put_back()
            options = err.next_options
            if changes.not_ready:  # the old version is not serving in full: that comes first
                ns = self.target.namespace
                options = (f"watch it: kubectl -n {ns} rollout status deployment/{self.stable}",
                           f"kubectl -n {ns} get pods -l app={self.objects.name}", *options)
            raise StepFailed(f"{err} {report}", options) from None

    def _apply(self, changes: Changes, desired: Manifest, what: str = "") -> None:
        """Apply one object unless its managed fields already match; record how to put it back."""
        kind, name = KINDS[desired["kind"]], desired["metadata"]["name"]
        current = self.kube.get(kind, name)
        if current is not None and managed_view(current, desired) == desired:
            return
        self.kube.apply(desired, changes.on_line)
        label = f"{kind.kind} {name}"
        if current is None:
            changes.did(f"created {label}{what}", f"deleted {label}", lambda: self.kube.delete(kind, name))
        else:
            before = managed_view(current, desired)
            settle = (lambda: self._settled(name, changes.on_line)) if kind is DEPLOYMENT else None
            changes.did(f"updated {label}{what}", f"{label} as it was", lambda: self.kube.apply(before), settle)

    def _apply_deployment(self, changes: Changes, track: str, image: str, replicas: int) -> None:
        name = self.objects.deployment_name(track)
        previous = image_of(self.kube.get(DEPLOYMENT, name))
        was = f" (was {previous})" if previous and previous != image else ""
        self._apply(changes, self.objects.deployment(track, image, replicas), f": image {image}{was}")

    def _set_weight(self, changes: Changes, weight: int) -> None:
        current = self._split()
        if current is None and weight == 0:
            return  # no split object yet: nothing goes to the canary
        old = self.objects.weight_of(current)
        self._apply(changes, self.objects.split(weight), f": canary weight {old} -> {weight}")

    def _scale(self, changes: Changes, name: str, replicas: int) -> None:
        old = replicas_of(self.kube.get(DEPLOYMENT, name))
        if old == replicas:
            return
        self.kube.scale(name, replicas)
        changes.did(f"scaled Deployment {name} {old} -> {replicas}", f"Deployment {name} back to {old} replicas",
                    lambda: self.kube.scale(name, old), lambda: self._settled(name, changes.on_line))

    def _annotate(self, changes: Changes, name: str, value: str | None) -> None:
        current = ((self.kube.get(DEPLOYMENT, name) or {}).get("metadata") or {}).get("annotations") or {}
        old = current.get(STOPPED_REPLICAS)
        self.kube.merge(DEPLOYMENT, name, {"metadata": {"annotations": {STOPPED_REPLICAS: value}}})
        note = f"noted {name}'s {value} replicas for start" if value else f"cleared {name}'s stop note"
        changes.did(note, f"{name}'s stop note", lambda: self.kube.merge(
            DEPLOYMENT, name, {"metadata": {"annotations": {STOPPED_REPLICAS: old}}}))

    def _settled(self, name: str, on_line: OnLine) -> str:
        """After a put-back: wait, with a deadline of its own, until the Deployment serves again."""
        return f"Deployment {name} ({self._wait_ready(name, on_line, then='after the put-back')})"

    def _wait_ready(self, name: str, on_line: OnLine, then: str = "aborted automatically") -> str:
        """Until the rollout is complete (returns its last progress line); at ready_timeout_s,
        StepFailed saying `then` (the caller puts things back)."""
        timeout = self.target.ready_timeout_s
        deadline, last, interval = time.monotonic() + timeout, "", FIRST_POLL_S
        while True:
            deployment = self.kube.get(DEPLOYMENT, name)
            if deployment is None:
                raise StepFailed(f"Deployment {name} disappeared while rolling out (deleted by someone else)",
                                 ("find out who deleted it, then deploy again",))
            done, line, stuck = rollout(deployment)
            if line != last:
                on_line(f"{name}: {line}")
                last = line
            if done:
                return line
            if stuck or time.monotonic() >= deadline:
                why = stuck or f"not ready within {timeout} s"
                warnings = self._events(warnings_only=True)
                seen = f" Last warning: {warnings[-1]}." if warnings else ""
                ns = self.target.namespace
                raise StepFailed(
                    f"Deployment {name} {why} ({line}): {then}.{seen}",
                    (f"kubectl -n {ns} describe deployment {name}",
                     f"kubectl -n {ns} get events --sort-by=.lastTimestamp",
                     f"fix the image or raise environments.{self.env}.target.ready_timeout_s, then try again"),
                )
            pause(min(interval, max(deadline - time.monotonic(), 0.0)))
            interval = min(interval * 2, POLL_S)

    def deploy(self, image: str, on_line: OnLine) -> None:
        with self._changing(on_line) as changes:
            weight = self._weight()  # the HTTPRoute carries the canary's share: keep it
            stable = self.kube.get(DEPLOYMENT, self.stable)
            replicas = replicas_of(stable) if stable else self.config.canary.stable_replicas
            self._apply(changes, self.objects.service("stable"))
            self._apply(changes, self.objects.service("canary"))
            self._apply_deployment(changes, "stable", image, replicas)
            self._wait_ready(self.stable, on_line)
            self._apply(changes, self.objects.entry(weight))

    def start_canary(self, image: str, weight: int, on_line: OnLine) -> None:
        self._check_weight(weight)
        with self._changing(on_line) as changes:
            if self.kube.get(DEPLOYMENT, self.stable) is None:
                raise StepFailed(f"nothing is deployed in namespace {self.target.namespace}: no {self.stable}",
                                 ("deploy a stable version first",))
            self._apply(changes, self.objects.service("canary"))
            self._apply_deployment(changes, "canary", image, self.config.canary.canary_replicas)
            self._wait_ready(self.canary, on_line)
            self._set_weight(changes, weight)

    def set_weight(self, weight: int, on_line: OnLine) -> None:
        self._check_weight(weight)
        with self._changing(on_line) as changes:
            if weight:
                self._running_canary()
            self._set_weight(changes, weight)

    def promote(self, on_line: OnLine) -> None:
        with self._changing(on_line) as changes:
            canary = self._running_canary()
            image = image_of(canary) or ""
            stable = self.kube.get(DEPLOYMENT, self.stable)
            replicas = replicas_of(stable) if stable else self.config.canary.stable_replicas
            self._apply_deployment(changes, "stable", image, replicas)
            self._wait_ready(self.stable, on_line)
            self._set_weight(changes, 0)
            shape = self.objects.deployment("canary", image, replicas_of(canary))
            before = managed_view(canary, shape)
            if self.kube.delete(DEPLOYMENT, self.canary):
                changes.did(f"deleted Deployment {self.canary}", f"Deployment {self.canary}",
                            lambda: self.kube.apply(before))

    def abort(self, on_line: OnLine) -> None:
        with self._changing(on_line, keep=True) as changes:
            self._set_weight(changes, 0)
            if self.kube.get(DEPLOYMENT, self.canary) is not None:
                self._scale(changes, self.canary, 0)
            if not changes.done:
                on_line("no canary traffic or replicas: nothing to abort")

    def scale(self, replicas: int, on_line: OnLine) -> None:
        if replicas < 0:
            raise StepFailed(f"replicas must be 0 or more, got {replicas}", ("give a replica count",))
        with self._changing(on_line) as changes:
            if self.kube.get(DEPLOYMENT, self.stable) is None:
                raise StepFailed(f"Deployment {self.stable} not found in namespace {self.target.namespace}",
                                 ("deploy first",))
            self._scale(changes, self.stable, replicas)
            self._wait_ready(self.stable, on_line)

    def stop(self, on_line: OnLine) -> None:
        with self._changing(on_line) as changes:
            for name in (self.stable, self.canary):
                replicas = replicas_of(self.kube.get(DEPLOYMENT, name))
                if replicas:
                    self._annotate(changes, name, str(replicas))
                    self._scale(changes, name, 0)
                    self._wait_ready(name, on_line)
            if not changes.done:
                on_line(f"nothing running in namespace {self.target.namespace}: nothing to stop")

    def start(self, on_line: OnLine) -> None:
        with self._changing(on_line) as changes:
            for name in (self.stable, self.canary):
                deployment = self.kube.get(DEPLOYMENT, name)
                if deployment is None:
                    if name == self.stable:
                        raise StepFailed(f"nothing is deployed in namespace {self.target.namespace}",
                                         ("deploy first",))
                    continue
                noted = ((deployment.get("metadata") or {}).get("annotations") or {}).get(STOPPED_REPLICAS)
                if noted is None and (name == self.canary or replicas_of(deployment)):
                    continue  # running, or a canary that was not stopped by us
                self._scale(changes, name, int(noted) if noted else self.config.canary.stable_replicas)
                self._wait_ready(name, on_line)
                if noted is not None:
                    self._annotate(changes, name, None)
            if not changes.done:
                on_line("already running: nothing to start")

