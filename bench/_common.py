"""Helpers shared by the bench scripts: a process on a real pseudo-terminal, the console's sandbox
canary driven by its keys, CPU time from /proc, and a private nginx."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

if TYPE_CHECKING:
    from conftest import Nginx

ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[=>]")
CONSOLE = [str(ROOT / ".venv" / "bin" / "release-console")]
CTRL_U = b"\x15"  # Textual's Input: delete everything left of the cursor


def spawn(argv: list[str], rows: int, columns: int, env: dict[str, str], cwd: Path = ROOT) -> tuple[int, int]:
    """Start argv in `cwd` (ROOT) on a new pty of rows x columns: (pid, the master's fd)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.environ.update({"TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows), **env})
        os.execv(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return pid, fd


class Term:
    """A process on a pty whose output is read all along (and counted, with when it arrived)."""

    def __init__(self, argv: list[str], rows: int, columns: int, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.pid, self.fd = spawn(argv, rows, columns, env, cwd)
        self.output = bytearray()
        self.arrivals: list[tuple[float, int]] = []  # (monotonic time, bytes) per read
        self.closed = False

    def pump(self, seconds: float) -> None:
        """Read whatever arrives for `seconds`."""
        deadline = time.monotonic() + seconds
        while not self.closed and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.fd], [], [], min(left, 0.1))
            if readable:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    self.closed = True
                    break
                self.output += chunk
                self.arrivals.append((time.monotonic(), len(chunk)))

    def wait_for(self, text: str, timeout: float, since: int = 0) -> None:
        """Until `text` is drawn (in the output from byte `since`, escape codes removed)."""
        deadline = time.monotonic() + timeout
        while text.encode() not in ANSI.sub(b"", bytes(self.output[since:])):
            if self.closed or time.monotonic() > deadline:
                tail = ANSI.sub(b"", bytes(self.output[-2000:])).decode(errors="replace")
                raise RuntimeError(f"{text!r} not drawn within {timeout}s; last output: {tail!r}")
            self.pump(0.1)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)
        self.pump(0.3)

    def bytes_between(self, start: float, end: float) -> int:
        return sum(n for at, n in self.arrivals if start <= at < end)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s), reading on so that it is not blocked writing a last frame."""
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            self.pump(0.1)
            if self.closed:
                time.sleep(0.1)
        os.close(self.fd)


def sandbox_config(directory: Path, duration_s: int = 7200) -> Path:
    """The example release.toml with a longer canary (default 2 h: 240 checks of 30 s), so that at
    --time-scale 30 a canary keeps sending samples at 1 Hz for 4 minutes."""
    text = (ROOT / "examples" / "food-management" / "release.toml").read_text()
    path = directory / "release.toml"
    path.write_text(text.replace("duration_s = 1800", f"duration_s = {duration_s}"))
    return path


def start_canary(term: Term, version: str = "1.4.2", first_check_s: float = 30) -> None:
    """c, the form's version replaced by `version`, Enter; until the first sample is drawn
    (within `first_check_s`: one check interval, in real time, plus the start).

    1.4.2 stays healthy in the sandbox (1.5.0 is rolled back at check 6)."""
    mark = len(term.output)
    term.send(b"c")
    term.wait_for("the tag to run as the canary", 20, mark)
    term.pump(1)  # the form's input takes focus just after its first frame
    term.send(CTRL_U)
    term.send(version.encode())
    mark = len(term.output)
    term.send(b"\r")
    term.wait_for(f"Canary {version} in", 30, mark)
    term.wait_for("share %", first_check_s, mark)  # the first check's values are in the table


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of a process (all its threads), or of one of its threads, from /proc."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_nginx(prefix: Path) -> Nginx:
    from conftest import Nginx
    from rig.helpers import free_port

    server = Nginx(prefix, free_port())
    server.write_config()
    subprocess.run(server.base, check=True, capture_output=True)
    return server


def docker_host_release(app: str, repo: str, server: Nginx, docker_url: str, low_port: int,
                        **target: object) -> dict[str, object]:
    """release.toml's data for one `production` on a Docker host target behind `server` (a private
    nginx): 20 host ports from `low_port`; `target` adds to or replaces the target's settings."""
    return {
        "app": {"name": app, "image": repo},
        "environments": {"production": {
            "api_url": server.url + "/api", "database_url": "postgresql://app:pw@127.0.0.1/food",
            "redis_url": "redis://127.0.0.1:6379/0",
            "target": {"kind": "docker", "docker_url": docker_url, "ports": [low_port, low_port + 19],
                       "env": {"LATENCY_MS": "0"},
                       "nginx": {"upstream_file": str(server.upstream_file), "reload": server.reload},
                       **target},
        }},
    }


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def private_postgres(directory: Path, durable: bool = False) -> tuple[str, Callable[[], None]]:
    """A private PostgreSQL 15 cluster in `directory` (initdb, then pg_ctl on a free loopback port):
    (a superuser DSN, its stop). With the rig's settings (fsync off, no synchronous commit), or with
    `durable` PostgreSQL's defaults, as a real server runs: every commit waits for its WAL flush.

    As root, the cluster runs as the `postgres` user (initdb refuses root), as tests/rig/run does."""
    from rig.helpers import free_port

    port, password = free_port(), os.urandom(12).hex()
    data, socket_dir = directory / "data", directory / "socket"
    socket_dir.mkdir(parents=True)
    (directory / "pwfile").write_text(password + "\n")
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", str(directory)], check=True)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-U", "rc_bench",
                    f"--pwfile={directory / 'pwfile'}", "--auth-local=trust", "--auth-host=scram-sha-256",
                    "-E", "UTF8", "--no-locale", "--no-sync"], check=True, capture_output=True)
    (directory / "pwfile").unlink()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir}"
    if not durable:
        options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
    subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(directory / "postgres.log"),
                    "-w", "-t", "60", "-o", options, "start"], check=True, capture_output=True)

    def stop() -> None:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       check=False, capture_output=True)

    return f"postgresql://rc_bench:{password}@127.0.0.1:{port}/postgres", stop
