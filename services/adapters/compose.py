"""The development stack through Docker Compose: status from the containers' compose labels (the
Docker SDK), up/down/restart/logs of one service through the compose CLI.

The CLI is the v2 plugin (`docker compose`) when the docker CLI has it, else the v1 binary
(`docker-compose`). Commands are argument lists run by services/core/processes.py (bounded,
cancellable, never a shell); a service name is checked against the compose file's services
before it reaches an argv.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import docker
import yaml

from services.core import processes
from services.core.operations import StepFailed
from services.core.ports import DevService, OnLine

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
INSTALL = ("install the Docker Compose v2 plugin (docker-compose-plugin) or the v1 binary "
           "(Debian: apt-get install docker-compose)")
FOLLOW_S = 7 * 24 * 3600.0  # a followed log runs until it is cancelled (ctrl-c, ctrl+x, leaving the view)


def compose_cli(env: dict[str, str] | None = None) -> list[str]:
    """`docker compose` (v2) if the docker CLI has the plugin, else `docker-compose` (v1); else StepFailed."""
    if shutil.which("docker"):
        try:
            if processes.run(["docker", "compose", "version"], 20, env=env).code == 0:
                return ["docker", "compose"]
        except (FileNotFoundError, PermissionError):
            pass
    if v1 := shutil.which("docker-compose"):
        return [v1]
    raise StepFailed("neither `docker compose` (the v2 plugin) nor `docker-compose` (v1) is on this host",
                     (INSTALL,))


class ComposeStack:
    def __init__(self, compose_file: Path, project: str, engine_url: str, timeout_s: float = 600.0) -> None:
        self.compose_file, self.project, self.engine_url = compose_file, project, engine_url
        self.timeout_s = timeout_s
        self._env = {**os.environ, "DOCKER_HOST": engine_url}
        self._cli: list[str] | None = None
        self._client: Any = None

    def services(self) -> list[str]:
        try:
            loaded = yaml.safe_load(self.compose_file.read_text(encoding="utf-8"))
        except OSError as err:
            raise StepFailed(f"cannot read the compose file {self.compose_file}: {err.strerror}",
                             ("check [dev] compose_file in release.toml",)) from None
        except yaml.YAMLError as err:
            raise StepFailed(f"the compose file {self.compose_file} is not valid YAML: {err}") from None
        services = loaded.get("services") if isinstance(loaded, dict) else None
        if not isinstance(services, dict) or not services:
            raise StepFailed(f"the compose file {self.compose_file} defines no services")
        return [str(name) for name in services]

    def check_service(self, service: str) -> str:
        known = self.services()
        if service not in known:
            raise StepFailed(f"{service!r} is not a service of {self.compose_file.name}; its services: "
                             f"{', '.join(known)}")
        return service

    def status(self) -> list[DevService]:
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.engine_url, timeout=30)
        found: dict[str, list[Any]] = defaultdict(list)
        for container in self._client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}):
            found[container.labels.get(SERVICE_LABEL, "?")].append(container)
        rows = []
        for name in dict.fromkeys([*self._listed(), *found]):
            containers = found.get(name, [])
            if not containers:
                rows.append(DevService(name, "absent"))
                continue
            first = containers[0]
            state = first.attrs.get("State", {})
            rows.append(DevService(name, state.get("Status", first.status), state.get("Health", {}).get("Status", ""),
                                   first.attrs.get("Config", {}).get("Image", ""),  # as configured; no image lookup
                                   len(containers)))
        return rows

    def _listed(self) -> list[str]:
        try:
            return self.services()
        except StepFailed:  # the labels still tell what runs
            return []

    def up(self, service: str | None, on_line: OnLine) -> None:
        self._run(["up", "-d", *([self.check_service(service)] if service else [])], on_line)

    def down(self, on_line: OnLine) -> None:
        self._run(["down"], on_line)

    def restart(self, service: str, on_line: OnLine) -> None:
        self._run(["restart", self.check_service(service)], on_line)

    def logs(self, service: str, on_line: OnLine, follow: bool = False, tail: int = 200) -> None:
        argv = ["logs", "--no-color", "--tail", str(int(tail)), *(["--follow"] if follow else []),
                self.check_service(service)]
        self._run(argv, on_line, FOLLOW_S if follow else self.timeout_s, echo=False)

    def _run(self, args: list[str], on_line: OnLine, timeout_s: float | None = None, echo: bool = True) -> None:
        if self._cli is None:
            self._cli = compose_cli(self._env)
        argv = [*self._cli, "--project-directory", str(self.compose_file.parent), "-f", str(self.compose_file),
                "-p", self.project, *args]
        if echo:
            on_line(f"$ {processes.shown(argv)}")
        try:
            code = processes.run(argv, timeout_s or self.timeout_s, on_line=on_line, env=self._env,
                                 cwd=self.compose_file.parent, what=f"compose {args[0]}").code
        except (FileNotFoundError, PermissionError) as err:
            raise StepFailed(f"{argv[0]} could not run: {err.strerror}", (INSTALL,)) from None
        if code != 0:
            raise StepFailed(f"compose {args[0]} exited with {code} (its output is in the log above)",
                             ("fix what the output says, then retry", "check [dev] in release.toml"))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
