"""What the kubelets do in a real cluster, for the API emulator (which runs no pods): each Deployment of one
namespace, read over the Kubernetes API, runs as a real container on the rig's dockerd.

One container per Deployment stands for all its replicas: its pod template's image (pulled by the digest it
pins), the template's plain env values (the Secret's are not needed by the sample app), on a host port of its
own. It is ready once its readiness probe's path answers 200, and only then does the emulator count the
Deployment's pods of that image ready (``Controllers.nodes``), so a rollout waits for a container that serves,
as it would for real pods. A new image replaces the old container once the new one is ready (a rolling
update); replicas 0, or the Deployment gone, removes it.

What Prometheus' kubernetes_sd with ``labelmap: __meta_kubernetes_pod_label_(.+)`` would find is written as
file_sd: one file per Deployment, its ready containers, labelled with the namespace and the pod labels.
``endpoints(selector)`` is what an Endpoints object would list for a Service's selector.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rig.helpers import free_port, write_prom_targets
from rig.kube_cluster import Cluster
from services.core.references import parts_of

TEST_LABEL = "release-console.test.kube-namespace"


@dataclass
class Pod:
    deployment: str
    image: str
    labels: dict[str, str]  # the pod template's
    port: int
    probe: str  # the readiness probe's path
    container: Any  # docker.models.containers.Container
    ready: bool = False


class Nodes:
    """A context manager: polls the API every `interval` s while the block lasts, then removes every container
    it started. `env` is added to each container's (the rig's knobs, e.g. no synthetic traffic)."""

    def __init__(self, docker_client: Any, cluster: Cluster, namespace: str, targets: Path,
                 env: dict[str, str] | None = None, interval: float = 0.2) -> None:
        self.docker, self.cluster, self.namespace, self.targets = docker_client, cluster, namespace, targets
        self.env, self.interval = env or {}, interval
        self.pods: list[Pod] = []
        self.problems: list[str] = []  # what went wrong in the loop, for a failing test's message
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"kube-nodes-{namespace}", daemon=True)

    # -- what the emulator and the ingress stand-in ask
    def ready_for(self, owner: str, images: tuple[str, ...]) -> bool:
        """The emulator's hook: are `owner`'s ("namespace/name") pods of `images` ready? Other namespaces'
        are, as without this stand-in. Called under the emulator's lock: no API call here."""
        namespace, _, name = owner.partition("/")
        if namespace != self.namespace:
            return True
        with self._lock:
            return any(p.ready and p.deployment == name and (p.image,) == images for p in self.pods)

    def endpoints(self, selector: dict[str, str]) -> list[int]:
        """The host ports of the ready containers whose pod labels match `selector`."""
        with self._lock:
            return [p.port for p in self.pods if p.ready and selector.items() <= p.labels.items()]

    # -- the loop
    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sync()
            except Exception as err:  # noqa: BLE001 - the API or dockerd busy: the next tick tries again
                self.problems.append(f"{type(err).__name__}: {err}")

    def _sync(self) -> None:
        listing = self.cluster.read(f"/apis/apps/v1/namespaces/{self.namespace}/deployments") or {}
        wanted: dict[str, dict[str, Any]] = {}
        for deployment in listing.get("items") or []:
            if int(deployment["spec"].get("replicas", 1)) > 0:
                wanted[deployment["metadata"]["name"]] = deployment["spec"]["template"]
        for name, template in wanted.items():
            container = next(c for c in template["spec"]["containers"] if c["name"] == "app")
            if not any(p.deployment == name and p.image == container["image"] for p in self.pods):
                pod = self._start(name, template["metadata"].get("labels") or {}, container)
                with self._lock:
                    self.pods.append(pod)
        for pod in [p for p in self.pods if not p.ready]:
            pod.ready = _answers(pod)
        with self._lock:  # out of the endpoints at once; the container goes after
            retired = [p for p in self.pods if self._retired(p, wanted)]
            self.pods = [p for p in self.pods if p not in retired]
        for pod in retired:
            pod.container.remove(force=True)
        for name in {*wanted, *(p.deployment for p in retired)}:
            self._write_targets(name)

    def _retired(self, pod: Pod, wanted: dict[str, dict[str, Any]]) -> bool:
        """Its Deployment gone or at 0, or replaced by a ready container of the template's new image."""
        template = wanted.get(pod.deployment)
        if template is None:
            return True
        image = next(c["image"] for c in template["spec"]["containers"] if c["name"] == "app")
        return pod.image != image and any(p.ready and p.deployment == pod.deployment and p.image == image
                                          for p in self.pods)

    def _start(self, deployment: str, labels: dict[str, str], container: dict[str, Any]) -> Pod:
        repository, tag, digest = parts_of(container["image"])
        self.docker.images.pull(repository, tag=digest or tag or "latest")
        port = free_port()
        env = {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}
        probe = ((container.get("readinessProbe") or {}).get("httpGet") or {}).get("path", "/")
        started = self.docker.containers.run(
            f"{repository}@{digest}" if digest else container["image"], detach=True, network_mode="host",
            environment={**env, **self.env, "PORT": str(port)}, labels={TEST_LABEL: self.namespace},
            name=f"rc-kube-pod-{deployment}-{uuid.uuid4().hex[:8]}")
        return Pod(deployment, container["image"], dict(labels), port, probe, started)

    def _write_targets(self, deployment: str) -> None:
        with self._lock:
            ready = [p for p in self.pods if p.ready and p.deployment == deployment]
        labels = {_label_name(k): v for k, v in (ready[0].labels if ready else {}).items()}
        write_prom_targets(self.targets, f"{self.namespace}-{deployment}", [f"127.0.0.1:{p.port}" for p in ready],
                           {**labels, "namespace": self.namespace})

    def __enter__(self) -> Nodes:
        if self.cluster.emulator is not None:
            self.cluster.emulator.controllers.nodes = self.ready_for
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.cluster.emulator is not None:
            self.cluster.emulator.controllers.nodes = None
        for container in self.docker.containers.list(all=True, filters={"label": f"{TEST_LABEL}={self.namespace}"}):
            container.remove(force=True)
        for path in self.targets.glob(f"{self.namespace}-*.json"):
            path.unlink()


def _answers(pod: Pod) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{pod.port}{pod.probe}", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _label_name(key: str) -> str:
    """A pod label's key as labelmap makes it a label name: app.kubernetes.io/name -> app_kubernetes_io_name."""
    return re.sub(r"[^A-Za-z0-9_]", "_", key)
