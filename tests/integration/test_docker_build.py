"""DockerBuilder and DockerRegistry against the rig's real dockerd and registry (127.0.0.1:5000).

Faults are real too: a missing socket, a closed port, a tiny HTTP server that answers 401,
and a TCP proxy in front of the registry that cuts every blob upload after a few bytes.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from rig.sample_app import prepare_context

from services.adapters.docker_build import DockerBuilder, DockerRegistry, context_size
from services.core.operations import StepFailed
from services.core.ports import BuildRequest, BuiltImage

API_URL = "http://127.0.0.1:3000/api"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Lines(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


@pytest.fixture(scope="module")
def engine_url() -> str:
    url = os.environ.get("RC_DOCKER_URL")
    if not url:
        pytest.fail("RC_DOCKER_URL is not set; run tests via `bash tests/rig/run`", pytrace=False)
    return url


@pytest.fixture(scope="module")
def cleanup(docker_client: Any, registry: str) -> Iterator[Callable[[str], None]]:
    """Register a tag to remove from dockerd (and from the rig registry, if pushed there)."""
    tags: list[str] = []
    yield tags.append
    for tag in reversed(tags):
        repository, _, ref = tag.rpartition(":")
        if repository.startswith(registry + "/"):
            name = repository[len(registry) + 1 :]
            with contextlib.suppress(httpx.HTTPError):
                head = httpx.head(
                    f"http://{registry}/v2/{name}/manifests/{ref}", headers={"Accept": MANIFEST_TYPES}, timeout=10
                )
                if digest := head.headers.get("Docker-Content-Digest"):
                    httpx.delete(f"http://{registry}/v2/{name}/manifests/{digest}", timeout=10)
        with contextlib.suppress(Exception):
            docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def sample_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_context(tmp_path_factory.mktemp("build-context"))


def sample_request(context: Path, tags: tuple[str, ...]) -> BuildRequest:
    return BuildRequest(str(context), "Dockerfile", "runner", {"NEXT_PUBLIC_API_URL": API_URL}, tags)


@pytest.fixture(scope="module")
def built(
    engine_url: str, registry: str, sample_context: Path, cleanup: Callable[[str], None]
) -> tuple[BuiltImage, list[str]]:
    name = unique("rc-test-build")
    tags = (f"{registry}/{name}:1.0.0", f"{registry}/{name}:latest")
    for tag in tags:
        cleanup(tag)
    lines = Lines()
    image = DockerBuilder(engine_url, 50).build(sample_request(sample_context, tags), lines)
    return image, lines


# -------------------------------------------------------------------- build --


def test_build_streams_the_steps_and_returns_the_image(built: tuple[BuiltImage, list[str]], docker_client: Any) -> None:
    image, lines = built
    steps = [line for line in lines if line.startswith("Step ")]
    assert steps and steps[0].startswith("Step 1/") and " : FROM scratch" in steps[0], lines
    assert image.id.startswith("sha256:") and image.size_bytes > 1_000_000 and image.layers >= 4
    assert lines[-1] == f"image {image.id[7:19]} {image.size_bytes / 1048576:.1f} MB, {image.layers} layers"
    for tag in image.tags:
        assert docker_client.images.get(tag).id == image.id
    env = docker_client.images.get(image.tags[0]).attrs["Config"]["Env"]
    assert "PORT=3000" in env  # the runner stage, not the base one
    assert docker_client.images.get(image.tags[0]).attrs["Config"]["User"] == "app"


def test_a_second_build_hits_the_cache(
    built: tuple[BuiltImage, list[str]], engine_url: str, sample_context: Path
) -> None:
    image, _ = built
    lines = Lines()
    again = DockerBuilder(engine_url, 50).build(sample_request(sample_context, image.tags), lines)
    assert again.id == image.id
    assert sum("Using cache" in line for line in lines) >= 3, lines


def test_build_and_push_over_ssh(
    built: tuple[BuiltImage, list[str]], ssh_docker_url: str, sample_context: Path, registry: str
) -> None:
    """ssh://root@127.0.0.1:2222: the same engine through the rig's sshd and the ssh binary."""
    image, _ = built
    lines = Lines()
    again = DockerBuilder(ssh_docker_url, 50).build(sample_request(sample_context, image.tags), lines)
    assert again.id == image.id and any("Using cache" in line for line in lines)
    digest = DockerRegistry(ssh_docker_url, None, None).push(again, lambda done, total: None, Lines())
    assert digest.startswith("sha256:")
    assert DockerRegistry(ssh_docker_url, None, None).digest(image.tags[0]) == digest


def test_a_missing_dockerfile_is_named(engine_url: str, tmp_path: Path) -> None:
    request = BuildRequest(str(tmp_path), "docker/Dockerfile.prod", "runner", {}, ("rc-test-never:1",))
    with pytest.raises(StepFailed) as failed:
        DockerBuilder(engine_url, 50).build(request, Lines())
    assert str(tmp_path / "docker" / "Dockerfile.prod") in str(failed.value)


def test_a_context_too_large_suggests_a_dockerignore(engine_url: str, tmp_path: Path) -> None:
    context = prepare_context(tmp_path / "ctx")
    (context / "node_modules").mkdir()
    (context / "node_modules" / "big.bin").write_bytes(os.urandom(2 * 1048576))
    lines = Lines()
    with pytest.raises(StepFailed) as failed:
        DockerBuilder(engine_url, 1).build(sample_request(context, ("rc-test-never:1",)), lines)
    message = str(failed.value)
    assert "above the 1 MB limit" in message and "MB or more" in message
    assert "add a .dockerignore (node_modules, .next, .git)" in message
    assert lines == []  # refused before anything was sent


def test_the_context_size_honours_dockerignore(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "big.bin").write_bytes(b"x" * 300_000)
    (tmp_path / "app.js").write_bytes(b"y" * 1000)
    assert context_size(tmp_path, "Dockerfile") > 300_000
    (tmp_path / ".dockerignore").write_text("# deps\nnode_modules\n")
    assert context_size(tmp_path, "Dockerfile") < 2000


def test_an_unreachable_engine_is_named_with_what_to_check(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/no-such-docker.sock"
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    request = BuildRequest(str(tmp_path), "Dockerfile", "", {}, ("rc-test-never:1",))
    with pytest.raises(StepFailed) as failed:
        DockerBuilder(url, 50).build(request, Lines())
    assert url in str(failed.value)
    assert any("dockerd is running" in option for option in failed.value.next_options)
    assert any("DOCKER_HOST" in option for option in failed.value.next_options)
    assert any("ssh" in option for option in failed.value.next_options)


def test_a_failing_build_names_the_step_and_shows_the_last_lines(engine_url: str, tmp_path: Path) -> None:
    context = prepare_context(tmp_path / "ctx")
    (context / "Dockerfile").write_text(
        "FROM scratch AS base\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        'RUN ["/bin/busybox", "echo", "the-line-before-the-failure"]\n'
        'RUN ["/bin/false"]\n'
    )
    lines = Lines()
    request = BuildRequest(str(context), "Dockerfile", "", {}, (unique("rc-test-fail") + ":1",))
    with pytest.raises(StepFailed) as failed:
        DockerBuilder(engine_url, 50).build(request, lines)
    message = str(failed.value)
    assert message.startswith('build failed at Step 5/5: RUN ["/bin/false"]'), message
    assert "returned a non-zero code: 1" in message
    assert "the-line-before-the-failure" in message.split("\n", 1)[1]  # in the tail of last lines
    assert 'Step 5/5 : RUN ["/bin/false"]' in lines


# --------------------------------------------------------------------- push --


def tags_list(registry: str, name: str) -> list[str]:
    response = httpx.get(f"http://{registry}/v2/{name}/tags/list", timeout=10)
    response.raise_for_status()
    return sorted(response.json()["tags"])


def test_push_reports_progress_and_returns_the_digest(
    built: tuple[BuiltImage, list[str]], engine_url: str, registry: str
) -> None:
    image, _ = built
    progress: list[tuple[float, float]] = []
    lines = Lines()
    pushes = DockerRegistry(engine_url, None, None)
    digest = pushes.push(image, lambda done, total: progress.append((done, total)), lines)
    assert digest.startswith("sha256:") and len(digest) == 71
    name = image.tags[0].split("/", 1)[1].rsplit(":", 1)[0]
    assert tags_list(registry, name) == ["1.0.0", "latest"]
    head = httpx.head(
        f"http://{registry}/v2/{name}/manifests/1.0.0", headers={"Accept": MANIFEST_TYPES}, timeout=10
    )
    assert head.headers["Docker-Content-Digest"] == digest
    assert progress and progress[-1][0] == progress[-1][1] > 0
    assert all(done <= total for done, total in progress)
    assert any(line.endswith((" Pushed", " Layer already exists")) for line in lines), lines
    assert pushes.has(image.tags[0]) and pushes.has(f"{registry}/{name}@{digest}")
    assert not pushes.has(f"{registry}/{name}:never-pushed")


def test_push_to_an_unknown_host_names_it(
    built: tuple[BuiltImage, list[str]], docker_client: Any, engine_url: str, cleanup: Callable[[str], None]
) -> None:
    image, _ = built
    tag = f"127.0.0.1:1/{unique('rc-test-nowhere')}:1"
    cleanup(tag)
    docker_client.images.get(image.id).tag(tag)
    with pytest.raises(StepFailed) as failed:
        DockerRegistry(engine_url, None, None).push(BuiltImage(image.id, 0, 1, (tag,)), lambda d, t: None, Lines())
    assert str(failed.value).startswith("cannot reach the registry 127.0.0.1:1:"), failed.value


class Refuses(http.server.BaseHTTPRequestHandler):
    """A registry that wants credentials it never accepts."""

    def _refuse(self) -> None:
        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="rc-test"')
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _refuse

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_an_auth_refusal_says_so_without_the_password(
    built: tuple[BuiltImage, list[str]], docker_client: Any, engine_url: str, cleanup: Callable[[str], None]
) -> None:
    image, _ = built
    password = "rc-" + uuid.uuid4().hex  # noqa: S105 - a throwaway
    with serving(Refuses) as port:
        tag = f"127.0.0.1:{port}/{unique('rc-test-auth')}:1"
        cleanup(tag)
        docker_client.images.get(image.id).tag(tag)
        lines = Lines()
        with pytest.raises(StepFailed) as failed:
            DockerRegistry(engine_url, "ci", SecretStr(password)).push(
                BuiltImage(image.id, 0, 1, (tag,)), lambda d, t: None, lines
            )
    message = str(failed.value)
    assert "the registry refused the push: authentication; check registry_username/password (docker login)" in message
    assert password not in message and all(password not in line for line in lines)
    assert not any(password in option for option in failed.value.next_options)


class CuttingProxy:
    """TCP proxy to the registry that closes a connection once it has carried `limit` bytes upstream."""

    def __init__(self, upstream: tuple[str, int], limit: int) -> None:
        self.upstream = upstream
        self.limit = limit
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        carried = 0
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                carried += len(data) if counted else 0
                if carried > self.limit:
                    self.cuts += 1
                    break
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


@pytest.mark.timeout(240)
def test_an_interrupted_push_says_nothing_is_released(
    engine_url: str, registry: str, tmp_path: Path, cleanup: Callable[[str], None]
) -> None:
    # A layer of fresh random bytes, so the registry behind the proxy cannot already have it.
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY payload.bin /payload.bin\n")
    (tmp_path / "payload.bin").write_bytes(os.urandom(3 * 1048576))
    host, port = registry.split(":")
    proxy = CuttingProxy((host, int(port)), limit=256 * 1024)
    try:
        tag = f"127.0.0.1:{proxy.port}/{unique('rc-test-cut')}:1"
        cleanup(tag)
        image = DockerBuilder(engine_url, 50).build(BuildRequest(str(tmp_path), "Dockerfile", "", {}, (tag,)), Lines())
        lines = Lines()
        with pytest.raises(StepFailed) as failed:
            DockerRegistry(engine_url, None, None).push(image, lambda d, t: None, lines)
    finally:
        proxy.close()
    message = str(failed.value)
    assert message.startswith("push interrupted after 0 of 1 layers; nothing is tagged as released; retry the push")
    assert proxy.cuts >= 1
    name = tag.split("/", 1)[1].rsplit(":", 1)[0]
    assert httpx.get(f"http://{registry}/v2/{name}/tags/list", timeout=10).status_code == 404


class EngineProxy:
    """tcp://127.0.0.1:PORT to dockerd's unix socket; drops the connection once a push starts uploading."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.dropped = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX)
            engine.connect(self.socket_path)
            pushing = threading.Event()
            threading.Thread(target=self._up, args=(client, engine, pushing), daemon=True).start()
            threading.Thread(target=self._down, args=(engine, client, pushing), daemon=True).start()

    def _up(self, client: socket.socket, engine: socket.socket, pushing: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if b"/push" in data:
                    pushing.set()
                engine.sendall(data)

    def _down(self, engine: socket.socket, client: socket.socket, pushing: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := engine.recv(65536):
                at = data.find(b"Pushing") if pushing.is_set() else -1
                if at >= 0:
                    client.sendall(data[:at])
                    self.dropped = True
                    break
                client.sendall(data)
        for sock in (engine, client):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_a_push_stream_that_breaks_says_nothing_is_released(
    engine_url: str, registry: str, tmp_path: Path, cleanup: Callable[[str], None]
) -> None:
    if not engine_url.startswith("unix://"):
        pytest.skip("the engine proxy speaks to a unix socket")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY payload.bin /payload.bin\n")
    (tmp_path / "payload.bin").write_bytes(os.urandom(3 * 1048576))
    tag = f"{registry}/{unique('rc-test-drop')}:1"
    cleanup(tag)
    image = DockerBuilder(engine_url, 50).build(BuildRequest(str(tmp_path), "Dockerfile", "", {}, (tag,)), Lines())
    proxy = EngineProxy(engine_url.removeprefix("unix://"))
    try:
        with pytest.raises(StepFailed) as failed:
            DockerRegistry(f"tcp://127.0.0.1:{proxy.port}", None, None).push(image, lambda d, t: None, Lines())
    finally:
        proxy.close()
    assert proxy.dropped
    assert str(failed.value).startswith(
        "push interrupted after 0 of 1 layers; nothing is tagged as released; retry the push"
    ), failed.value
