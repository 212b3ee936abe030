"""What the Kubernetes target's tests share: the cluster they run against, read through its API.

``Cluster`` wraps the ``kube_api`` fixture: the emulator by default, or with ``RC_REAL_KUBE=1`` the
kubeconfig's cluster. Objects are read over HTTP through the API, never from the emulator's store, so
the same assertions hold on both; only the request log (what was written, in order) is the emulator's,
and ``assert_writes`` checks it where it exists.

On a real cluster the images must be pullable by its nodes and serve the app's health path: the rig's
sample app pushed as ``$RC_KUBE_IMAGE_REPO:1.0.0``, ``:1.1.0`` and ``:1.2.0`` (see the README). The
stuck image is a tag nobody pushes, so its pods never become ready there; the emulator is told so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from rig import config_builder as toml
from rig.helpers import KubeAPI, unique_name

N = "food-management"
REPO = os.environ.get("RC_KUBE_IMAGE_REPO", "127.0.0.1:5000/food-management")
V1, V2, V3 = f"{REPO}:1.0.0", f"{REPO}:1.1.0", f"{REPO}:1.2.0"
STUCK = f"{REPO}:0.0.0-never-ready"  # never pushed: a real cluster cannot pull it; the emulator never readies it
SECRETS = {
    "STAGING_DATABASE_URL": "postgresql://app:db-s3cret@db.internal/food",
    "STAGING_REDIS_URL": "redis://:redis-s3cret@redis.internal:6379",
    "KUBE_TOKEN": "token-s3cret",
}
SPLITS = ("ingress-nginx", "gateway-api")
ROUTES = "gateway.networking.k8s.io"


class Lines(list[str]):
    """A log sink that keeps the lines."""

    def __call__(self, line: str) -> None:
        self.append(line)


@dataclass
class Cluster:
    """The API the tests run against: its URL for the console's config (None: the kubeconfig's), the
    emulator when it is one, and how long real pods may take."""

    api: KubeAPI

    @property
    def emulator(self) -> Any:
        return self.api.emulator

    @property
    def url(self) -> str | None:
        return self.api.host if self.emulator else None

    @property
    def ready_timeout_s(self) -> int:
        """The console's ready_timeout_s for rollouts that should complete: real pods pull and probe."""
        return 5 if self.emulator else 300

    @property
    def stuck_timeout_s(self) -> int:
        """A short ready_timeout_s for rollouts that get stuck, long enough for a real controller to
        reach the surge's steady state (7 of 9 ready, 5 updated); RC_KUBE_STUCK_TIMEOUT_S overrides it."""
        return int(os.environ.get("RC_KUBE_STUCK_TIMEOUT_S") or (1 if self.emulator else 30))

    def read(self, path: str) -> dict[str, Any] | None:
        """GET an API path; None on 404."""
        api_client = self.api.api_client
        response = api_client.call_api(*api_client.param_serialize(
            method="GET", resource_path=path, auth_settings=["BearerToken"]))
        response.read()
        if response.status == 404:
            return None
        assert response.status == 200, f"GET {path}: {response.status} {response.data[:300]!r}"
        body: dict[str, Any] = json.loads(response.data)
        return body

    def get(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.read(f"{_base(group)}/namespaces/{namespace}/{plural}/{name}")

    def everything_in(self, namespace: str) -> str:
        """The namespace's Deployments, Services, Ingresses and HTTPRoutes as one JSON text."""
        kinds = (("apps", "deployments"), ("", "services"), ("networking.k8s.io", "ingresses"), (ROUTES, "httproutes"))
        return json.dumps([self.read(f"{_base(group)}/namespaces/{namespace}/{plural}") for group, plural in kinds])

    def assert_writes(self, expected: list[tuple[str, str, str | None, int]]) -> None:
        """(verb, resource, name, status) of every changing request since the last reset, in order: the
        emulator's request log; a real cluster keeps none, so there the behaviour alone is asserted."""
        if self.emulator is not None:
            assert [(r.verb, r.resource, r.name, r.status) for r in self.emulator.writes()] == expected

    def reset_requests(self) -> None:
        if self.emulator is not None:
            self.emulator.reset_requests()

    def new_namespace(self, prefix: str = "rc-kube") -> str:
        """A namespace with the app's Secret in it (real pods cannot start without the values it holds)."""
        core = client.CoreV1Api(self.api.api_client)
        name = unique_name(prefix)
        core.create_namespace({"metadata": {"name": name}})
        core.create_namespaced_secret(name, {"metadata": {"name": f"{N}-secrets"}, "stringData": {
            "DATABASE_URL": SECRETS["STAGING_DATABASE_URL"], "REDIS_URL": SECRETS["STAGING_REDIS_URL"]}})
        self.reset_requests()
        return name

    def temporary_namespace(self) -> Iterator[str]:
        """new_namespace() for one test (a fixture yields from it); deleted afterwards."""
        name = self.new_namespace()
        yield name
        client.CoreV1Api(self.api.api_client).delete_namespace(name)

    # -- the app's objects
    def deployment(self, namespace: str, track: str) -> dict[str, Any] | None:
        return self.get("apps", "deployments", namespace, f"{N}-{track}")

    def split_object(self, namespace: str, split: str) -> tuple[str, str, dict[str, Any] | None]:
        """(resource, name, object) of what carries the canary weight."""
        if split == "gateway-api":
            return "httproutes", N, self.get(ROUTES, "httproutes", namespace, N)
        return "ingresses", f"{N}-canary", self.get("networking.k8s.io", "ingresses", namespace, f"{N}-canary")

    def weights(self, namespace: str, split: str) -> dict[str, int]:
        """The backends' shares as the API serves them: {"stable": x, "canary": y}."""
        _, _, obj = self.split_object(namespace, split)
        assert obj is not None
        if split == "gateway-api":
            refs = obj["spec"]["rules"][0]["backendRefs"]
            return {"stable" if r["name"] == f"{N}-app" else "canary": r["weight"] for r in refs}
        annotations = obj["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
        assert obj["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == f"{N}-canary"
        canary = int(annotations["nginx.ingress.kubernetes.io/canary-weight"])
        return {"stable": 100 - canary, "canary": canary}


def _base(group: str) -> str:
    version = {"": "v1", "apps": "v1", "networking.k8s.io": "v1", ROUTES: "v1"}[group]
    return f"/api/{version}" if not group else f"/apis/{group}/{version}"


def container(dep: dict[str, Any] | None) -> dict[str, Any]:
    assert dep is not None
    containers: list[dict[str, Any]] = dep["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "app")


def env_of(dep: dict[str, Any] | None) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(dep)["env"]}


def release_config(tmp_path: Path, api_url: str | None, namespace: str, split: str, ready_timeout_s: int = 5,
                   token: str | None = None, database: str | None = None) -> Any:
    """release.toml for one staging environment on Kubernetes: the API at api_url with the bearer token (the
    emulator's); without api_url, the kubeconfig's cluster. The history and the audit's table are in `database`
    (a DSN, read as ${TEST_DB}); without it, at an address nobody serves."""
    target = toml.kubernetes_target(namespace, api_url=api_url, token=toml.secret("KUBE_TOKEN") if api_url else None,
                                    traffic_split=split, host="food.example.test", gateway="public-gateway",
                                    ready_timeout_s=ready_timeout_s)
    database_url = toml.secret("TEST_DB" if database else "STAGING_DATABASE_URL")
    staging = toml.environment(
        api_url="https://staging.food.example.test/api", database_url=database_url,
        redis_url=toml.secret("STAGING_REDIS_URL"), log_level="warn", target=target,
        features={"analytics": True, "notifications": False, "experimental_features": True})
    return toml.release({"staging": staging}, name=N, image=REPO, app={"port": 3000, "health_path": "/api/health"},
                        canary={"stable_replicas": 9, "canary_replicas": 1}).load(
        tmp_path / "release.toml", {**SECRETS, "KUBE_TOKEN": token or SECRETS["KUBE_TOKEN"], "TEST_DB": database or ""})
