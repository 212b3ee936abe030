"""Smoke tests: each rig service is up and usable from Python."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from rig.helpers import KubeAPI, unique_name, wait_until, write_prom_targets

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def metric_value(text: str, series: str) -> float:
    """Value of one exact series (name plus labels) in Prometheus text format."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    raise AssertionError(f"{series} not in metrics:\n{text}")


# ------------------------------------------------------------------- docker --


def test_docker_builds_and_runs_the_sample_app(docker_client: Any, sample_app_image: Any, run_sample_app: Any) -> None:
    config = sample_app_image.attrs["Config"]
    assert config["User"] not in ("", "root", "0", "0:0")
    assert config["Healthcheck"]["Test"][0] in ("CMD", "CMD-SHELL")
    assert "3000/tcp" in config["ExposedPorts"]
    assert {"PORT=3000", "ERROR_RATE=0", "LATENCY_MS=20", "VERSION=dev"} <= set(config["Env"])

    app = run_sample_app(ERROR_RATE="0.5", LATENCY_MS="30", VERSION="smoke-1")
    health = httpx.get(f"{app.url}/api/health", timeout=5)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "version": "smoke-1"}

    config_json = httpx.get(f"{app.url}/config.json", timeout=5).json()
    assert config_json == {"NEXT_PUBLIC_API_URL": "http://127.0.0.1:3000/api"}

    codes = {httpx.get(f"{app.url}/", timeout=5).status_code for _ in range(20)}
    assert codes <= {200, 500} and codes, codes  # ERROR_RATE=0.5: both are likely

    def synthetic_traffic() -> str | None:  # 10 requests per second of uptime: a few seconds' worth
        text = httpx.get(f"{app.url}/metrics", timeout=5).text
        total = sum(metric_value(text, f'http_requests_total{{status="{code}"}}') for code in (200, 500))
        return text if total >= 40 else None

    metrics = wait_until(synthetic_traffic, timeout=30, what="40 requests counted in /metrics")
    ok = metric_value(metrics, 'http_requests_total{status="200"}')
    failed = metric_value(metrics, 'http_requests_total{status="500"}')
    assert ok > 0 and failed > 0
    assert 0.3 < failed / (ok + failed) < 0.7
    count = metric_value(metrics, "http_request_duration_seconds_count")
    assert count == ok + failed
    assert metric_value(metrics, 'http_request_duration_seconds_bucket{le="0.025"}') == 0
    assert metric_value(metrics, 'http_request_duration_seconds_bucket{le="0.05"}') == count

    app.container.reload()
    assert app.container.attrs["Config"]["User"] == "app"
    assert app.container.attrs["HostConfig"]["NetworkMode"] == "host"

    def healthy() -> bool:
        app.container.reload()
        return app.container.attrs["State"]["Health"]["Status"] == "healthy"

    wait_until(healthy, timeout=30, what="Docker HEALTHCHECK reporting healthy")


# ----------------------------------------------------------------- registry --


def test_registry_push_and_read_back(docker_client: Any, registry: str, sample_app_image: Any) -> None:
    name = f"rc-smoke/sample-app-{uuid.uuid4().hex[:8]}"
    repo, tag = f"{registry}/{name}", "v1"
    assert sample_app_image.tag(repo, tag)
    try:
        errors = [
            line["error"]
            for line in docker_client.images.push(repo, tag=tag, stream=True, decode=True)
            if "error" in line
        ]
        assert not errors

        tags = httpx.get(f"http://{registry}/v2/{name}/tags/list", timeout=10)
        assert tags.status_code == 200
        assert tags.json() == {"name": name, "tags": [tag]}

        manifest = httpx.get(
            f"http://{registry}/v2/{name}/manifests/{tag}",
            headers={"Accept": MANIFEST_V2},
            timeout=10,
        )
        assert manifest.status_code == 200
        digest = manifest.headers["Docker-Content-Digest"]
        assert manifest.json()["config"]["digest"] == sample_app_image.id
        # Clean the registry up again (storage.delete is enabled by the rig).
        assert httpx.delete(f"http://{registry}/v2/{name}/manifests/{digest}", timeout=10).status_code == 202
    finally:
        docker_client.images.remove(f"{repo}:{tag}")


# --------------------------------------------------------------- postgresql --


def test_postgres_fresh_database(pg_database: str) -> None:
    dbname = pg_database.rsplit("/", 1)[1]
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("15")
        assert conn.execute("SELECT current_database()").fetchone()[0] == dbname
        conn.execute("CREATE TABLE releases (id serial PRIMARY KEY, version text NOT NULL)")
        conn.cursor().executemany("INSERT INTO releases (version) VALUES (%s)", [("1.0",), ("1.1",), ("1.2",)])
        assert conn.execute("SELECT count(*) FROM releases").fetchone()[0] == 3


# --------------------------------------------------------------- prometheus --


def prom_query(prometheus_url: str, query: str) -> list[dict]:
    resp = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
    resp.raise_for_status()
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_a_file_sd_target(prometheus_url: str, prom_targets_dir: Path, run_sample_app: Any) -> None:
    assert prom_query(prometheus_url, 'up{job="prometheus"}')[0]["value"][1] == "1"

    app = run_sample_app(ERROR_RATE="0.2", VERSION="smoke-prom")
    job = unique_name("smoke")
    targets = write_prom_targets(prom_targets_dir, job, [app.target], {"job": job})
    try:
        up = wait_until(
            lambda: [r for r in prom_query(prometheus_url, f'up{{job="{job}"}}') if r["value"][1] == "1"],
            timeout=20,
            what=f'up{{job="{job}"}} == 1',
        )
        assert up[0]["metric"]["instance"] == app.target
        series = prom_query(prometheus_url, f'http_requests_total{{job="{job}"}}')
        assert {s["metric"]["status"] for s in series} == {"200", "500"}
        version = prom_query(prometheus_url, f'app_build_info{{job="{job}"}}')
        assert version[0]["metric"]["version"] == "smoke-prom"
    finally:
        targets.unlink()


# ----------------------------------------------------------------------- s3 --


def test_s3_bucket_put_get(s3_client: Any, bucket_name: str) -> None:
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", bucket_name)
    s3_client.create_bucket(Bucket=bucket_name)
    s3_client.put_object(Bucket=bucket_name, Key="backups/db.sql", Body=b"SELECT 1;\n")
    body = s3_client.get_object(Bucket=bucket_name, Key="backups/db.sql")["Body"].read()
    assert body == b"SELECT 1;\n"
    listing = s3_client.list_objects_v2(Bucket=bucket_name, Prefix="backups/")
    assert [o["Key"] for o in listing["Contents"]] == ["backups/db.sql"]
    assert bucket_name in {b["Name"] for b in s3_client.list_buckets()["Buckets"]}


# --------------------------------------------------------------- kubernetes --


def test_kubernetes_deployment_scale_and_lease(kube_api: KubeAPI) -> None:
    core = client.CoreV1Api(kube_api.api_client)
    apps = client.AppsV1Api(kube_api.api_client)
    coord = client.CoordinationV1Api(kube_api.api_client)
    ns = unique_name("rc-smoke")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        labels = {"app": "web", "track": "stable"}

        def deployment() -> client.V1Deployment:
            return client.V1Deployment(
                metadata=client.V1ObjectMeta(name="web", labels=labels),
                spec=client.V1DeploymentSpec(
                    replicas=1,
                    selector=client.V1LabelSelector(match_labels=labels),
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels=labels),
                        spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="sample-app:1")]),
                    ),
                ),
            )

        apps.create_namespaced_deployment(ns, deployment())
        dep = apps.read_namespaced_deployment("web", ns)
        assert dep.metadata.namespace == ns and dep.metadata.uid
        assert dep.spec.template.spec.containers[0].image == "sample-app:1"
        rv = dep.metadata.resource_version

        scale = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
        assert scale.spec.replicas == 3
        dep = apps.read_namespaced_deployment("web", ns)
        assert dep.spec.replicas == 3 and dep.metadata.resource_version != rv

        with pytest.raises(ApiException) as exc:
            apps.create_namespaced_deployment(ns, deployment())
        assert exc.value.status == 409

        found = apps.list_namespaced_deployment(ns, label_selector="app=web,track=stable").items
        assert [d.metadata.name for d in found] == ["web"]
        assert apps.list_namespaced_deployment(ns, label_selector="track=canary").items == []

        coord.create_namespaced_lease(
            ns,
            client.V1Lease(
                metadata=client.V1ObjectMeta(name="release-lock"),
                spec=client.V1LeaseSpec(holder_identity="console-1", lease_duration_seconds=30),
            ),
        )
        lease = coord.read_namespaced_lease("release-lock", ns)
        assert lease.spec.holder_identity == "console-1"
        lease.spec.holder_identity = "console-2"
        coord.replace_namespaced_lease("release-lock", ns, lease)
        with pytest.raises(ApiException) as exc:  # stale resourceVersion
            coord.replace_namespaced_lease("release-lock", ns, lease)
        assert exc.value.status == 409
        assert coord.read_namespaced_lease("release-lock", ns).spec.holder_identity == "console-2"
    finally:
        core.delete_namespace(ns)
    if kube_api.emulator is not None:  # namespaces terminate for a while; a real cluster's may take minutes
        def gone() -> bool:
            try:
                apps.read_namespaced_deployment("web", ns)
            except ApiException as exc:
                return exc.status == 404
            return False
        wait_until(gone, timeout=10, interval=0.05, what=f"namespace {ns} emptied")
