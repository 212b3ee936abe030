"""Terminal output over SSH: bytes per second with the canary pane live, vs 20 KB/s.

A real `ssh -tt root@127.0.0.1` session, the ssh client itself on a local pseudo-terminal of
80x24 or 120x40 (ssh passes the size and TERM=xterm-256color on), running the console in sandbox
mode on the other end: `release-console --sandbox --time-scale 30`, so the canary's 30 s check
interval is one second and the charts get a sample at 1 Hz. The canary is started with its keys
(c, version 1.4.2, Enter; it stays healthy) and the pane is left alone; then, for the window
(60 s), every byte the ssh client writes to its terminal is counted with the second it came in.
Also shown: what the ssh client read in that time (/proc/<pid>/io rchar: its socket, so about
the encrypted bytes on the wire; ssh's default, no compression) and the console's CPU.

    uv run python bench/ssh_output.py [runs] [seconds]     # default 3 runs of 60 s per size

The sshd is the rig's (127.0.0.1:2222, root by key; `bash tests/rig/run` starts it and puts a
marked block for it in ~/.ssh/config). When it is not running, this starts a private sshd on a
free port with the rig's keys and config from /tmp/release-console-rig-shared/sshd (left there by
any earlier rig run) and stops it afterwards.
"""

from __future__ import annotations

import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import CONSOLE, ROOT, Term, cpu_seconds, sandbox_config, start_canary
from rig.helpers import free_port, wait_until

YARDSTICK = 20 * 1024  # bytes per second
SIZES = ((24, 80), (40, 120))
SSHD = Path("/tmp/release-console-rig-shared/sshd")
CA = "/etc/ssl/certs/ca-certificates.crt"


def ssh_ok(options: list[str]) -> bool:
    argv = ["ssh", *options, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "root@127.0.0.1", "true"]
    return subprocess.run(argv, capture_output=True, timeout=20, check=False).returncode == 0


@contextmanager
def sshd(scratch: Path) -> Iterator[list[str]]:
    """ssh options that reach an sshd: the rig's, or a private one on the rig's keys."""
    if ssh_ok(["-p", "2222"]):
        yield ["-p", "2222"]
        return
    if not (SSHD / "sshd_config").is_file():
        sys.exit(f"no sshd on 127.0.0.1:2222 and no {SSHD}/sshd_config: run `bash tests/rig/run tests/rig` once")
    port = free_port()
    config = scratch / "sshd_config"
    lines = (SSHD / "sshd_config").read_text().splitlines()
    config.write_text("\n".join(f"Port {port}" if line.startswith("Port ") else
                                f"PidFile {scratch}/sshd.pid" if line.startswith("PidFile ") else line
                                for line in lines) + "\n")
    host_key = (SSHD / "host_ed25519_key.pub").read_text().split()[:2]
    (scratch / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_key)}\n")
    options = ["-p", str(port), "-i", str(SSHD / "client_ed25519_key"),
               "-o", f"UserKnownHostsFile={scratch / 'known_hosts'}"]
    Path("/run/sshd").mkdir(exist_ok=True)
    server = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(scratch / "sshd.log")])
    try:
        wait_until(lambda: ssh_ok(options), timeout=30, what=f"a private sshd on 127.0.0.1:{port}")
        print(f"(the rig's sshd is not running: a private one on 127.0.0.1:{port} with its keys)", flush=True)
        yield options
    finally:
        server.terminate()
        server.wait(10)


def measure(options: list[str], rows: int, columns: int, seconds: float, config: Path,
            scratch: Path) -> tuple[list[int], int, float]:
    """(bytes the terminal got in each second of the window, bytes the ssh client read, console CPU %)."""
    run = Path(tempfile.mkdtemp(prefix=f"{columns}x{rows}-", dir=scratch))  # a fresh journal: no resume offer
    pid_file = run / "console.pid"
    remote = (f"cd {shlex.quote(str(ROOT))} && echo $$ > {pid_file} && exec env SSL_CERT_FILE={CA}"
              f" XDG_STATE_HOME={run}/state XDG_CONFIG_HOME={run}/cfg"
              f" {shlex.join(CONSOLE)} --sandbox --time-scale 30 --config {config}")
    term = Term(["/usr/bin/ssh", "-tt", "-o", "LogLevel=ERROR", *options, "root@127.0.0.1", remote],
                rows, columns, {})
    console = 0
    try:
        term.wait_for("1.4.1", 60)  # the environments list is drawn, through ssh
        console = int(pid_file.read_text())
        start_canary(term)
        term.pump(3)
        read_before, cpu_before = _rchar(term.pid), cpu_seconds(console)
        started = time.monotonic()
        term.pump(seconds)
        ended = time.monotonic()
        read, cpu = _rchar(term.pid) - read_before, cpu_seconds(console) - cpu_before
        if term.closed:
            raise RuntimeError("the ssh session ended during the window")
    finally:
        if console:
            os.kill(console, signal.SIGTERM)  # the console this run started, on the other end
        term.stop()
    per_second = [term.bytes_between(started + s, started + s + 1) for s in range(int(seconds))]
    return per_second, read, 100 * cpu / (ended - started)


def _rchar(pid: int) -> int:
    return int(next(line for line in Path(f"/proc/{pid}/io").read_text().splitlines()
                    if line.startswith("rchar:")).split()[1])


def main(runs: int = 3, seconds: float = 60.0) -> None:
    results: dict[tuple[int, int], list[tuple[list[int], int, float]]] = {size: [] for size in SIZES}
    with tempfile.TemporaryDirectory(prefix="rc-bench-ssh-") as name:
        scratch = Path(name)
        scratch.chmod(0o755)
        config = sandbox_config(scratch)
        with sshd(scratch) as options:
            for run in range(1, runs + 1):
                for rows, columns in SIZES:
                    per_second, read, cpu = measure(options, rows, columns, seconds, config, scratch)
                    results[(rows, columns)].append((per_second, read, cpu))
                    print(f"run {run} {columns}x{rows}: {sum(per_second) / len(per_second) / 1024:.2f} KB/s to the"
                          f" terminal (busiest second {max(per_second) / 1024:.2f} KB), ssh client read"
                          f" {read / seconds / 1024:.2f} KB/s, console CPU {cpu:.2f} %", flush=True)
    print(f"\nterminal output over ssh, canary pane live at 1 Hz, {seconds:g} s windows, {runs} run(s) per size;"
          f" yardstick {YARDSTICK // 1024} KB/s\n")
    print("| terminal | output, mean KB/s (median of runs) | median second | busiest second | ssh client read |"
          " console CPU | vs yardstick |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (rows, columns), figures in results.items():
        means = [sum(f[0]) / len(f[0]) for f in figures]
        seconds_all = [b for f in figures for b in f[0]]
        mean = statistics.median(means)
        print(f"| {columns}x{rows} | {mean / 1024:.2f} ({min(means) / 1024:.2f}-{max(means) / 1024:.2f}) |"
              f" {statistics.median(seconds_all) / 1024:.2f} KB | {max(seconds_all) / 1024:.2f} KB |"
              f" {statistics.median(f[1] for f in figures) / seconds / 1024:.2f} KB/s |"
              f" {statistics.median(f[2] for f in figures):.2f} % |"
              f" {'under' if mean < YARDSTICK else '**over**'} ({mean / YARDSTICK:.2f}x) |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, float(sys.argv[2]) if len(sys.argv) > 2 else 60.0)
