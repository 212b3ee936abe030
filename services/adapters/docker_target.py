"""The Docker host deploy target: the app's containers on one engine, behind the host's nginx.

A deploy is the strategy's `docker compose pull; up -d --no-deps app; system prune` without
downtime: pull the image; start it beside the old container on a host port of its own; wait
until it answers health_path over HTTP; switch nginx's upstream to it (a graceful reload); once
nginx has no request left on the old one (at most drain_s) stop it: it stays, stopped, as the
previous revision (deploying its image again starts it: no pull); remove containers older than
it and the images only they used.

What serves traffic is what the upstream file lists (docker_fleet); plan() is in docker_plan.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import docker.errors

from services.adapters.docker_build import _BROKEN, _short, connect
from services.adapters.docker_fleet import APP, ENV, PORT, ROLE, VERSION, Box, Fleet, choose
from services.adapters.docker_plan import Planner
from services.adapters.nginx_split import (
    HostLost,
    Server,
    Upstream,
    applied,
    connections_to,
    host_for,
    listening_ports,
    parse,
    split,
)
from services.core.config import DockerTarget, ReleaseConfig
from services.core.masking import mask
from services.core.operations import Cancelled, StepFailed, pause, shielded
from services.core.ports import Change, OnLine, Plan, Running, TargetStatus
from services.core.references import digest_of, parts_of, version_of

__all__ = ["APP", "DockerHostTarget"]

ENGINE_TIMEOUT_S = 120
POLL_S = 0.25  # between health probes; the first come sooner (FIRST_POLL_S, doubling)
FIRST_POLL_S = 0.05
DRAIN_POLL_S = 0.05  # between counts of nginx's connections to the retired and the serving containers
# When a count of 0 on the old containers can be trusted. `nginx -s reload` returns once it has signalled
# the master, which starts new workers, sleeps 100 ms ("allow new processes to start") and only then
# tells the old ones to quit; until then they accept requests and send them to the old upstream, and a
# count can read 0 between two of them. So: NEW_WORKERS_S after nginx was first seen sending a request
# to a serving container (its new workers run), or, when none is seen (no traffic), DRAIN_SETTLE_S after
# the reload. bench/nginx_reload.py: the last request to the old upstream was sent at most 128 ms after
# the reload returned, in 90 reloads at load average 10-12 on 2 cores (docs/perf.md, issue 17); a
# bench run at load 7 failed requests when the drain trusted the wall clock alone (0.3 s). 0.5 s is
# four times the worst seen: a deploy's zero failed requests are worth a quarter second.
NEW_WORKERS_S = 0.5
DRAIN_SETTLE_S = 1.0
EVENTS_SHOWN = 8
_NOT_FOUND = re.compile(r"manifest unknown|not found|name unknown|no such image|does not exist", re.I)


class DockerHostTarget:
    """DeployTarget for `kind = "docker"`: the local engine (unix://) or one over ssh://user@host:port."""

    def __init__(self, config: ReleaseConfig, env: str) -> None:
        settings = config.environment(env)
        if not isinstance(settings.target, DockerTarget):
            raise ValueError(f"environment {env} has no docker target")
        self.config = config
        self.env = env
        self.settings = settings
        self.target: DockerTarget = settings.target
        self.host = host_for(self.target.docker_url)
        nginx = self.target.nginx
        self.upstream = Upstream(self.host, nginx.upstream_file, nginx.upstream, nginx.reload,
                                 f"{config.app.name} {env}")

    def describe(self) -> str:
        return f"docker {mask(self.target.docker_url)}, nginx upstream {self.target.nginx.upstream}"

    def close(self) -> None:
        """End the ssh connection kept to an ssh:// host (Services.close(): the console quits)."""
        self.host.close()

    # --- reading ---------------------------------------------------------------------------

    def status(self) -> TargetStatus:
        with self._reading("reading the status") as api:
            fleet = self._read(api)
            events = self._events(api)
            stable = fleet.stable + self._by_name(api, fleet, "stable")
            running = self._running(api, stable)
        canary = fleet.canary
        versions = ", ".join(dict.fromkeys(b.version for b in stable)) or "-"
        if stable and not any(b.running for b in stable):
            versions += " (stopped)"
        record = applied(fleet.text or "")
        return TargetStatus(
            version=versions, ready=sum(b.ready for b in stable), desired=len(stable),
            canary_version=canary[0].version if canary else None, canary_weight=fleet.weight,
            restarts=sum(b.restarts for b in stable + canary), events=events,
            image=stable[0].image if stable else "", canary_image=canary[0].image if canary else None,
            canary_ready=sum(b.ready for b in canary), running=running,
            applied_replicas=record.stable if record else None, applied_weight=record.weight if record else None,
        )

    def _by_name(self, api: Any, fleet: Fleet, role: str) -> list[Box]:
        """Containers under the name the console gives a server's container (name()) that lack its labels:
        one replaced by hand (`docker run --name ...`) still serves on that port, so it counts."""
        found = []
        for server in fleet.servers:
            if server.role != role or any(b.port == server.port for b in fleet.boxes):
                continue
            name = self.name(server.port, role)
            for summary in api.containers(all=True, filters={"name": f"^/{name}$"}):
                try:
                    found.append(_box(api.inspect_container(summary["Id"]), server.port))
                except docker.errors.NotFound:
                    continue
        return found

    @staticmethod
    def _running(api: Any, boxes: list[Box]) -> tuple[Running, ...]:
        """Each distinct configured reference, with the registry digest its local image carries (RepoDigests
        of the same repository), for drift: a tag moved by hand shows by its digest."""
        running = []
        for reference in dict.fromkeys(b.image for b in boxes):
            digest = digest_of(reference)
            if digest is None:
                try:
                    repo_digests = api.inspect_image(reference).get("RepoDigests") or []
                except docker.errors.NotFound:
                    repo_digests = []
                repository = parts_of(reference)[0]
                digest = next((d.split("@", 1)[1] for d in repo_digests if d.split("@", 1)[0] == repository), None)
            running.append(Running(reference, digest))
        return tuple(running)

    def plan(self, change: Change) -> Plan:
        with self._reading("planning") as api:
            fleet = self._read(api)
            used = self._used_ports(api)
        return Planner(self, fleet, used).plan(change)

    # --- changing ---------------------------------------------------------------------------

    def deploy(self, image: str, on_line: OnLine) -> None:
        with self._session(f"deploying {image}", on_line) as s:
            s.deploy(image)

    def start_canary(self, image: str, weight: int, on_line: OnLine) -> None:
        with self._session(f"starting a canary of {image}", on_line) as s:
            s.start_canary(image, weight)

    def set_weight(self, weight: int, on_line: OnLine) -> None:
        with self._session(f"setting the canary weight to {weight}%", on_line) as s:
            s.set_weight(weight)

    def promote(self, on_line: OnLine) -> None:
        with self._session("promoting the canary", on_line) as s:
            s.promote()

    def abort(self, on_line: OnLine) -> None:
        with self._session("aborting the canary", on_line) as s:
            s.abort()

    def scale(self, replicas: int, on_line: OnLine) -> None:
        with self._session(f"scaling to {replicas}", on_line) as s:
            s.scale(replicas)

    def stop(self, on_line: OnLine) -> None:
        with self._session("stopping the app's containers", on_line) as s:
            s.stop()

    def start(self, on_line: OnLine) -> None:
        with self._session("starting the app's containers", on_line) as s:
            s.start()

    # --- the engine -------------------------------------------------------------------------

    @contextmanager
    def _engine(self) -> Iterator[Any]:
        """An APIClient for docker_url, or StepFailed: the engine cannot be reached (nothing was changed)."""
        with ExitStack() as stack:
            try:
                url = stack.enter_context(self.host.engine(self.target.docker_url))
                api = connect(url, ENGINE_TIMEOUT_S)
            except (HostLost, StepFailed) as err:
                raise self._unreachable(str(err)) from None
            stack.callback(api.close)
            yield api

    def _unreachable(self, detail: str) -> StepFailed:
        where = mask(self.target.docker_url)
        if detail.startswith("cannot reach the Docker engine at "):  # connect()'s, which names the URL it used
            detail = detail.split(": ", 1)[-1]
        return StepFailed(
            f"cannot reach the Docker engine at {where}: {_short(detail)}; nothing was changed",
            ("check that dockerd runs on that host (systemctl status docker)",
             f"check environments.{self.env}.target.docker_url in release.toml",
             "for ssh://user@host:port: check that `ssh -p PORT user@host docker info` works without a prompt"),
        )

    @contextmanager
    def _reading(self, what: str) -> Iterator[Any]:
        with self._engine() as api:
            try:
                yield api
            except docker.errors.APIError as err:
                raise StepFailed(f"the Docker engine refused {what}: {_short(str(err.explanation or err))}") from None
            except (HostLost, *_BROKEN) as err:
                raise StepFailed(f"lost the connection to {mask(self.target.docker_url)} while {what}:"
                                 f" {_short(str(err), 200)}; nothing was changed", ("try again",)) from None

    @contextmanager
    def _session(self, what: str, on_line: OnLine) -> Iterator[_Session]:
        with self._engine() as api:
            session: _Session | None = None
            try:
                session = _Session(self, api, on_line)
                yield session
            except docker.errors.APIError as err:
                state = f"; {session.state()}" if session else ""
                raise StepFailed(f"the Docker engine refused {what}: {_short(str(err.explanation or err))}{state}",
                                 ("fix the cause above and run the action again",)) from None
            except (HostLost, *_BROKEN) as err:
                state = session.state(lost=True) if session else "nothing was changed"
                raise StepFailed(
                    f"lost the connection to {mask(self.target.docker_url)} while {what}: {_short(str(err), 200)};"
                    f" {state}",
                    ("run the same action again: it picks up what is there (a leftover container is reused or"
                     " stopped)", "check the connection: ssh to the host and run docker ps"),
                ) from None
            except Cancelled as err:  # ctrl+x, SIGINT: mid-wait; what this attempt started is put back
                undone = session.put_back() if session else "nothing was changed"
                state = f"; {session.state()}" if session else ""
                raise Cancelled(f"{err} while {what}; {undone}{state}") from None

    def _read(self, api: Any, upstream: str | None = None) -> Fleet:
        """The managed containers, and the upstream file (read from the host unless given)."""
        text, servers = (upstream, parse(upstream)) if upstream is not None else self.upstream.read()
        found = api.containers(all=True, filters={"label": [f"{APP}={self.config.app.name}", f"{ENV}={self.env}"]})
        boxes = []
        for summary in found:
            try:
                boxes.append(_box(api.inspect_container(summary["Id"])))
            except docker.errors.NotFound:
                continue  # removed in between
        versions = {b.port: b.version for b in boxes}
        servers = [replace(s, version=versions.get(s.port, s.version)) for s in servers]
        return Fleet(tuple(sorted(boxes, key=lambda b: b.port)), tuple(servers), text)

    def _used_ports(self, api: Any) -> set[int]:
        """Ports listening on the host, and those of every container a console manages on this engine
        (stopped ones keep theirs for a rollback)."""
        managed = {int(c["Labels"][PORT]) for c in api.containers(all=True, filters={"label": PORT})
                   if str(c["Labels"].get(PORT, "")).isdigit()}
        return managed | listening_ports(self.host)

    def free_ports(self, used: set[int], count: int) -> list[int]:
        low, high = self.target.ports
        free = [p for p in range(low, high + 1) if p not in used][:count]
        if len(free) < count:
            raise StepFailed(f"no free host port left in {low}-{high} for {count} more container(s)",
                             (f"widen environments.{self.env}.target.ports", "remove stopped containers"))
        return free

    def environment(self, version: str, port: int) -> dict[str, str]:
        """The container's environment (secrets in clear: never print it unmasked)."""
        env = {"VERSION": version, "LOG_LEVEL": self.settings.log_level}
        if self.target.network == "host":
            env["PORT"] = str(port)
        for name, on in self.settings.features.model_dump().items():
            env[f"FEATURE_{name.upper()}"] = "true" if on else "false"
        env["DATABASE_URL"] = self.settings.database_url.get_secret_value()
        env["REDIS_URL"] = self.settings.redis_url.get_secret_value()
        return {**env, **self.target.env}

    def as_configured(self, box: Box) -> bool:
        """Its environment is what the config asks for now: else it is not reused, and a deploy of the
        same image replaces it (a new DATABASE_URL or flag must not be lost)."""
        return all(box.env.get(k) == v for k, v in self.environment(box.version, box.port).items())

    def name(self, port: int, role: str) -> str:
        """<app>-<env>-<role>-<port>: the role it serves now (renamed when it changes), so Prometheus'
        docker_sd can tell canary from stable by name; labels cannot change once a container exists."""
        return re.sub(r"[^a-zA-Z0-9_.-]", "-", f"{self.config.app.name}-{self.env}-{role}-{port}")

    def _events(self, api: Any) -> tuple[str, ...]:
        now = int(time.time())
        lines: list[str] = []
        filters = {"type": "container", "label": [f"{APP}={self.config.app.name}", f"{ENV}={self.env}"]}
        for event in api.events(since=now - 3600, until=now, filters=filters, decode=True):
            action = str(event.get("Action") or event.get("status") or "")
            if action.startswith(("exec_", "attach", "resize")):
                continue
            attributes = (event.get("Actor") or {}).get("Attributes") or {}
            when = datetime.fromtimestamp(int(event.get("time") or 0)).strftime("%H:%M:%S")
            lines.append(f"{when} {attributes.get('name', '?')} {action} ({attributes.get(VERSION, '?')})")
        return tuple(lines[-EVENTS_SHOWN:])

def _box(info: dict[str, Any], port: int | None = None) -> Box:
    """A container as the engine inspects it; `port` for one without the console's labels (by hand)."""
    labels, state = info["Config"].get("Labels") or {}, info["State"]
    env = dict(item.split("=", 1) for item in info["Config"].get("Env") or [] if "=" in item)
    image = info["Config"]["Image"]
    return Box(
        id=info["Id"], name=info["Name"].lstrip("/"), port=int(labels.get(PORT, port or 0)),
        image=image, version=labels.get(VERSION, version_of(image) if port else ""), state=state["Status"],
        health=(state.get("Health") or {}).get("Status"), restarts=int(info.get("RestartCount") or 0),
        finished=state.get("FinishedAt") or "", env=env,
    )


@contextmanager
def _probing() -> Iterator[None]:
    """A probe inside a wait (over ssh://, a remote command): a cancel that stops it reads as one during
    the wait itself, without the probe's command line."""
    try:
        yield
    except Cancelled:
        raise Cancelled("cancelled by the operator") from None


class _Session:
    """One change on the host: what it started that does not serve yet, and where the switch stands."""

    def __init__(self, target: DockerHostTarget, api: Any, on_line: OnLine) -> None:
        self.t = target
        self.api = api
        self.on_line = on_line
        self.fleet = target._read(api)
        self.fresh: list[tuple[Box, str]] = []  # (container, how: created, started, reused): undone on failure
        self.switch_state = "before"  # before, unknown, after
        self.after: tuple[Server, ...] = ()

    # --- what the operator is told on a failure ---------------------------------------------

    def state(self, lost: bool = False) -> str:
        parts = []
        if self.fresh:
            names = ", ".join(b.line() for b, _how in self.fresh)
            parts.append(f"{names} may still be running (not serving); the next attempt reuses or stops it"
                         if lost else f"{names} started by this attempt")
        if self.switch_state == "before":
            parts.append(f"the upstream is unchanged: {self.fleet.traffic()}")
        elif self.switch_state == "after":
            parts.append(f"the switch is done: {replace(self.fleet, servers=self.after).traffic()}")
        else:
            parts.append(f"the upstream file {self.t.upstream.path} on {self.t.host.where} may or may not be"
                         f" rewritten and reloaded; before this attempt {self.fleet.traffic()}")
        return "; ".join(parts)

    # --- the operations ---------------------------------------------------------------------

    def deploy(self, image: str) -> None:
        old = self.fleet.stable
        if old and all(b.image == image and b.ready and self.t.as_configured(b) for b in old):
            self.on_line(f"{image} already serves ({len(old)} container(s)); making sure nothing else is left")
            self._switch(list(self.fleet.servers))
            self._retire(self.fleet.leftovers, "left over from an interrupted attempt")
            self._prune(image)
            return
        boxes = self._bring_up(image, len(old) or self.t.target.replicas, "stable")
        self._switch(self._split(boxes, self.fleet.canary, self.fleet.weight))
        self._retire(old, "kept as the previous revision")
        self._prune(image)
        self.on_line(f"deployed {image}: {len(boxes)} container(s) serving")

    def start_canary(self, image: str, weight: int) -> None:
        stable, canary = self.fleet.stable, self.fleet.canary
        if not stable:
            raise StepFailed("nothing is deployed to put a canary beside", ("deploy first",))
        if canary and all(b.image == image for b in canary):
            self.on_line(f"a canary of {image} already runs; setting its weight")
            self.set_weight(weight)
            return
        if canary:
            raise StepFailed(f"a canary of {canary[0].version} already runs at {self.fleet.weight}%",
                             ("promote it or abort it first",))
        boxes = self._bring_up(image, self.t.config.canary.canary_replicas, "canary")
        self._switch(self._split(stable, boxes, weight))
        self.on_line(f"canary {version_of(image)} gets {weight}% of the requests")

    def set_weight(self, weight: int) -> None:
        if not self.fleet.canary:
            raise StepFailed("there is no canary to weigh", ("start a canary first",))
        self._switch(self._split(self.fleet.stable, self.fleet.canary, weight))

    def promote(self) -> None:
        canary, old = self.fleet.canary, self.fleet.stable
        if not canary:
            raise StepFailed("there is no canary to promote", ("start a canary first",))
        image = canary[0].image
        wanted = len(old) or self.t.target.replicas
        extra = self._bring_up(image, wanted - len(canary), "stable") if wanted > len(canary) else []
        self._switch(self._split(canary + extra, [], 0))
        self._retire(old, "kept as the previous revision")
        self._prune(image)
        self.on_line(f"promoted {version_of(image)}: it serves all requests")

    def abort(self) -> None:
        canary = self.fleet.canary
        if not canary:
            self.on_line("there is no canary: nothing to abort")
            return
        self._switch(self._split(self.fleet.stable, [], 0))
        self._drain(canary)
        for box in canary:
            self.api.remove_container(box.id, force=True)
            self.on_line(f"removed canary {box.line()}")

    def scale(self, replicas: int) -> None:
        stable, canary = self.fleet.stable, self.fleet.canary
        if not stable:
            raise StepFailed("nothing is deployed to scale", ("deploy first",))
        if replicas > len(stable):
            extra = self._bring_up(stable[0].image, replicas - len(stable), "stable")
            self._switch(self._split(stable + extra, canary, self.fleet.weight))
        elif replicas < len(stable):
            keep, drop = stable[:replicas], stable[replicas:]
            self._switch(self._split(keep, canary, self.fleet.weight))
            self._drain(drop)
            for box in drop:
                self.api.remove_container(box.id, force=True)
                self.on_line(f"removed {box.line()}")
        self.on_line(f"{replicas} stable container(s)")

    def stop(self) -> None:
        for box in self.fleet.stable + self.fleet.canary:
            if box.running:
                self.api.stop(box.id, timeout=self.t.target.stop_timeout_s)
                self.on_line(f"stopped {box.line()}")
        self.on_line(f"stopped; nginx still points at them ({self.fleet.traffic()})")

    def start(self) -> None:
        boxes = self.fleet.stable + self.fleet.canary
        if not boxes:
            raise StepFailed("nothing is deployed to start", ("deploy first",))
        for box in boxes:
            if not box.running:
                self.api.start(box.id)
                self.on_line(f"started {box.line()}")
        self._wait_healthy(boxes)

    # --- the steps --------------------------------------------------------------------------

    def _split(self, stable: list[Box], canary: list[Box], weight: int) -> list[Server]:
        return split([(b.port, b.version) for b in stable], [(b.port, b.version) for b in canary],
                     weight if canary else 0)

    def _bring_up(self, image: str, count: int, role: str) -> list[Box]:
        """`count` healthy containers of `image`, beside what serves; at the deadline, none (undone)."""
        reuse, others = choose(self.fleet, image, count, self.t.as_configured)
        self._retire(others, "left over from an interrupted attempt")
        if len(reuse) < count:
            self._pull(image)
        for box in reuse:
            if box.running:
                self.fresh.append((box, "reused"))
                self.on_line(f"reusing {box.line()}, left running by an interrupted attempt")
            else:
                self.api.start(box.id)
                self.fresh.append((box, "started"))
                self.on_line(f"started {box.line()} again: no pull")
        for port in self.t.free_ports(self.t._used_ports(self.api), count - len(reuse)):
            self._create(image, role, port)
        boxes = [b for b, _how in self.fresh]
        self._wait_healthy(boxes)
        return boxes

    def _pull(self, image: str) -> None:
        """By the digest when the reference pins one (repo:tag@sha256:...): the engine then knows the
        image by repo@sha256:..., which is how it finds it again for the pinned reference."""
        repository, tag, digest = parts_of(image)
        self.on_line(f"pulling {image}")
        build = self.t.config.build
        auth = ({"username": build.registry_username, "password": build.registry_password.get_secret_value()}
                if build.registry_username and build.registry_password else None)
        try:
            pulled = self.api.pull(repository, tag=digest or tag or "latest", stream=True, decode=True,
                                   auth_config=auth)
            for chunk in pulled:
                if "error" in chunk or "errorDetail" in chunk:
                    raise self._pull_failed(image, str(chunk.get("error") or chunk.get("errorDetail")))
        except docker.errors.APIError as err:
            raise self._pull_failed(image, str(err.explanation or err)) from None

    def _pull_failed(self, image: str, detail: str) -> StepFailed:
        cause = f"{image} is not in the registry" if _NOT_FOUND.search(detail) else f"pulling {image} failed"
        return StepFailed(f"{cause} ({_short(mask(detail), 200)}); {self.state()}",
                          ("push the image first (release-console push), or check the tag",
                           "check that the Docker host can reach the registry and log in to it"))

    def _create(self, image: str, role: str, port: int) -> Box:
        t = self.t
        host_network = t.target.network == "host"
        labels = {APP: t.config.app.name, ENV: t.env, ROLE: role, PORT: str(port), VERSION: version_of(image)}
        host_config = self.api.create_host_config(
            network_mode=t.target.network, restart_policy={"Name": "unless-stopped"},
            port_bindings=None if host_network else {t.config.app.port: ("127.0.0.1", port)},
        )
        created = self.api.create_container(
            image, name=t.name(port, role), environment=t.environment(version_of(image), port), labels=labels,
            host_config=host_config, ports=None if host_network else [t.config.app.port], detach=True,
        )
        box = Box(created["Id"], t.name(port, role), port, image, version_of(image), "created", None, 0, "")
        self.fresh.append((box, "created"))  # removed on failure, even if it does not start
        self.api.start(created["Id"])
        self.on_line(f"started {box.line()} as {role}")
        return box

    def _wait_healthy(self, boxes: list[Box]) -> None:
        timeout = self.t.target.ready_timeout_s
        waiting = {b.id: b for b in boxes}
        self.on_line(f"waiting up to {timeout}s for {', '.join(b.name for b in boxes)} to be healthy")
        start = time.monotonic()
        last, interval = "", FIRST_POLL_S
        while waiting:
            for box in list(waiting.values()):
                healthy, last = self._health(box)
                if healthy:
                    del waiting[box.id]
                    self.on_line(f"{box.name} healthy after {time.monotonic() - start:.1f}s")
            if waiting and time.monotonic() - start > timeout:
                undone = self._undo()
                names = ", ".join(b.line() for b in waiting.values())
                raise StepFailed(f"{names} did not become healthy within {timeout}s ({_short(last, 200)});"
                                 f" {undone}; {self.state()}",
                                 ("look at the container's log and fix the image", "raise ready_timeout_s"))
            if waiting:
                pause(interval)
                interval = min(interval * 2, POLL_S)

    def _health(self, box: Box) -> tuple[bool, str]:
        """Healthy once GET health_path answers 2xx on the container's host port, probed from its start:
        the very address nginx sends requests to. The image's HEALTHCHECK is not waited for (its first
        run comes one interval after the start, 2 s for the sample app, and it probes from inside the
        container, not the path traffic takes); its word only counts against: unhealthy is not ready.
        An exited container fails the wait at once."""
        url = f"http://127.0.0.1:{box.port}{self.t.config.app.health_path}"
        with _probing():
            answered = self.t.host.http_ok(url)
        state = self.api.inspect_container(box.id)["State"]
        if state["Status"] in ("exited", "dead"):
            logs = self.api.logs(box.id, tail=5).decode("utf-8", "replace").strip()
            undone = self._undo()
            raise StepFailed(f"{box.line()} exited with code {state.get('ExitCode')} before it was healthy"
                             f" (last log lines: {_short(logs, 300) or 'none'}); {undone}; {self.state()}",
                             ("look at the container's log and fix the image or its environment",))
        probe = f"GET {url} {'answered 2xx' if answered else 'did not answer 2xx'}"
        health = state.get("Health")
        if not health:
            return answered, probe
        log = (health.get("Log") or [{}])[-1]
        said = f"{probe}; health {health['Status']}: {str(log.get('Output', '')).strip()}".rstrip(": ")
        return answered and health["Status"] != "unhealthy", said

    def put_back(self) -> str:
        """_undo for a cancel: says so, rather than fail again, when the engine refuses or is gone."""
        try:
            return self._undo()
        except (docker.errors.APIError, HostLost, *_BROKEN) as err:
            names = ", ".join(b.line() for b, _how in self.fresh)
            return f"could NOT put back {names} ({_short(str(err), 200)}): the next attempt reuses or stops it"

    def _undo(self) -> str:
        """Put back what this attempt started; say what was done."""
        done = []
        for box, how in reversed(self.fresh):
            if how == "started":
                self.api.stop(box.id, timeout=self.t.target.stop_timeout_s)
                done.append(f"stopped {box.name} again")
            else:
                self.api.remove_container(box.id, force=True)
                done.append(f"removed {box.name}")
        self.fresh = []
        return ", ".join(done) or "nothing to undo"

    def _switch(self, servers: list[Server]) -> None:
        self.switch_state = "unknown"
        try:
            with shielded():  # a cancel waits for the reload: a file written but not reloaded is no state to leave
                self.t.upstream.switch(servers, self.on_line, self.fleet.text)
        except StepFailed as err:  # the reload failed and the old file is back
            self.switch_state = "before"
            raise StepFailed(f"{err}; {self._undo()}; {self.state()}", err.next_options) from None
        self.switch_state, self.after, self.fresh = "after", tuple(servers), []
        self._name_by_role(servers)

    def _name_by_role(self, servers: list[Server]) -> None:
        """A promoted canary is stable now: its name says so (what docker_sd relabelling reads)."""
        roles = {server.port: server.role for server in servers if not server.down}
        filters = {"label": [f"{APP}={self.t.config.app.name}", f"{ENV}={self.t.env}"]}
        for container in self.api.containers(all=True, filters=filters):
            port = int(container["Labels"].get(PORT, 0))
            wanted = self.t.name(port, roles[port]) if port in roles else None
            if wanted and container["Names"][0].lstrip("/") != wanted:
                try:
                    self.api.rename(container["Id"], wanted)
                except docker.errors.APIError as err:  # a name is a convenience: traffic is switched already
                    self.on_line(f"could not rename {container['Names'][0]} to {wanted}: {_short(str(err))}")

    def _drain(self, boxes: list[Box]) -> None:
        """After a switch away from `boxes`: until nginx has no connection left to them (requests its old
        workers began run to their end), counted on the host, once the reload has surely taken effect
        (NEW_WORKERS_S, DRAIN_SETTLE_S); at most drain_s in all. If nothing can be counted (`ss` cannot
        run), drain_s whole, as a fixed wait."""
        limit = self.t.target.drain_s
        if not limit or not boxes:
            return
        ports = {b.port for b in boxes}
        serving = {s.port for s in self.after if not s.down} - ports
        start = time.monotonic()
        new_seen: float | None = None
        while True:
            with _probing():
                counts = connections_to(self.t.host, sorted(ports | serving))
            now = time.monotonic()
            elapsed = now - start
            if counts is None:
                self.on_line(f"draining for {limit:g}s (`ss` could not count connections on {self.t.host.where})")
                pause(max(limit - elapsed, 0.0))
                return
            if new_seen is None and any(counts[p] for p in serving):
                new_seen = now
            left = sum(counts[p] for p in ports)
            effective = (now - new_seen >= NEW_WORKERS_S) if new_seen is not None else elapsed >= DRAIN_SETTLE_S
            if left == 0 and effective:
                self.on_line(f"drained after {elapsed:.2f}s: nginx has no connection left to"
                             f" {', '.join(f':{p}' for p in sorted(ports))}")
                return
            if elapsed >= limit:
                self.on_line(f"drain_s ({limit:g}s) is over with {left} connection(s) still open: stopping anyway")
                return
            pause(min(DRAIN_POLL_S, limit - elapsed))

    def _retire(self, boxes: list[Box], why: str) -> None:
        live = [b for b in boxes if b.running]
        if live:
            self._drain(live)
        for box in live:
            self.api.stop(box.id, timeout=self.t.target.stop_timeout_s)
            self.on_line(f"stopped {box.line()}: {why}")

    def _prune(self, current: str) -> None:
        fleet = self.t._read(self.api, self.t.upstream.render(list(self.after)))
        keep = {b.id for b in fleet.previous(current)}
        removed = {b.image for b in fleet.stopped if b.id not in keep}
        for box in fleet.stopped:
            if box.id not in keep:
                self.api.remove_container(box.id, force=True)
                self.on_line(f"pruned {box.line()}")
        # Only the images those containers ran, when nothing uses them any more: an engine-wide
        # prune of dangling images would delete the parents of a build running beside us.
        used = {b.image for b in fleet.boxes if b.id in keep or b.running}
        for image in sorted(removed - used):
            try:
                self.api.remove_image(image)
                self.on_line(f"pruned image {image}")
            except docker.errors.APIError as err:  # in use by something else on the host: it stays
                self.on_line(f"kept image {image}: {_short(str(err), 120)}")
