"""The nginx split on a Docker host: the upstream file, its reload, and the host that runs them.

The console owns one file, `upstream_file`, holding one `upstream NAME { server ...; }` block
that the host's nginx includes. Each server line carries a comment saying whether it is a
stable or a canary container, so the file is the record of what serves traffic and of the
canary's weight. Writing it replaces it whole (a temp file, then a rename); `reload` (an
argument list) makes nginx pick it up gracefully: old workers finish their requests.

The file and the reload live on the Docker host: this machine for a unix:// docker_url, or
the host of an ssh://user@host:port docker_url, reached with the `ssh` binary and the user's
~/.ssh/config (keys, known_hosts). No shell on this side; a remote command is an argument
list quoted with shlex. The engine of an ssh:// host is reached through one `ssh -L` that
forwards its socket to a private local one, so the SDK talks to a unix socket; that ssh is
also the control master the file and reload commands share (OpenSSH multiplexing). It is made
on first use and kept while the console runs (the environment's target is kept by the service
container, and the environments pane's 2 s poll reuses it); made again if it dropped; ended by
close() when the console quits, or by itself once idle for PERSIST_S if the console died. One
ssh connection per environment, and no paramiko.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from services.core import processes
from services.core.masking import mask
from services.core.operations import Cancelled, StepFailed, current_cancel
from services.core.ports import OnLine
from services.core.references import NAME_CHARS, is_name

SSH_TIMEOUT_S = 60
TUNNEL_TIMEOUT_S = 20
REMOTE_DOCKER_SOCKET = "/var/run/docker.sock"
_APPLIED = re.compile(r"^# applied by release-console: stable=(?P<stable>\d+) canary=(?P<canary>\d+) "
                      r"weight=(?P<weight>\d+)$", re.M)
PERSIST_S = 300  # an ssh connection nobody closed (the console crashed) ends once idle this long
_SERVER = re.compile(r"^\s*server\s+(?P<addr>[^\s;]+):(?P<port>\d+)(?P<params>[^;]*);\s*#\s*(?P<role>stable|canary)\b")


class HostLost(Exception):
    """The connection to the Docker host dropped (ssh exited 255): nothing is known of the command's effect."""


@dataclass(frozen=True)
class Server:
    port: int
    role: str  # stable, canary
    weight: int = 1
    down: bool = False
    version: str = ""  # for the reader of the file only


def split(stable: list[tuple[int, str]], canary: list[tuple[int, str]], weight: int) -> list[Server]:
    """Servers that give the canary containers `weight` percent of the requests, the stable ones the rest.

    nginx weights are relative per server: with n stable and m canary servers, a stable one
    weighs (100 - w) * m and a canary one w * n. A side that gets 0% is marked down.
    """
    n, m = len(stable), len(canary)
    each_stable, each_canary = (100 - weight) * max(m, 1), weight * max(n, 1)
    common = math.gcd(each_stable, each_canary) or 1
    return [Server(port, "stable", max(each_stable // common, 1), each_stable == 0, v) for port, v in stable] + [
        Server(port, "canary", max(each_canary // common, 1), each_canary == 0, v) for port, v in canary
    ]


def canary_weight(servers: list[Server]) -> int:
    live = [s for s in servers if not s.down]
    total = sum(s.weight for s in live)
    return round(100 * sum(s.weight for s in live if s.role == "canary") / total) if total else 0


def render(upstream: str, servers: list[Server], owner: str) -> str:
    """The file's text. Every name and version in it is checked first, whatever config let through:
    a newline or a ';' in any of them would write nginx directives of its own."""
    _refuse_unsafe("upstream name", upstream)
    for part in owner.split(" "):
        _refuse_unsafe("app or environment name", part)
    for s in servers:
        if s.version:
            _refuse_unsafe("version", s.version)
    roles = [s.role for s in servers]
    lines = [f"# Written by release-console for {owner}: do not edit by hand, it is rewritten on every switch.",
             # What the console set, so a hand edit of the lines below shows as drift (applied()).
             f"# applied by release-console: stable={roles.count('stable')} canary={roles.count('canary')}"
             f" weight={canary_weight(servers)}",
             f"upstream {upstream} {{"]
    for s in servers:
        state = " down" if s.down else f" weight={s.weight}"
        lines.append(f"    server 127.0.0.1:{s.port}{state};  # {s.role} {s.version}".rstrip())
    lines.append("}")
    return "\n".join(lines) + "\n"


def _refuse_unsafe(what: str, value: str) -> None:
    if not is_name(value):
        raise StepFailed(f"refusing to write {what} {value!r} into the nginx upstream file: only {NAME_CHARS} is"
                         " allowed there", ("fix the name in release.toml", "deploy a version with a plain tag"))


def parse(text: str) -> list[Server]:
    """The servers of a file written by render(); lines without a stable/canary comment are not ours."""
    servers = []
    for line in text.splitlines():
        if found := _SERVER.match(line):
            params = found["params"].split()
            weight = next((int(p.split("=", 1)[1]) for p in params if p.startswith("weight=")), 1)
            rest = line.split("#", 1)[1].split()
            servers.append(Server(int(found["port"]), found["role"], weight, "down" in params,
                                  rest[1] if len(rest) > 1 else ""))
    return servers


@dataclass(frozen=True)
class Applied:
    """The split the console last wrote, from the file's header (see render)."""

    stable: int
    canary: int
    weight: int


def applied(text: str) -> Applied | None:
    """The split render() wrote into the file's header; None for a file without one (an older console's)."""
    found = _APPLIED.search(text)
    return Applied(int(found["stable"]), int(found["canary"]), int(found["weight"])) if found else None


# --- the Docker host: where the file is written and the reload runs --------------------------


class Host(Protocol):
    where: str  # "this host" or "ssh://user@host:port"

    def read(self, path: str) -> str | None: ...  # None: no such file
    def write(self, path: str, text: str) -> None: ...
    def remove(self, path: str) -> None: ...
    def run(self, argv: list[str]) -> tuple[int, str]: ...  # exit code, output (stdout and stderr)
    def http_ok(self, url: str) -> bool: ...  # GET answers 2xx within 2 s
    def engine(self, docker_url: str) -> AbstractContextManager[str]: ...  # a URL for the SDK, while open
    def close(self) -> None: ...  # ends a connection kept open (ssh), if any


class LocalHost:
    where = "this host"

    def engine(self, docker_url: str) -> AbstractContextManager[str]:
        return nullcontext(docker_url)

    def close(self) -> None:
        """Nothing is kept open."""

    def read(self, path: str) -> str | None:
        try:
            return Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StepFailed(f"cannot read {path}: {err.strerror}", ("check the file's permissions",)) from None

    def write(self, path: str, text: str) -> None:
        target = Path(path)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o600)  # private, as every file the console writes: nginx's master (root) reads it
            os.replace(tmp, target)
        except OSError as err:
            raise StepFailed(
                f"cannot write {path}: {err.strerror}",
                (f"let the console's user write {target.parent} (see the operations guide)",),
            ) from None

    def remove(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)

    def run(self, argv: list[str]) -> tuple[int, str]:
        try:
            done = processes.run(argv, SSH_TIMEOUT_S)
        except FileNotFoundError:
            return 127, f"command not found: {argv[0]}"
        except processes.TimedOut as err:  # a failed reload: the caller puts the old file back
            return 124, str(err)
        return done.code, (done.stdout + done.stderr).strip()

    def http_ok(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - http://127.0.0.1 only
                return 200 <= int(answer.status) < 300
        except (OSError, ValueError):
            return False


@dataclass
class _Master:
    """One ssh connection to a host (OpenSSH multiplexing): it forwards the Docker socket, and other ssh
    commands ride on it through its control socket. It runs in the background (ControlPersist), out of
    reach of a ctrl-c or a hang-up at the terminal; close() ends it, and if the console dies without
    closing it, it ends itself once idle for PERSIST_S."""

    hostname: str
    folder: str  # private (0700): the forwarded socket, the control socket, ssh's errors
    socket: str
    control: str

    @classmethod
    def connect(cls, options: list[str], hostname: str, where: str) -> _Master:
        """Connected, or HostLost (Cancelled on ctrl+x meanwhile). Not under the state dir: a socket's path
        has 108 bytes at most."""
        folder = tempfile.mkdtemp(prefix="rc-docker-ssh-")
        master = cls(hostname, folder, os.path.join(folder, "docker.sock"), os.path.join(folder, "ssh.control"))
        argv = [*options, "-nNT", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveCountMax=3",
                "-o", "ControlMaster=yes", "-o", f"ControlPath={master.control}", "-o", f"ControlPersist={PERSIST_S}",
                "-L", f"{master.socket}:{REMOTE_DOCKER_SOCKET}", "--", hostname]
        with open(os.path.join(folder, "ssh.err"), "w+", encoding="utf-8") as errors:
            # It goes to the background once connected and forwarding: this process then exits 0.
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                                       start_new_session=True)
            try:
                deadline = time.monotonic() + TUNNEL_TIMEOUT_S
                cancel = current_cancel()
                while process.poll() is None:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(f"cancelled by the operator while ssh to {where} was connecting")
                    if time.monotonic() > deadline:
                        raise HostLost(f"ssh to {where} did not connect within {TUNNEL_TIMEOUT_S}s")
                    time.sleep(0.02)
                if process.returncode != 0 or not os.path.exists(master.socket):
                    errors.seek(0)
                    raise HostLost(f"ssh to {where} failed: {' '.join(errors.read().split())[:300]}")
            except BaseException:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                master.close()
                raise
        return master

    def alive(self) -> bool:
        """Its control socket answers (a master that was killed leaves the file, refusing connections)."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(self.control)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def close(self) -> None:
        """`ssh -O exit`: the master ends (nothing to do if it is gone already); its folder goes."""
        try:
            subprocess.run(["ssh", "-o", f"ControlPath={self.control}", "-O", "exit", "--", self.hostname],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


class SshHost:
    """Commands on the host of an ssh://user@host:port URL, through the ssh binary, without prompts."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise ValueError(f"not an ssh://user@host[:port] URL: {mask(url)}")
        self.where = f"ssh://{parts.netloc}"
        self.argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=10"]
        if parts.username:
            self.argv += ["-l", parts.username]
        if parts.port:
            self.argv += ["-p", str(parts.port)]
        self.hostname = parts.hostname
        self.argv += ["--", parts.hostname]
        self._lock = threading.Lock()
        self._master: _Master | None = None
        self.connections = 0  # ssh connections made so far (the figures count them)

    def engine(self, docker_url: str) -> AbstractContextManager[str]:
        """unix://LOCAL, forwarded to the host's Docker socket by the one ssh connection (made if need be)."""
        return nullcontext(f"unix://{self._connected().socket}")

    def _connected(self) -> _Master:
        """The host's one ssh connection: `ssh -N -L` forwarding the Docker socket to a private local one,
        and the control master every command shares. Made on first use, again if it dropped; close() ends it."""
        with self._lock:
            if self._master is not None and self._master.alive():
                return self._master
            if self._master is not None:
                self._master.close()
            self._master = _Master.connect(self.argv[:-2], self.hostname, self.where)
            self.connections += 1
            return self._master

    @property
    def control_path(self) -> str | None:
        """The connection's control socket (`ssh -O check -o ControlPath=...`), while there is one."""
        master = self._master
        return master.control if master else None

    def close(self) -> None:
        """End the ssh connection (the console quits: Services.close()); the next use connects again."""
        with self._lock:
            master, self._master = self._master, None
        if master is not None:
            master.close()

    def _ssh(self, remote: str, stdin: str | None = None) -> tuple[int, str, str]:
        """Run `remote` on the host over the one connection (ssh connects on its own if that just dropped)."""
        control = self._connected().control
        shared = ["-o", "ControlMaster=no", "-o", f"ControlPath={control}"]
        try:
            done = processes.run([*self.argv[:1], *shared, *self.argv[1:], remote], SSH_TIMEOUT_S, stdin_text=stdin,
                                 what=f"ssh to {self.where}")
        except FileNotFoundError:
            raise StepFailed("the ssh client is not installed on this machine", ("apt-get install openssh-client",)
                             ) from None
        except processes.TimedOut as err:
            raise HostLost(str(err)) from None
        if done.code == 255:
            raise HostLost(f"ssh to {self.where} failed: {' '.join(done.stderr.split())[:300]}")
        return done.code, done.stdout, done.stderr

    def read(self, path: str) -> str | None:
        code, out, err = self._ssh(shlex.join(["cat", "--", path]))
        if code == 0:
            return out
        if "No such file" in err:
            return None
        raise StepFailed(f"cannot read {path} on {self.where}: {err.strip()}", ("check the file's permissions",))

    def write(self, path: str, text: str) -> None:
        tmp = f"{path}.rc-new"
        # umask 077: created 0600 whatever the login's umask, as the local write is; mv keeps the mode.
        remote = (f"umask 077 && {shlex.join(['dd', f'of={tmp}', 'status=none'])}"
                  f" && {shlex.join(['mv', '-f', '--', tmp, path])}")
        code, _out, err = self._ssh(remote, stdin=text)
        if code != 0:
            raise StepFailed(f"cannot write {path} on {self.where}: {err.strip()}",
                             (f"let {self.where}'s user write the upstream file's folder (see the operations guide)",))

    def remove(self, path: str) -> None:
        code, _out, err = self._ssh(shlex.join(["rm", "-f", "--", path]))
        if code != 0:
            raise StepFailed(f"cannot remove {path} on {self.where}: {err.strip()}")

    def run(self, argv: list[str]) -> tuple[int, str]:
        code, out, err = self._ssh(shlex.join(argv))
        return code, (out + err).strip()

    def http_ok(self, url: str) -> bool:
        code, _out, _err = self._ssh(shlex.join(["curl", "-fsS", "-o", "/dev/null", "-m", "2", url]))
        return code == 0


def listening_ports(host: Host) -> set[int]:
    """TCP ports something listens on, on the host: `ss -Hltn` (iproute2); empty if it cannot run.

    Not /proc/net/tcp: behind a busy nginx it lists tens of thousands of TIME_WAIT sockets.
    """
    code, output = host.run(["ss", "-Hltn"])
    if code != 0:
        return set()
    ports = set()
    for row in output.splitlines():
        fields = row.split()
        if len(fields) > 3 and fields[3].rsplit(":", 1)[-1].isdigit():
            ports.add(int(fields[3].rsplit(":", 1)[1]))
    return ports


def connections_to(host: Host, ports: list[int]) -> dict[int, int] | None:
    """TCP connections open or opening to 127.0.0.1:PORT, per port of `ports`, on the host: nginx's requests
    to those upstream servers in flight (and its idle keepalive ones). `ss` (iproute2), run as an argument
    list like every remote command; None if it cannot run (then nothing can be counted).

    The client side (dport) only: nginx runs on the Docker host (the upstream file names 127.0.0.1), so
    each of its upstream connections shows there once, whatever network the container is on."""
    counts = dict.fromkeys(sorted(set(ports)), 0)
    if not counts:
        return counts
    ports_filter = [word for port in counts for word in ("or", "dport", "=", f":{port}")][1:]
    code, output = host.run(["ss", "-Htn", "state", "established", "state", "syn-sent",
                             "dst", "127.0.0.1", "(", *ports_filter, ")"])
    if code != 0:
        return None
    for row in output.splitlines():
        fields = row.split()
        peer = fields[-1].rsplit(":", 1)[-1] if fields else ""
        if peer.isdigit() and int(peer) in counts:
            counts[int(peer)] += 1
    return counts


def host_for(docker_url: str) -> Host:
    return SshHost(docker_url) if docker_url.startswith("ssh://") else LocalHost()


# --- the upstream file and its reload --------------------------------------------------------


class Upstream:
    """One upstream file on one host: read, and switch (write + reload, put back on failure)."""

    def __init__(self, host: Host, path: str, name: str, reload: list[str], owner: str) -> None:
        self.host = host
        self.path = path
        self.name = name
        self.reload_argv = list(reload)
        self.owner = owner
        render(name, [], owner)  # refuses a name that could inject directives, before anything runs

    def read(self) -> tuple[str | None, list[Server]]:
        text = self.host.read(self.path)
        return text, parse(text or "")

    def render(self, servers: list[Server]) -> str:
        return render(self.name, servers, self.owner)

    def switch(self, servers: list[Server], on_line: OnLine, old: str | None) -> None:
        """Write the servers and reload nginx; if the reload fails, put `old` (the file as read) back and reload."""
        new = self.render(servers)
        self.host.write(self.path, new)
        code, output = self.host.run(self.reload_argv)
        if code == 0:
            on_line(f"nginx reloaded: upstream {self.name} -> " + ", ".join(_describe(s) for s in servers))
            return
        detail = " ".join(output.split())[-400:] or f"exit code {code}"
        if old is None:
            self.host.remove(self.path)
            put_back = f"{self.path} is removed again (there was none before)"
        else:
            self.host.write(self.path, old)
            again, again_output = self.host.run(self.reload_argv)
            put_back = f"the old {self.path} is back" + (
                "" if again == 0 else f" (its reload failed too: {' '.join(again_output.split())[-200:]})")
        raise StepFailed(
            f"nginx reload failed on {self.host.where} ({shlex.join(self.reload_argv)}): {detail}; {put_back}",
            ("check the nginx config: nginx -t",
             "check that the console may run the reload (see the operations guide)"),
        )


def _describe(server: Server) -> str:
    state = "down" if server.down else f"weight {server.weight}"
    return f"{server.role} {server.version} :{server.port} ({state})".replace("  ", " ")
