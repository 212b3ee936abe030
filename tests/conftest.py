"""Fixtures for the test rig's real services.

Run the tests with the README's command, which installs and starts the
services and exports their connection info (see tests/rig/run):

    bash tests/rig/run [PYTEST ARGS...]

Environment (written to $RC_RIG_DIR/rig.env by the rig):

    RC_RIG_DIR           rig directory; its *.log files are shown on failures
    RC_DOCKER_URL        dockerd, e.g. unix:///var/run/docker.sock
    RC_REGISTRY          registry host:port, 127.0.0.1:5000
    RC_PG_DSN            postgresql://USER:PASSWORD@127.0.0.1:PORT/postgres (superuser)
    RC_PROM_URL          Prometheus, http://127.0.0.1:PORT (scrapes every 1 s)
    RC_PROM_TARGETS_DIR  drop file_sd JSON files (*.json) here for Prometheus
    RC_REDIS_URL         redis://:PASSWORD@127.0.0.1:PORT/0 (Debian redis-server)

Session fixtures for those services (``docker_client``, ``registry``,
``pg_dsn``, ``prometheus_url``, ``prom_targets_dir``) FAIL, never skip, when
their service is missing. In-process services, per test module: ``s3_endpoint``
/ ``s3_client`` (moto server over HTTP) and ``kube_api`` (the Kubernetes API
emulator of tests/rig/kube_emulator/, over HTTP, for the real client).

Real Kubernetes (opt-in): with ``RC_REAL_KUBE=1``, ``kube_api`` uses
``kubernetes.config.load_kube_config()`` (``KUBECONFIG`` or ~/.kube/config)
instead of the emulator. The behavioural tests are marked ``kube`` and use only
``kube_api``; ``kube_emulator`` is always the emulator (request log, faults).
See the README for running them on kind or k3d:

    RC_REAL_KUBE=1 KUBECONFIG=~/.kube/kind bash tests/rig/run -m kube

Each test gets a default ``timeout`` marker of RC_TEST_TIMEOUT seconds (300)
unless it has its own (pytest-timeout).
"""

from __future__ import annotations

import os
import sys
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # makes `rig` importable whatever the rootdir
    sys.path.insert(0, str(TESTS_DIR))

from rig.helpers import (  # noqa: E402 - needs the sys.path entry above
    KubeAPI,
    SampleApp,
    free_port,
    tail,
    unique_bucket_name,
    unique_name,
    wait_until,
)
from rig.kube_emulator import KubeEmulator  # noqa: E402
from rig.s3 import moto_s3  # noqa: E402
from rig.sample_app import build_derived, prepare_context  # noqa: E402

RUN_HINT = "run tests via `bash tests/rig/run`"
LOG_TAIL_LINES = 30


# ------------------------------------------------------------------ config --


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    default_timeout = float(os.environ.get("RC_TEST_TIMEOUT", "300"))
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(default_timeout))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On failure, append the tail of every rig service log to the report."""
    report = yield
    rig_dir = os.environ.get("RC_RIG_DIR")
    if report.failed and rig_dir:
        for log in sorted(Path(rig_dir).glob("*.log")):
            try:
                text = tail(log, LOG_TAIL_LINES)
            except OSError as exc:
                text = f"(cannot read: {exc})"
            report.sections.append((f"rig log {log.name} (last {LOG_TAIL_LINES} lines)", text))
    return report


# ------------------------------------------------------------------ helpers --


def rig_fail(service: str, problem: str) -> None:
    pytest.fail(f"{service} is not available: {problem}; {RUN_HINT}", pytrace=False)


def require_env(name: str, service: str) -> str:
    value = os.environ.get(name)
    if not value:
        rig_fail(service, f"environment variable {name} is not set")
    return value  # type: ignore[return-value]


@pytest.fixture(scope="session")
def rig_dir() -> Path:
    path = Path(require_env("RC_RIG_DIR", "the test rig"))
    if not path.is_dir():
        rig_fail("the test rig", f"RC_RIG_DIR={path} is not a directory")
    return path


# ------------------------------------------------------------------- docker --


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    import docker

    url = require_env("RC_DOCKER_URL", "Docker")
    try:
        client = docker.DockerClient(base_url=url, timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable dockerd
        rig_fail("Docker", f"cannot reach dockerd at RC_DOCKER_URL={url} ({exc})")
    yield client
    client.close()


@pytest.fixture
def docker_cli() -> list[str]:
    """The docker CLI on the rig's dockerd, as an argument list: an environment's service commands."""
    return ["docker", "-H", require_env("RC_DOCKER_URL", "Docker")]


@pytest.fixture(scope="session")
def sample_app_tag() -> str:
    """The tag this session gives the sample app image. Use it, never `sample_app_image.tags[0]`:
    the image's id is shared by every concurrent session (xdist workers, other rig runs) that built
    the same context, so its tags are theirs too, in no set order."""
    return f"rc-sample-app:test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def sample_app_image(docker_client: Any, tmp_path_factory: pytest.TempPathFactory, sample_app_tag: str
                     ) -> Iterator[Any]:
    """The sample app image (tests/fixtures/sample-app), built once per session, removed after."""
    context = prepare_context(tmp_path_factory.mktemp("sample-app-context"))
    tag = sample_app_tag
    image, _ = docker_client.images.build(
        path=str(context),
        tag=tag,
        network_mode="host",
        rm=True,
        forcerm=True,
        buildargs={"NEXT_PUBLIC_API_URL": "http://127.0.0.1:3000/api"},
    )
    yield image
    try:
        docker_client.images.remove(tag, force=True, noprune=True)  # parents may serve a concurrent build
    except Exception:  # noqa: BLE001, S110 - already gone is fine
        pass


@pytest.fixture
def run_sample_app(docker_client: Any, sample_app_image: Any) -> Iterator[Callable[..., SampleApp]]:
    """Factory: run the sample app (host network, free port) until it is healthy.

    ``run_sample_app(ERROR_RATE="0.1", LATENCY_MS="50", VERSION="1.2.3")``; the
    containers are removed after the test.
    """
    import httpx

    started: list[Any] = []

    def run(**env: str) -> SampleApp:
        port = free_port()
        environment = {"PORT": str(port), **{k: str(v) for k, v in env.items()}}
        container = docker_client.containers.run(
            sample_app_image.id,
            detach=True,
            network_mode="host",
            environment=environment,
            name=unique_name("rc-test-sample-app"),
            labels={"release-console.test": "sample-app"},
        )
        started.append(container)
        app = SampleApp(container, port, environment)

        def healthy() -> bool:
            container.reload()
            if container.status not in ("created", "running"):
                raise RuntimeError(f"container {container.status}: {container.logs().decode()[-2000:]}")
            return httpx.get(f"{app.url}/api/health", timeout=2).status_code == 200

        wait_until(healthy, timeout=30, what=f"sample app on port {port} answering /api/health")
        return app

    yield run
    for container in started:
        try:
            container.remove(force=True)
        except Exception:  # noqa: BLE001, S110 - already gone is fine
            pass


# ----------------------------------------------------------------- registry --


@pytest.fixture(scope="session")
def registry() -> str:
    """The registry's host:port (127.0.0.1:5000)."""
    import httpx

    addr = require_env("RC_REGISTRY", "the Docker registry")
    try:
        httpx.get(f"http://{addr}/v2/", timeout=5).raise_for_status()
    except Exception as exc:  # noqa: BLE001
        rig_fail("the Docker registry", f"http://{addr}/v2/ does not answer ({exc})")
    return addr


# --------------------------------------------------------------- postgresql --


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """Superuser DSN of the rig's PostgreSQL 15 (database "postgres")."""
    import psycopg

    dsn = require_env("RC_PG_DSN", "PostgreSQL")
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001
        rig_fail("PostgreSQL", f"cannot connect with RC_PG_DSN ({exc})")
    return dsn


@pytest.fixture
def pg_database(pg_dsn: str) -> Iterator[str]:
    """A fresh, uniquely named database, dropped afterwards; yields its DSN."""
    import psycopg
    from psycopg import sql

    name = unique_name("rc_test", 12).replace("-", "_")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield urllib.parse.urlsplit(pg_dsn)._replace(path=f"/{name}").geturl()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def pitr_cluster(rig_dir: Path) -> Iterator[Any]:
    """A private PostgreSQL 15 cluster of this module, archiving through pgBackRest to a posix repo of its
    own (rig.pitr_cluster.PitrCluster): own port, stanza and directory; stopped and removed after."""
    from rig.pitr_cluster import PitrCluster

    try:
        cluster = PitrCluster(rig_dir)
    except (RuntimeError, OSError) as err:
        rig_fail("the PITR cluster (PostgreSQL 15 + pgBackRest)", str(err))
    yield cluster
    cluster.remove()


# -------------------------------------------------------------------- redis --


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The rig's Redis (with a password): shared by the session, so never stopped or reconfigured."""
    return require_env("RC_REDIS_URL", "Redis")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Any]:
    """A redis-server of the test's own (rig.redis_server.PrivateRedis), to reconfigure or stop."""
    from rig.redis_server import PrivateRedis

    server = PrivateRedis(tmp_path / "redis")
    yield server
    server.stop()


# --------------------------------------------------------------- prometheus --


@pytest.fixture(scope="session")
def prometheus_url() -> str:
    import httpx

    url = require_env("RC_PROM_URL", "Prometheus").rstrip("/")
    try:
        httpx.get(f"{url}/-/ready", timeout=5).raise_for_status()
    except Exception as exc:  # noqa: BLE001
        rig_fail("Prometheus", f"{url}/-/ready does not answer ({exc})")
    return url


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """A private Prometheus (rig.prometheus), its own file_sd targets in ``prometheus.targets``: for the
    tests that stop it, or scrape containers the shared one must not see."""
    import shutil

    from rig.prometheus import Prometheus

    if shutil.which("prometheus") is None:
        pytest.fail("the prometheus binary is missing: run the tests through tests/rig/run", pytrace=False)
    server = Prometheus(tmp_path / "prometheus")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prom_targets_dir() -> Path:
    """Directory whose *.json files are Prometheus file_sd target groups."""
    path = Path(require_env("RC_PROM_TARGETS_DIR", "Prometheus file_sd"))
    if not path.is_dir():
        rig_fail("Prometheus file_sd", f"RC_PROM_TARGETS_DIR={path} is not a directory")
    return path


# ----------------------------------------------------------------------- s3 --


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 over real HTTP on 127.0.0.1; restarted and reset per module (its memory grows)."""
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def s3_client(s3_endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket_name(s3_client: Any) -> Iterator[str]:
    """A unique valid bucket name; the bucket (and its objects) is deleted afterwards if created."""
    name = unique_bucket_name()
    yield name
    try:
        paginator = s3_client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=name):
            for obj in page.get("Versions", []) + page.get("DeleteMarkers", []):
                s3_client.delete_object(Bucket=name, Key=obj["Key"], VersionId=obj["VersionId"])
        s3_client.delete_bucket(Bucket=name)
    except s3_client.exceptions.NoSuchBucket:
        pass


# --------------------------------------------------------------- kubernetes --


@pytest.fixture(scope="module")
def kube_api() -> Iterator[KubeAPI]:
    """The Kubernetes API the behavioural tests (marked ``kube``) run against: the emulator, or with
    RC_REAL_KUBE=1 the cluster of the current kubeconfig (``emulator`` and ``token`` None).

    ``kubernetes.client.AppsV1Api(kube_api.api_client)``. Read it through the API (rig.kube_cluster),
    never through the emulator's store, so the test holds on a real cluster too.
    """
    from kubernetes import client, config

    if os.environ.get("RC_REAL_KUBE") != "1":
        yield from emulated_kube_api()
        return
    try:
        config.load_kube_config()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"RC_REAL_KUBE=1 but no usable kubeconfig ({exc})", pytrace=False)
    api_client = client.ApiClient()
    yield KubeAPI(api_client.configuration.host, api_client, None)
    api_client.close()


@pytest.fixture(scope="module")
def kube_emulator() -> Iterator[KubeAPI]:
    """Always the emulator, fresh per module, whatever RC_REAL_KUBE says: for tests that read its request
    log or inject faults (``kube_emulator.emulator``). It wants the bearer ``kube_emulator.token``."""
    yield from emulated_kube_api()


def emulated_kube_api() -> Iterator[KubeAPI]:
    from kubernetes import client

    rig_dir = os.environ.get("RC_RIG_DIR")
    log_path = Path(rig_dir) / "kube-emulator.log" if rig_dir and Path(rig_dir).is_dir() else None
    token = f"rc-test-{uuid.uuid4().hex}"
    emulator = KubeEmulator(log_path=log_path, token=token).start()
    configuration = client.Configuration(host=emulator.url)
    configuration.api_key, configuration.api_key_prefix = {"BearerToken": token}, {"BearerToken": "Bearer"}
    api_client = client.ApiClient(configuration)
    try:
        yield KubeAPI(emulator.url, api_client, emulator, token)
    finally:
        api_client.close()
        emulator.stop()


# -------------------------------------------------------------------- nginx --


class Nginx:
    """A private Debian nginx (see the `nginx` fixture): one server on 127.0.0.1:port proxying to
    `upstream`, whose block lives in `upstream_file` (included by the config)."""

    def __init__(self, prefix: Path, port: int, upstream: str = "food_management") -> None:
        self.prefix = prefix
        self.port = port
        self.upstream = upstream
        self.conf = prefix / "nginx.conf"
        self.upstream_file = prefix / "upstream.conf"
        self.error_log = prefix / "error.log"
        self.base = ["nginx", "-p", str(prefix), "-c", str(self.conf), "-e", str(self.error_log)]
        self.reload = [*self.base, "-s", "reload"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        p = self.prefix
        for name in ("client", "proxy", "fastcgi", "uwsgi", "scgi"):
            (p / "tmp" / name).mkdir(parents=True, exist_ok=True)
        # No server that answers until the first deploy writes the file.
        self.upstream_file.write_text(f"upstream {self.upstream} {{\n    server 127.0.0.1:1 down;\n}}\n")
        self.conf.write_text(f"""
user root;
worker_processes 2;
pid {p}/nginx.pid;
error_log {self.error_log} notice;
events {{ worker_connections 1024; }}
http {{
    access_log {p}/access.log;
    client_body_temp_path {p}/tmp/client;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    include {self.upstream_file};
    server {{
        listen 127.0.0.1:{self.port};
        location / {{ proxy_pass http://{self.upstream}; }}
    }}
}}
""")


@pytest.fixture
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """Debian's nginx with its own prefix and config on a free 127.0.0.1 port; stopped afterwards.

    ``nginx.upstream_file`` is the file a Docker host target writes; ``nginx.reload`` the
    argument list that reloads it (``nginx -p PREFIX -c CONF -e LOG -s reload``).
    """
    yield from running_nginx(tmp_path_factory)


@pytest.fixture(scope="module")
def module_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """The `nginx` fixture's nginx, for a whole module (one app's containers serve its tests)."""
    yield from running_nginx(tmp_path_factory)


def running_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    import shutil
    import subprocess

    if shutil.which("nginx") is None:
        rig_fail("nginx", "the nginx binary is not installed (apt-get install nginx)")
    server = Nginx(tmp_path_factory.mktemp("nginx"), free_port())
    server.write_config()
    started = subprocess.run(server.base, capture_output=True, text=True, timeout=30, check=False)
    if started.returncode != 0:
        rig_fail("nginx", f"it did not start: {started.stderr.strip()}")
    pid_file = server.prefix / "nginx.pid"
    wait_until(pid_file.exists, timeout=10, what="nginx's pid file")
    pid = int(pid_file.read_text())
    yield server
    subprocess.run([*server.base, "-s", "stop"], capture_output=True, timeout=30, check=False)

    def stopped() -> bool:  # gone, or a zombie nobody reaps (nginx's master is re-parented)
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    try:
        wait_until(stopped, timeout=10, interval=0.02, what="nginx to stop")
    except TimeoutError:
        os.kill(pid, 9)


# ------------------------------------------------------------- ssh docker --


@pytest.fixture(scope="session")
def ssh_docker_url() -> str:
    """ssh://root@127.0.0.1:2222, the rig's sshd in front of the rig's own dockerd (RC_SSH_DOCKER_URL)."""
    import subprocess

    url = require_env("RC_SSH_DOCKER_URL", "the rig's sshd")
    parts = urllib.parse.urlsplit(url)
    argv = ["ssh", "-o", "BatchMode=yes", "-p", str(parts.port or 22), f"{parts.username}@{parts.hostname}",
            "docker", "version", "--format", "{{.Server.Version}}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        rig_fail("the rig's sshd", f"{' '.join(argv)} failed ({exc})")
    if done.returncode != 0:
        rig_fail("the rig's sshd", f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return url


# ------------------------------------------------------- app in the registry --

APP_VERSIONS = ("1.0.0", "2.0.0", "3.0.0")
# Releases that are bad in one way only (the environment's own env vars do not replace these).
RELEASE_KNOBS = {"slow": "ADDED_LATENCY_MS=250", "hot": "CPU_PERCENT=95", "hungry": "MEMORY_PERCENT=95"}


@pytest.fixture(scope="module")
def repository(docker_client: Any, sample_app_image: Any, registry: str) -> Iterator[str]:
    """REPO with tags 1.0.0, 2.0.0, 3.0.0 (the sample app: VERSION comes from the tag), `broken`
    (never healthy: no server), `nocheck` (no HEALTHCHECK), `bad` (5 % of requests fail), `slow`
    (250 ms more per request, no errors), `hot` (95 % CPU) and `hungry` (95 % of its memory) in the
    registry; none of them local."""
    repo = f"{registry}/rc-target-{uuid.uuid4().hex[:8]}"
    build_derived(docker_client, sample_app_image.id, f"{repo}:broken", 'CMD ["/bin/sleep", "3600"]')
    build_derived(docker_client, sample_app_image.id, f"{repo}:nocheck", "HEALTHCHECK NONE")
    build_derived(docker_client, sample_app_image.id, f"{repo}:bad", "ENV ERROR_RATE=0.05")  # a release with 5 % errors
    for tag, knob in RELEASE_KNOBS.items():
        build_derived(docker_client, sample_app_image.id, f"{repo}:{tag}", f"ENV {knob}")
    for tag in APP_VERSIONS:
        sample_app_image.tag(repo, tag)
    for tag in (*APP_VERSIONS, "broken", "nocheck", "bad", *RELEASE_KNOBS):
        for line in docker_client.images.push(repo, tag, stream=True, decode=True):
            assert "error" not in line, line
        docker_client.images.remove(f"{repo}:{tag}")  # the target pulls them
    yield repo
