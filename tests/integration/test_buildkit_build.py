"""The BuildKit builder against the rig's real dockerd, registry and sshd, through the docker CLI
that the rig installs (Debian's docker.io 20.10, BuildKit built in): the sample app's
Dockerfile.buildkit with a cache mount and a secret mount, locally and over ssh://, pushed to the
rig registry; the secret in neither the history nor the config; and the classic fallback's notice."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from rig.sample_app import prepare_context

from services.adapters.buildkit import BuildKitBuilder, builder_for, find_cli
from services.adapters.docker_build import DockerBuilder, DockerRegistry
from services.core.config import BuildConfig
from services.core.ports import BuildRequest
from services.release.image_policy import check_image
from services.release.pipeline import oci_labels

TOKEN = "npm_rc-" + uuid.uuid4().hex  # noqa: S105 - a throwaway registry token
LABELS = oci_labels("https://github.com/example/app", "a" * 40, "1.2.3")


class Lines(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def request(context: Path, tag: str) -> BuildRequest:
    return BuildRequest(str(context), "Dockerfile.buildkit", "runner", {"NEXT_PUBLIC_API_URL": "http://x/api"},
                        (tag,), LABELS)


def buildkit(engine_url: str) -> BuildKitBuilder:
    builder = builder_for(BuildConfig(engine_url=engine_url, secrets={"npm": SecretStr(TOKEN)}))
    assert isinstance(builder, BuildKitBuilder), "the rig's docker.io 20.10 CLI should build with BuildKit"
    return builder


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_context(tmp_path_factory.mktemp("buildkit-context"))


@pytest.fixture
def tag(registry: str, docker_client: Any) -> Any:
    made = f"{registry}/rc-test-buildkit-{uuid.uuid4().hex[:10]}:1.2.3"
    yield made
    docker_client.images.remove(made, force=True)


def test_the_rig_cli_is_chosen_by_asking_it() -> None:
    cli, why = find_cli("docker")
    assert cli is not None, why
    assert cli.builtin_buildkit and not cli.buildx and cli.major == 20


def test_a_buildkit_build_with_cache_and_secret_mounts_streams_and_pushes(
        context: Path, tag: str, docker_client: Any) -> None:
    engine = "unix:///var/run/docker.sock"
    lines = Lines()
    image = buildkit(engine).build(request(context, tag), lines)
    assert lines[0].startswith("BuildKit: ") and "built-in BuildKit" in lines[0]
    install = next(line for line in lines if "RUN --mount=type=secret,id=npm" in line)
    number = install.split()[0]
    # Ran (its own output, timed) or came from an earlier run's layer cache on this shared engine.
    ran = any(line.startswith(f"{number} app-install: 8 packages") for line in lines)
    timed = any(line.startswith(f"{number} DONE ") for line in lines)
    assert (ran and timed) or f"{number} CACHED" in lines, lines
    assert "steps," in lines[-2] and lines[-1].startswith(f"image {image.id[7:19]}")
    attrs = docker_client.images.get(tag).attrs
    assert {k: attrs["Config"]["Labels"][k] for k in LABELS} == LABELS
    # A rebuild: every instruction comes from the cache, so the same layers. (The image id may
    # differ: the inline cache metadata in its config records what the build imported.)
    again = Lines()
    rebuilt = buildkit(engine).build(request(context, tag), again)
    assert f"{number} CACHED" in again, again
    assert docker_client.images.get(rebuilt.id).attrs["RootFS"]["Layers"] == attrs["RootFS"]["Layers"]
    digest = DockerRegistry(engine, None, None).push(image, lambda done, total: None, Lines())
    assert digest.startswith("sha256:")


def test_the_secret_is_in_neither_the_history_nor_the_config(context: Path, tag: str) -> None:
    builder = buildkit("unix:///var/run/docker.sock")
    lines = Lines()
    image = builder.build(request(context, tag), lines)
    assert all(TOKEN not in line for line in lines)
    inspected = builder.inspect(image.id)
    results = {r.name: r for r in check_image(inspected, inspected["History"], False, {}, None)}
    no_secrets = next(r for name, r in results.items() if "secret" in name)
    assert no_secrets.passed, no_secrets
    assert TOKEN not in json.dumps(inspected)
    for argv in (["/usr/bin/docker", "history", "--no-trunc", tag], ["/usr/bin/docker", "image", "inspect", tag]):
        shown = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
        assert TOKEN not in shown and (image.id in shown or "--mount=type=secret,id=npm" in shown)


def test_a_buildkit_build_over_ssh_pushes(context: Path, tag: str, ssh_docker_url: str) -> None:
    lines = Lines()
    image = buildkit(ssh_docker_url).build(request(context, tag), lines)
    assert any("[runner 4/4]" in line for line in lines), lines
    digest = DockerRegistry(ssh_docker_url, None, None).push(image, lambda done, total: None, Lines())
    assert DockerRegistry(ssh_docker_url, None, None).digest(tag) == digest


def test_a_failing_step_is_named_with_its_last_lines(context: Path, tmp_path: Path, registry: str) -> None:
    dockerfile = tmp_path / "Dockerfile.fail"
    dockerfile.write_text('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
                          "RUN echo the-line-before; exit 3\n")
    failing = BuildRequest(str(context), str(dockerfile), "", {}, (f"{registry}/rc-test-bkfail:1",))
    with pytest.raises(Exception) as failed:
        buildkit("unix:///var/run/docker.sock").build(failing, Lines())
    message = str(failed.value)
    assert message.startswith("build failed at [3/3] RUN echo the-line-before; exit 3: "), message
    assert "exit code: 3" in message and "the-line-before" in message.split("\n", 1)[1]


def test_without_a_buildkit_cli_the_classic_builder_says_why(context: Path, tag: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-docker")
    builder = builder_for(BuildConfig(docker_cli=missing))
    assert isinstance(builder, DockerBuilder)
    lines = Lines()
    classic = BuildRequest(str(context), "Dockerfile", "runner", {}, (tag,), LABELS)
    image = builder.build(classic, lines)
    assert lines[0].startswith(f"BuildKit is not available ({missing} does not run as a docker CLI)")
    assert "buildx" in lines[0] and 'builder = "classic"' in lines[0]
    assert any(line.startswith("Step ") for line in lines) and image.id.startswith("sha256:")


def test_the_classic_builder_is_there_when_asked() -> None:
    builder = builder_for(BuildConfig(builder="classic"))
    assert isinstance(builder, DockerBuilder) and not builder.notice
