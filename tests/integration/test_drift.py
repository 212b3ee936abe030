"""Drift on real targets: a container replaced by hand on the Docker host, a weight edited in the nginx
upstream file, a replica count and a weight changed through the Kubernetes API; `status --check-drift`
on the CLI; `revision adopt` recording what runs. The history is in a real PostgreSQL database."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Nginx
from rig import config_builder as toml
from rig.helpers import KubeAPI
from rig.kube_cluster import SECRETS, SPLITS, V1, V2, Cluster, Lines, N, release_config
from rig.opkit import run

from console import cli
from services import factory
from services.adapters.docker_target import APP
from services.core import config as config_module
from services.core.events import Outcome
from services.core.ports import Revision
from services.environments.drift import compare
from services.environments.overview import environment_rows

MERGE = "application/merge-patch+json"


# --- the Docker host -------------------------------------------------------------------------------


@pytest.fixture
def app_dir(tmp_path: Path, nginx: Nginx, repository: str) -> Path:
    low = 22000 + (uuid.uuid4().int % 400) * 20
    return toml.staging_app(tmp_path / "app", nginx, os.environ["RC_DOCKER_URL"], low,
                            name=f"rc-drift-{uuid.uuid4().hex[:8]}", image=repository)


@pytest.fixture
def services(app_dir: Path, pg_database: str, docker_client: Any, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[factory.Services]:
    monkeypatch.setenv("TEST_DB", pg_database)
    monkeypatch.setenv("XDG_STATE_HOME", str(app_dir / "xdg-state"))
    config = config_module.load(app_dir / "release.toml", {"TEST_DB": pg_database})
    made = factory.build(config, state=app_dir / "state")
    yield made
    made.close()
    prefix = f"{config.app.name}-staging-"
    for container in docker_client.containers.list(all=True):
        if container.labels.get(APP) == config.app.name or container.name.startswith(prefix):
            container.remove(force=True)


def deployed(services: factory.Services) -> None:
    result, _, _ = run(services, "deploy", "staging", {"version": "1.0.0"}, typed="yes")
    assert result.outcome is Outcome.SUCCEEDED, result.detail


def status_cli(app_dir: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    code = cli.main(["--config", str(app_dir / "release.toml"), "status", "--env", "staging", *flags])
    return code, capsys.readouterr().out


def test_a_container_replaced_by_hand_shows_as_drift_until_adopted(
        services: factory.Services, app_dir: Path, repository: str, docker_client: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    deployed(services)
    code, text = status_cli(app_dir, capsys, "--check-drift")
    assert code == cli.EXIT_OK and "DRIFT" not in text
    [stable] = docker_client.containers.list(filters={"label": f"{APP}={services.config.app.name}"})
    name, port = stable.name, stable.labels["release-console.port"]

    # The hotfix by hand: the same name and port, another image, none of the console's labels.
    docker_client.images.pull(repository, "nocheck")
    stable.remove(force=True)
    docker_client.containers.run(f"{repository}:nocheck", name=name, network_mode="host", detach=True,
                                 environment={"PORT": port, "VERSION": "hotfix"})
    hand_digest = docker_client.images.get(f"{repository}:nocheck").attrs["RepoDigests"][0].split("@")[1]

    [row] = environment_rows(services, ["staging"])
    assert row.drift == (f"image changed outside the console: runs {repository}:nocheck ({hand_digest[:19]}), "
                         f"revision #1 recorded {repository}:1.0.0@{services.registry.digest(f'{repository}:1.0.0')}",)
    assert row.ready == "1/1"  # it serves on the console's port: it counts
    code, text = status_cli(app_dir, capsys, "--check-drift")
    assert code == cli.EXIT_FAILED and f"staging: DRIFT image changed outside the console: runs {repository}:nocheck" \
        in text
    assert status_cli(app_dir, capsys)[0] == cli.EXIT_OK  # without --check-drift, drift is shown, not failed
    code, out = status_cli(app_dir, capsys, "--json")
    assert json.loads(out)[0]["drift_detail"][0]["running"].startswith(f"{repository}:nocheck")
    seen = [r for r in services.audit.tail(50) if r["action"] == "drift"]
    assert len(seen) == 1, seen  # seen by the pane's read and three CLI runs: audited once

    adopted, _, _ = run(services, "adopt", "staging", typed="yes")
    assert adopted.outcome is Outcome.SUCCEEDED, adopted.detail
    latest = services.revisions("staging").list()[-1]
    assert (latest.image, latest.digest, latest.action) == (f"{repository}:nocheck", hand_digest, "adopt")
    assert status_cli(app_dir, capsys, "--check-drift")[0] == cli.EXIT_OK


def test_a_weight_edited_in_the_upstream_file_shows_as_drift(
        services: factory.Services, app_dir: Path, repository: str, nginx: Nginx,
        capsys: pytest.CaptureFixture[str]) -> None:
    deployed(services)
    services.target("staging").start_canary(f"{repository}:2.0.0", 20, print)
    assert environment_rows(services, ["staging"])[0].drift == ()

    path = Path(nginx.upstream_file)
    text = path.read_text()
    assert "# applied by release-console: stable=1 canary=1 weight=20" in text
    edited = re.sub(r"weight=1;(\s+# canary)", r"weight=4;\1", text)  # 4:1 -> 4:4, 50 %
    assert edited != text
    path.write_text(edited)

    [row] = environment_rows(services, ["staging"])
    assert row.drift == ("canary weight changed outside the console: 50% in the split, the console set 20%",)
    code, out = status_cli(app_dir, capsys, "--check-drift")
    assert code == cli.EXIT_FAILED and "DRIFT canary weight changed outside the console" in out


# --- Kubernetes ------------------------------------------------------------------------------------


@pytest.fixture
def namespace(kube_api: KubeAPI) -> Iterator[str]:
    yield from Cluster(kube_api).temporary_namespace()


def merge_patch(kube_api: KubeAPI, path: str, body: dict[str, Any], manager: str) -> None:
    """A write as `kubectl` makes it: a merge patch under its own field manager."""
    api_client = kube_api.api_client
    response = api_client.call_api(*api_client.param_serialize(
        method="PATCH", resource_path=path, query_params=[("fieldManager", manager)], body=body,
        header_params={"Content-Type": MERGE}, auth_settings=["BearerToken"]))
    response.read()
    assert response.status == 200, response.data[:300]


@pytest.mark.kube
@pytest.mark.parametrize("split", SPLITS)
def test_replicas_and_a_weight_changed_through_the_api_show_as_drift(
        tmp_path: Path, kube_api: KubeAPI, namespace: str, split: str, pg_database: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Each hand change is read by the target, shown in the environments pane's rows and by `status`, and
    fails `status --check-drift`; the console setting them again leaves none."""
    cluster = Cluster(kube_api)
    config = release_config(tmp_path, cluster.url, namespace, split, cluster.ready_timeout_s, kube_api.token,
                            database=pg_database)
    for name, value in {**SECRETS, "TEST_DB": pg_database, "XDG_STATE_HOME": str(tmp_path / "xdg-state")}.items():
        monkeypatch.setenv(name, value)  # what the CLI reads release.toml's ${VAR}s from
    if kube_api.token:
        monkeypatch.setenv("KUBE_TOKEN", kube_api.token)
    services = factory.build(config, state=tmp_path / "state")
    target = services.target("staging")
    recorded = Revision(1, V1, "", "deploy-bot", 0.0)

    def shown() -> tuple[str, ...]:
        """The drift as the pane shows it, after `status --check-drift` was asked for it too."""
        [row] = environment_rows(services, ["staging"])
        code = cli.main(["--config", str(tmp_path / "release.toml"), "status", "--env", "staging", "--check-drift"])
        out = capsys.readouterr().out
        assert code == (cli.EXIT_FAILED if row.drift else cli.EXIT_OK), out
        assert all(line in out for line in row.drift), (out, row.drift)
        return row.drift

    try:
        target.deploy(V1, Lines())
        target.scale(3, Lines())  # the console's own /scale write is its own
        target.start_canary(V2, 10, Lines())
        assert not compare("staging", target.status(), recorded)
        assert shown() == ()

        apps = "/apis/apps/v1/namespaces/" + namespace
        merge_patch(kube_api, f"{apps}/deployments/{N}-stable/scale", {"spec": {"replicas": 5}}, "kubectl")
        status = target.status()
        assert status.desired == 5
        [line] = compare("staging", status, recorded).lines
        assert line.startswith("replicas 5 set by kubectl at ") and line.endswith(", not by the console")
        [row_line] = shown()
        assert row_line.startswith("replicas 5 set by kubectl at ")

        resource, name, obj = cluster.split_object(namespace, split)
        assert obj is not None
        if split == "gateway-api":
            rules = obj["spec"]["rules"]
            for ref in rules[0]["backendRefs"]:
                ref["weight"] = 60 if ref["name"] == f"{N}-canary" else 40
            path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/{resource}/{name}"
            merge_patch(kube_api, path, {"spec": {"rules": rules}}, "kubectl-edit")
        else:
            path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/{resource}/{name}"
            annotations = {"nginx.ingress.kubernetes.io/canary-weight": "60"}
            merge_patch(kube_api, path, {"metadata": {"annotations": annotations}}, "kubectl-edit")
        lines = compare("staging", target.status(), recorded).lines
        assert len(lines) == 2 and lines[1].startswith(f"weight 60% set in {obj['kind']} {name} by kubectl-edit at ")
        assert [line.split(" at ")[0] for line in shown()] == [
            "replicas 5 set by kubectl", f"weight 60% set in {obj['kind']} {name} by kubectl-edit"]
        assert [r for r in services.audit.tail(50) if r["action"] == "drift"], "the drift was not audited"

        target.scale(3, Lines())  # the console sets them again: no drift left
        target.set_weight(10, Lines())
        assert not compare("staging", target.status(), recorded)
        assert shown() == ()
    finally:
        services.close()
