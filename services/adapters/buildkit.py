"""BuildKit builds through the docker CLI: the ImageBuilder that `[build] builder = "buildkit"` asks for.

Which CLI is asked, not guessed from PATH order (`find_cli`): one with the buildx plugin builds
with `docker buildx build --progress=rawjson` (UNTESTED: no buildx could be installed where this
was written); else a CLI older than 23, which has BuildKit built in (Debian 12's docker.io 20.10),
builds with `DOCKER_BUILDKIT=1 docker build --progress=plain`. With neither, `builder_for` falls
back to the classic builder, whose every build log says why and what to install.

The CLI runs as an argument list through services/core/processes (bounded, cancellable), with
DOCKER_HOST at the engine: for ssh://user@host, the ssh tunnel's forwarded socket. Build
secrets reach it through its environment (`--secret id=ID,env=NAME`), never its arguments; the
image id comes from `--iidfile`, written in a private temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.auth import INDEX_NAME, resolve_repository_name
from docker.utils import parse_repository_tag
from pydantic import SecretStr

from services.adapters.buildkit_progress import PlainProgress, RawJsonProgress, Steps, secret_args
from services.adapters.docker_build import (
    DEFAULT_TIMEOUT_S,
    DockerBuilder,
    built_image,
    engine_unreachable,
    local_engine,
)
from services.core import processes
from services.core.config import BuildConfig
from services.core.operations import StepFailed
from services.core.ports import BuildRequest, BuiltImage, ImageBuilder, OnLine

ASK_TIMEOUT_S = 20
_VERSION = re.compile(r"^Docker version (?P<v>(?P<major>\d+)\.(?P<minor>\d+)\S*?),")
_NO_ENGINE = re.compile(r"Cannot connect to the Docker daemon|error during connect", re.I)
SECRET_ENV = "RC_BUILD_SECRET_"  # + the secret's position: the CLI reads it with --secret id=ID,env=NAME


@dataclass(frozen=True)
class DockerCli:
    path: str
    version: str  # "20.10.24+dfsg1"
    major: int
    minor: int
    buildx: bool

    @property
    def builtin_buildkit(self) -> bool:
        """20.10 to 22.x: BuildKit with DOCKER_BUILDKIT=1, `--secret id=,env=` (older CLIs lack env=)."""
        return (20, 10) <= (self.major, self.minor) < (23, 0)

    def describe(self) -> str:
        how = "buildx" if self.buildx else "built-in BuildKit"
        return f"{self.path} (Docker {self.version}, {how})"


def _ask(path: str) -> DockerCli | None:
    """What the CLI at `path` says it is; None when it does not run or is no docker CLI."""
    try:
        said = processes.run([path, "--version"], ASK_TIMEOUT_S)
        match = _VERSION.match(said.stdout.strip())
        if said.code != 0 or not match:
            return None
        buildx = processes.run([path, "buildx", "version"], ASK_TIMEOUT_S).code == 0
    except (FileNotFoundError, PermissionError, StepFailed):
        return None
    return DockerCli(path, match["v"], int(match["major"]), int(match["minor"]), buildx)


def _candidates(name: str) -> list[str]:
    """`name` itself when it is a path; else every executable of that name along PATH, in order."""
    if os.sep in name:
        return [name]
    found = (shutil.which(name, path=folder) for folder in os.environ.get("PATH", "").split(os.pathsep) if folder)
    return list(dict.fromkeys(os.path.realpath(f) if os.path.islink(f) else f for f in found if f))


def find_cli(name: str) -> tuple[DockerCli | None, str]:
    """The CLI to build with (buildx first, then built-in BuildKit), or None and why none can."""
    paths = _candidates(name)
    if not paths:
        return None, f"no `{name}` on PATH"
    asked = [cli for cli in map(_ask, paths) if cli is not None]
    chosen = next((c for c in asked if c.buildx), None) or next((c for c in asked if c.builtin_buildkit), None)
    if chosen is not None:
        return chosen, ""
    why = [f"{path} does not run as a docker CLI" for path in paths if path not in {c.path for c in asked}]
    for cli in asked:
        need = ("is 23 or later, which needs the buildx plugin for BuildKit, and has none"
                if cli.major >= 23 else "is older than 20.10")
        why.append(f"{cli.path} (Docker {cli.version}) {need}")
    return None, "; ".join(why)


def fallback_notice(why: str) -> str:
    return (f"BuildKit is not available ({why}): building with the classic builder, where `RUN --mount`"
            " and [build] secrets fail. Install the docker buildx plugin, or a Docker 20.10 CLI"
            " (Debian 12's docker.io), and point [build] docker_cli at it; or set [build] builder = \"classic\".")


def builder_for(build: BuildConfig, timeout: int = DEFAULT_TIMEOUT_S) -> ImageBuilder:
    """The builder [build] asks for: BuildKit when a CLI can, else classic with a notice saying why."""
    if build.builder == "classic":
        return DockerBuilder(build.engine_url, build.max_context_mb, timeout)
    cli, why = find_cli(build.docker_cli)
    if cli is None:
        return DockerBuilder(build.engine_url, build.max_context_mb, timeout, notice=fallback_notice(why))
    classic = DockerBuilder(build.engine_url, build.max_context_mb, timeout)
    return BuildKitBuilder(classic, cli, build.secrets, build.registry_cache, timeout)


class BuildKitBuilder:
    def __init__(self, classic: DockerBuilder, cli: DockerCli, secrets: Mapping[str, SecretStr],
                 registry_cache: bool, timeout: int = DEFAULT_TIMEOUT_S) -> None:
        self.classic = classic  # checks the request and inspects images: the same engine, over the SDK
        self.cli = cli
        self.secrets = dict(secrets)
        self.registry_cache = registry_cache
        self.timeout = timeout

    def inspect(self, image_id: str) -> dict[str, Any]:
        return self.classic.inspect(image_id)

    def build(self, request: BuildRequest, on_line: OnLine) -> BuiltImage:
        self.classic.check_request(request)
        on_line(f"BuildKit: {self.cli.describe()}")
        dockerfile = Path(request.dockerfile if os.path.isabs(request.dockerfile)
                          else Path(request.context) / request.dockerfile)
        steps = Steps(on_line, secret_args(dockerfile.read_text(encoding="utf-8", errors="replace"),
                                           request.build_args))
        progress = RawJsonProgress(steps) if self.cli.buildx else PlainProgress(steps)
        local, engine = local_engine(self.classic.engine_url)
        with engine, tempfile.TemporaryDirectory(prefix="rc-buildkit-") as work:  # 0700
            iidfile = Path(work) / "image-id"
            argv = self.argv(request, iidfile)
            env = {**os.environ, "DOCKER_HOST": local, **self._secret_env()}
            if not self.cli.buildx:
                env["DOCKER_BUILDKIT"] = "1"
            try:
                done = processes.run(argv, self.timeout, on_line=progress.feed, cwd=request.context, env=env,
                                     what="the BuildKit build",
                                     advice=("a step waits on the network or loops: see the build log",
                                             "raise the build timeout only if the build is just slow"))
            except (FileNotFoundError, PermissionError) as err:
                raise StepFailed(f"cannot run the docker CLI {self.cli.path}: {err.strerror}",
                                 ("check [build] docker_cli in release.toml",)) from None
            if done.code != 0:
                if not steps.steps and any(_NO_ENGINE.search(line) for line in steps.other):
                    raise engine_unreachable(self.classic.engine_url, RuntimeError(steps.other[-1]))
                raise steps.failure(done.code)
            image_id = iidfile.read_text(encoding="utf-8").strip() if iidfile.is_file() else ""
        if not image_id:
            raise StepFailed("the BuildKit build wrote no image id", ("retry the build", "see the full build log"))
        on_line(steps.summary())
        return built_image(self.classic.inspect(image_id), request.tags, on_line)

    def _secret_env(self) -> dict[str, str]:
        return {f"{SECRET_ENV}{i}": value.get_secret_value() for i, value in enumerate(self.secrets.values())}

    def argv(self, request: BuildRequest, iidfile: Path) -> list[str]:
        context = Path(request.context)
        dockerfile = request.dockerfile if os.path.isabs(request.dockerfile) else str(context / request.dockerfile)
        argv = [self.cli.path, "buildx", "build", "--progress=rawjson", "--load"] if self.cli.buildx else [
            self.cli.path, "build", "--progress=plain"]
        argv += ["--network", "host", "--iidfile", str(iidfile), "--file", dockerfile]
        if request.target:
            argv += ["--target", request.target]
        for name, value in request.build_args.items():
            argv += ["--build-arg", f"{name}={value}"]
        for name, value in request.labels.items():
            argv += ["--label", f"{name}={value}"]
        for tag in request.tags:
            argv += ["--tag", tag]
        for i, name in enumerate(self.secrets):
            argv += ["--secret", f"id={name},env={SECRET_ENV}{i}"]
        argv += self._cache_args(request.tags)
        return [*argv, str(context)]

    def _cache_args(self, tags: tuple[str, ...]) -> list[str]:
        """Inline cache written into the image, and read back from the tags' previous push.

        Only tags of a named registry: a bare name would send BuildKit to Docker Hub.
        """
        if not self.registry_cache:
            return []
        argv = ["--cache-to", "type=inline"] if self.cli.buildx else ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
        for tag in tags:
            registry, _name = resolve_repository_name(parse_repository_tag(tag)[0])
            if registry != INDEX_NAME:
                argv += ["--cache-from", tag]
        return argv
