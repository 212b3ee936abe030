"""Docker image builder and registry: the real ImageBuilder and Registry, over the docker SDK.

The low-level `docker.APIClient` talks to the engine of `[build] engine_url` (a unix socket,
tcp://, or ssh://user@host through the ssh client). Builds use the classic builder, so the
streamed log carries its "Step n/m : ..." and "Using cache" lines as they are.

Every failure is a StepFailed that says what happened and what to check; the registry
password never appears in a line or a message (it is replaced by the mask).
"""

from __future__ import annotations

import http.client
import os
import re
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
import urllib3
from docker.auth import INDEX_NAME, resolve_repository_name
from docker.utils import parse_repository_tag
from docker.utils.build import exclude_paths
from pydantic import SecretStr

from services.core.masking import MASK, mask
from services.core.operations import StepFailed
from services.core.ports import BuildRequest, BuiltImage, OnLine, OnProgress

TAIL_LINES = 15
MB = 1024 * 1024
DEFAULT_TIMEOUT_S = 1800  # a silent build step (a long compile) must not time the stream out
_STEP = re.compile(r"^Step \d+/\d+ : ")
_AUTH = re.compile(r"unauthorized|denied|authentication required|no basic auth credentials|403 forbidden", re.I)
_UNREACHABLE = re.compile(
    r"connection refused|no such host|dial tcp|i/o timeout|no route to host|network is unreachable|"
    r"server misbehaving|tls: |http: server gave HTTP response",
    re.I,
)
_INTERRUPTED = re.compile(
    r"\bEOF\b|connection reset|broken pipe|use of closed network connection|unexpected end|"
    r"closed by the remote|connection aborted",
    re.I,
)
# A connection to the engine that breaks mid-stream: the SDK reads the raw urllib3 stream.
_BROKEN = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)
_DONE_STATES = ("Pushed", "Layer already exists", "Mounted from")


def connect(engine_url: str, timeout: int = DEFAULT_TIMEOUT_S) -> Any:
    """An APIClient for a local engine_url (unix://, tcp://), or StepFailed naming the URL."""
    try:
        return docker.APIClient(base_url=engine_url, version="auto", timeout=timeout)
    except (docker.errors.DockerException, requests.RequestException, OSError) as err:
        raise engine_unreachable(engine_url, err) from None


def local_engine(engine_url: str) -> tuple[str, ExitStack]:
    """A local URL for engine_url (itself, or unix://SOCKET for ssh://), and what to close when done.

    ssh://user@host goes through the `ssh` binary: its forwarded socket (nginx_split's SshHost,
    the Docker host target's tunnel too), not docker-py's ssh support, which needs paramiko.
    """
    from services.adapters.nginx_split import HostLost, host_for

    stack = ExitStack()
    host = host_for(engine_url)
    stack.callback(host.close)  # a build's own ssh connection ends with it
    try:
        return stack.enter_context(host.engine(engine_url)), stack
    except HostLost as err:
        stack.close()
        raise engine_unreachable(engine_url, err) from None
    except BaseException:
        stack.close()
        raise


def open_engine(engine_url: str, timeout: int = DEFAULT_TIMEOUT_S) -> tuple[Any, ExitStack]:
    """An APIClient for engine_url (through local_engine), and what to close when done with it."""
    local, stack = local_engine(engine_url)
    try:
        api = connect(local, timeout)
    except BaseException:
        stack.close()
        raise
    stack.callback(api.close)
    return api, stack


def engine_unreachable(engine_url: str, err: BaseException) -> StepFailed:
    where = mask(engine_url)
    return StepFailed(
        f"cannot reach the Docker engine at {where}: {_short(mask(str(err)))}",
        (
            f"check that dockerd is running on that host (systemctl status docker; docker -H {where} info)",
            "check [build] engine_url in release.toml and DOCKER_HOST",
            "for ssh://user@host: check that `ssh user@host docker info` works (key, known_hosts, docker group)",
        ),
    )


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def context_size(context: Path, dockerfile: str, limit: int | None = None) -> int:
    """Bytes the engine would be sent: the context's files, minus what .dockerignore excludes.

    Stops counting once past `limit` (a node_modules of gigabytes need not be walked to the end).
    """
    ignore = context / ".dockerignore"
    patterns: list[str] = []
    if ignore.is_file():
        lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
        patterns = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    total = 0
    if patterns:
        for relative in exclude_paths(str(context), patterns, dockerfile=dockerfile):
            total += _file_size(context / relative)
            if limit is not None and total > limit:
                break
        return total
    for root, _dirs, files in os.walk(context):
        for name in files:
            total += _file_size(Path(root) / name)
            if limit is not None and total > limit:
                return total
    return total


def _file_size(path: Path) -> int:
    try:
        st = path.lstat()
    except OSError:
        return 0
    return st.st_size if not path.is_dir() else 0


class DockerBuilder:
    """The classic builder. `notice`, when set, is said first in every build's log (why not BuildKit)."""

    def __init__(self, engine_url: str, max_context_mb: int, timeout: int = DEFAULT_TIMEOUT_S,
                 notice: str = "") -> None:
        self.engine_url = engine_url
        self.max_context_mb = max_context_mb
        self.timeout = timeout
        self.notice = notice

    def inspect(self, image_id: str) -> dict[str, Any]:
        """The image's inspect dict with its history under "History", for the image policy."""
        api, engine = open_engine(self.engine_url, self.timeout)
        try:
            return {**api.inspect_image(image_id), "History": api.history(image_id)}
        except docker.errors.APIError as err:
            raise StepFailed(f"cannot inspect {image_id[:19]}: {_short(mask(str(err)))}") from None
        finally:
            engine.close()

    def build(self, request: BuildRequest, on_line: OnLine, nocache: bool = False) -> BuiltImage:
        self.check_request(request)
        if self.notice:
            on_line(self.notice)
        api, engine = open_engine(self.engine_url, self.timeout)
        try:
            image_id = self._stream_build(api, request, on_line, nocache)
            for extra in request.tags[1:]:
                repository, tag = parse_repository_tag(extra)
                api.tag(image_id, repository, tag or "latest")
            attrs = api.inspect_image(image_id)
        except docker.errors.APIError as err:
            raise StepFailed(f"the Docker engine refused: {_short(mask(str(err)))}") from None
        except _BROKEN as err:
            raise StepFailed(
                f"lost the Docker engine at {mask(self.engine_url)} during the build: {_short(str(err))}",
                ("retry the build", "check that dockerd is still running"),
            ) from None
        finally:
            engine.close()
        return built_image(attrs, request.tags, on_line)

    def check_request(self, request: BuildRequest) -> None:
        """Refused before anything is sent: no tags, no context or Dockerfile, a context too large."""
        if not request.tags:
            raise StepFailed("nothing to tag: the build request has no tags")
        self._check_context(Path(request.context), request.dockerfile)

    def _check_context(self, context: Path, dockerfile: str) -> None:
        if not context.is_dir():
            raise StepFailed(
                f"the build context {context} is not a directory", ("check app.context in release.toml",)
            )
        path = Path(dockerfile) if os.path.isabs(dockerfile) else context / dockerfile
        if not path.is_file():
            raise StepFailed(
                f"no Dockerfile at {path}",
                ("check app.dockerfile (relative to app.context) in release.toml", "add the Dockerfile"),
            )
        limit = self.max_context_mb * MB
        size = context_size(context, dockerfile if not os.path.isabs(dockerfile) else path.name, limit)
        if size > limit:
            raise StepFailed(
                f"the build context {context} is {size / MB:.1f} MB or more, above the {self.max_context_mb} MB limit;"
                " add a .dockerignore (node_modules, .next, .git)",
                ("add a .dockerignore (node_modules, .next, .git)", "or raise [build] max_context_mb"),
            )

    def _stream_build(self, api: Any, request: BuildRequest, on_line: OnLine, nocache: bool) -> str:
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        step = ""
        image_id = ""
        partial = ""
        chunks: Iterator[Mapping[str, Any]] = api.build(
            path=str(request.context),
            dockerfile=request.dockerfile,
            target=request.target or None,
            buildargs=dict(request.build_args),
            tag=request.tags[0],
            decode=True,
            rm=True,
            forcerm=True,
            nocache=nocache,
            network_mode="host",
            labels=dict(request.labels) or None,
        )
        for chunk in chunks:
            if "error" in chunk or "errorDetail" in chunk:
                if partial.strip():
                    tail.append(partial.strip())
                detail = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message") or "unknown error"
                raise _build_failed(step, str(detail), tail)
            aux = chunk.get("aux")
            if isinstance(aux, Mapping) and aux.get("ID"):
                image_id = str(aux["ID"])
            text = chunk.get("stream")
            if text is None and chunk.get("status"):  # base image pulls
                text = f"{chunk['status']} {chunk.get('id', '')}".rstrip() + "\n"
            if not text:
                continue
            partial += str(text)
            *lines, partial = partial.split("\n")
            for raw in lines:
                line = raw.strip()
                if not line:
                    continue
                if _STEP.match(line):
                    step = line
                tail.append(line)
                on_line(line)
                if not image_id and line.startswith("Successfully built "):
                    image_id = line.split()[-1]
        if partial.strip():
            on_line(partial.strip())
        if not image_id:
            raise _build_failed(step, "the engine reported no image", tail)
        return image_id


def built_image(attrs: Mapping[str, Any], tags: tuple[str, ...], on_line: OnLine) -> BuiltImage:
    """The BuiltImage of an image's inspect, said in one line of the build log."""
    built = BuiltImage(
        id=str(attrs["Id"]),
        size_bytes=int(attrs.get("Size") or 0),
        layers=len((attrs.get("RootFS") or {}).get("Layers") or []),
        tags=tuple(tags),
    )
    on_line(f"image {_id12(built.id)} {built.size_bytes / MB:.1f} MB, {built.layers} layers")
    return built


def _build_failed(step: str, detail: str, tail: deque[str]) -> StepFailed:
    where = step.split(" : ", 1)
    at = f"{where[0]}: {where[1]}" if len(where) == 2 else (step or "its start")
    lines = "\n".join(tail)
    return StepFailed(
        mask(f"build failed at {at}: {_short(detail, 500)}\nlast {len(tail)} lines:\n{lines}"),
        ("fix the Dockerfile or the app and build again", "see the full build log"),
    )


def _id12(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


class DockerRegistry:
    def __init__(
        self, engine_url: str, username: str | None, password: SecretStr | None, timeout: int = DEFAULT_TIMEOUT_S
    ) -> None:
        self.engine_url = engine_url
        self.username = username
        self.password = password
        self.timeout = timeout
        self._logged_in: set[str] = set()

    def _auth(self, registry: str) -> dict[str, str] | None:
        if not self.username or self.password is None:
            return None
        return {"username": self.username, "password": self.password.get_secret_value(), "serveraddress": registry}

    def _clean(self, text: str) -> str:
        """text without the password, whatever echoed it."""
        if self.password is not None and (secret := self.password.get_secret_value()):
            text = text.replace(secret, MASK)
        return str(mask(text))

    def push(self, image: BuiltImage, on_progress: OnProgress, on_line: OnLine) -> str:
        if not image.tags:
            raise StepFailed("nothing to push: the image has no tags")
        api, engine = open_engine(self.engine_url, self.timeout)
        progress = _PushProgress(on_progress, on_line)
        self._logged_in = set()
        digest = ""
        try:
            for ref in image.tags:
                repository, tag = parse_repository_tag(ref)
                registry, _name = resolve_repository_name(repository)
                self._login(api, registry, repository, progress)
                on_line(f"pushing {repository}:{tag or 'latest'}")
                digest = self._push_one(api, repository, tag or "latest", registry, progress) or digest
        finally:
            engine.close()
        progress.finish()
        if not digest:
            raise StepFailed("the registry did not report a digest for the push", ("retry the push",))
        on_line(f"pushed {', '.join(image.tags)} {digest}")
        return digest

    def _login(self, api: Any, registry: str, repository: str, progress: _PushProgress) -> None:
        """Check the credentials first: a refused push would otherwise retry for a minute."""
        auth = self._auth(registry)
        if auth is None or registry in self._logged_in:
            return
        try:
            api.login(
                auth["username"], auth["password"], registry=None if registry == INDEX_NAME else registry, reauth=True
            )
        except docker.errors.APIError as err:
            raise self._push_failed(registry, repository, self._clean(str(err.explanation or err)), progress) from None
        except _BROKEN as err:
            raise engine_unreachable(self.engine_url, err) from None
        self._logged_in.add(registry)

    def _push_one(self, api: Any, repository: str, tag: str, registry: str, progress: _PushProgress) -> str:
        digest = ""
        try:
            chunks = api.push(repository, tag=tag, stream=True, decode=True, auth_config=self._auth(registry))
            for chunk in chunks:
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message") or "unknown"
                    raise self._push_failed(registry, repository, self._clean(str(detail)), progress)
                aux = chunk.get("aux")
                if isinstance(aux, Mapping) and aux.get("Digest"):
                    digest = str(aux["Digest"])
                progress.update(chunk)
        except docker.errors.APIError as err:  # refused before streaming: no such local tag, bad name
            explanation = self._clean(str(err.explanation or err))
            raise self._push_failed(registry, repository, explanation, progress) from None
        except _BROKEN as err:  # the stream broke mid-way
            raise _interrupted(progress, self._clean(str(err))) from None
        return digest

    def _push_failed(self, registry: str, repository: str, detail: str, progress: _PushProgress) -> StepFailed:
        if _AUTH.search(detail):
            return StepFailed(
                f"the registry refused the push: authentication; check registry_username/password (docker login)"
                f" for {registry}: {_short(detail)}",
                ("set [build] registry_username and registry_password", f"docker login {registry}"),
            )
        if _UNREACHABLE.search(detail):
            return StepFailed(
                f"cannot reach the registry {registry}: {_short(detail)}",
                (f"check that {registry} is the right host and is up", "check DNS, firewall and proxy settings"),
            )
        if progress.started and _INTERRUPTED.search(detail):
            return _interrupted(progress, detail)
        return StepFailed(f"pushing {repository} failed: {_short(detail)}", ("retry the push", "abandon"))

    def has(self, reference: str) -> bool:
        return self.digest(reference) is not None

    def digest(self, reference: str) -> str | None:
        repository, _tag = parse_repository_tag(reference)
        registry, _name = resolve_repository_name(repository)
        api, engine = open_engine(self.engine_url, 60)
        try:
            found = api.inspect_distribution(reference, auth_config=self._auth(registry))
            return str(found["Descriptor"]["digest"])
        except docker.errors.APIError as err:
            detail = self._clean(str(err.explanation or err))
            if err.status_code == 404 or re.search(r"manifest unknown|not found|name unknown", detail, re.I):
                return None
            if _AUTH.search(detail):
                raise StepFailed(
                    f"the registry {registry} refused the lookup: authentication;"
                    " check registry_username/password (docker login)"
                ) from None
            raise StepFailed(f"cannot look up {reference} in the registry {registry}: {_short(detail)}") from None
        except _BROKEN as err:
            raise engine_unreachable(self.engine_url, err) from None
        finally:
            engine.close()


def _interrupted(progress: _PushProgress, detail: str) -> StepFailed:
    return StepFailed(
        f"push interrupted after {progress.layers_done} of {progress.layers_total} layers;"
        f" nothing is tagged as released; retry the push ({_short(detail, 200)})",
        ("retry the push", "abandon"),
    )


class _PushProgress:
    """Per-layer bytes from the push stream, summed for on_progress; a line per layer state change."""

    def __init__(self, on_progress: OnProgress, on_line: OnLine) -> None:
        self.on_progress = on_progress
        self.on_line = on_line
        self.current: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self.state: dict[str, str] = {}

    @property
    def started(self) -> bool:
        return bool(self.state)

    @property
    def layers_total(self) -> int:
        return len(self.state)

    @property
    def layers_done(self) -> int:
        return sum(1 for s in self.state.values() if s.startswith(_DONE_STATES))

    def update(self, chunk: Mapping[str, Any]) -> None:
        layer = chunk.get("id")
        status = str(chunk.get("status") or "")
        if not layer or not status or len(str(layer)) < 12 or " " in str(layer):
            if status and not status.startswith(("Pushing", "Preparing", "Waiting")) and not layer:
                self.on_line(status)  # "The push refers to repository [...]", "tag: digest: ... size: ..."
            return
        layer = str(layer)
        detail = chunk.get("progressDetail") or {}
        if isinstance(detail, Mapping) and detail.get("total"):
            self.total[layer] = int(detail["total"])
            self.current[layer] = min(int(detail.get("current") or 0), self.total[layer])
        if status.startswith(_DONE_STATES):
            self.current[layer] = self.total.get(layer, 0)
        state = next((s for s in ("Pushing", "Retrying") if status.startswith(s)), status)
        if self.state.get(layer) != state:
            if not self.state.get(layer, "").startswith(_DONE_STATES):  # a second tag: already pushed
                self.on_line(f"{layer[:12]} {state}")
            self.state[layer] = state
        self._report()

    def _report(self) -> None:
        total = sum(self.total.values())
        if total:
            self.on_progress(float(sum(self.current.values())), float(total))

    def finish(self) -> None:
        total = float(sum(self.total.values()))
        self.on_progress(total or 1.0, total or 1.0)  # all done; 1/1 when every layer was already there
