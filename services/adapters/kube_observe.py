"""The app's logs and resource use on Kubernetes: its pods, found by the labels the Kubernetes target
gives them (app=<name>, version=stable|canary), their logs through read_namespaced_pod_log (follow as a
chunked stream), and CPU and memory from the metrics API (metrics.k8s.io/v1beta1) when the cluster
serves it; without metrics-server it answers 404, and the report says so plainly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from services.adapters.kube_objects import Objects
from services.adapters.kube_target import POD, REQUEST_TIMEOUT, Kube
from services.core.config import KubernetesTarget, ReleaseConfig
from services.core.log_lines import Stream, merged
from services.core.observe import ROLES, LogRecord, Usage, UsageReport
from services.core.operations import StepFailed

DONE = ("Succeeded", "Failed")
FOLLOW_READ_S = 86_400  # a quiet pod may say nothing for long; a follow ends by cancel (shutdown), not by this
NO_METRICS = "metrics-server is not installed (the metrics.k8s.io API answers 404): no CPU or memory figures"
_CPU = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0}
_BYTES = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "K": 10**3, "M": 10**6,
          "G": 10**9, "T": 10**12, "": 1}


class KubeObserver:
    def __init__(self, config: ReleaseConfig, env: str) -> None:
        target = config.environment(env).target
        if not isinstance(target, KubernetesTarget):
            raise ValueError(f"environment {env} has no kubernetes target")
        self.env, self.namespace, self.name = env, target.namespace, Objects(config, env).name
        self.kube = Kube(target, env)

    def close(self) -> None:
        self.kube.close()

    def _pods(self, role: str | None) -> list[tuple[str, str, str]]:
        """(pod, role, container) of the app's live pods, stable first."""
        found = []
        for each in ROLES if role is None else (role,):
            for pod in self.kube.list(POD, f"app={self.name},version={each}"):
                if ((pod.get("status") or {}).get("phase")) in DONE:
                    continue
                containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
                found.append((pod["metadata"]["name"], each, "app" if "app" in containers else containers[0]))
        return found

    def logs(self, role: str | None, since_s: float | None, follow: bool,
             cancel: threading.Event) -> Iterator[LogRecord]:
        core = k8s.CoreV1Api(self.kube._api())
        streams = []
        timeout = (REQUEST_TIMEOUT[0], FOLLOW_READ_S if follow else REQUEST_TIMEOUT[1])
        for pod, each, container in self._pods(role):
            opened: list[Any] = []

            def start(pod: str = pod, container: str = container, opened: list[Any] = opened) -> Any:
                response: Any = core.read_namespaced_pod_log(
                    pod, self.namespace, container=container, follow=follow, timestamps=True,
                    since_seconds=max(1, int(since_s)) if since_s is not None else None,
                    _preload_content=False, _request_timeout=timeout)
                opened.append(response)
                return response.stream(4096, decode_content=True)

            def stop(opened: list[Any] = opened) -> None:
                for response in opened:
                    getattr(response, "shutdown", response.close)()  # wakes a read blocked in another thread
                    response.release_conn()

            streams.append(Stream(pod, each, start, stop))
        yield from merged(streams, cancel)

    def usage(self) -> UsageReport:
        pods = self._pods(None)
        roles = {pod: each for pod, each, _ in pods}
        body: Any
        try:
            body = k8s.CustomObjectsApi(self.kube._api()).list_namespaced_custom_object(
                "metrics.k8s.io", "v1beta1", self.namespace, "pods", label_selector=f"app={self.name}",
                _request_timeout=REQUEST_TIMEOUT)
        except ApiException as err:
            if err.status == 404:
                return UsageReport((), "metrics.k8s.io", NO_METRICS)
            raise StepFailed(f"the metrics API of {self.kube.url} refused the read: {err.status} {err.reason}",
                             ("check that the console's account may list pods.metrics.k8s.io",)) from None
        rows = []
        for item in body.get("items") or []:
            pod = item["metadata"]["name"]
            if pod not in roles:
                continue
            usages = [c.get("usage") or {} for c in item.get("containers") or []]
            rows.append(Usage(pod, roles[pod], round(sum(cores(u.get("cpu", "0")) for u in usages) * 100, 2),
                              sum(size_of(u.get("memory", "0")) for u in usages)))
        return UsageReport(tuple(sorted(rows, key=lambda r: (r.role != "stable", r.source))), "metrics.k8s.io")


def cores(quantity: str) -> float:
    """A CPU quantity ("250m", "123456n", "2") in cores."""
    unit = quantity[-1] if quantity and quantity[-1] in "num" else ""
    return float(quantity[: len(quantity) - len(unit)] or 0) * _CPU[unit]


def size_of(quantity: str) -> int:
    """A memory quantity ("64Mi", "1G", "1024") in bytes."""
    unit = next((u for u in sorted(_BYTES, key=len, reverse=True) if u and quantity.endswith(u)), "")
    return int(float(quantity[: len(quantity) - len(unit)] or 0) * _BYTES[unit])
