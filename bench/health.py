"""Dependency health polling: CPU and terminal output, side by side with the health view hidden.

1. The console on a real pseudo-terminal of 80x24 (`release-console --sandbox`), left alone for the
   window (default 60 s) in each state: the environments list with health polled every 10 s (the
   default) and every 1 s (ten times the default); the detail screen (h) open, likewise; and,
   as the yardstick's baseline, health hidden: the poll never runs then (the TUI polls only while the
   list is in sight), measured as a console whose [health] interval_s is an hour. CPU is the console's
   (utime + stime of all its threads, /proc/<pid>/stat) over wall time; output is every byte it
   wrote to the terminal. Yardsticks: < 1 % of a core for polling when idle, < 2 KB/s of output.
2. The real probes' own CPU, which the sandbox's made-up readings do not cost: rounds of the three
   probes (an HTTP /api/health in this process, a private PostgreSQL 15 cluster and a private
   redis-server started here, both on loopback), the calling thread's CPU time per round, and what
   that is as a share of a core at the default 10 s interval.

    uv run python bench/health.py [seconds] [rounds] [state]  # default: 60 s windows, 50 rounds, every state

(`state`: only the states whose name holds it, beside the baseline.)
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import CONSOLE, Term, cpu_seconds, sandbox_config
from pydantic import SecretStr
from rig.helpers import free_port
from rig.redis_server import PrivateRedis

from services.adapters.health_probes import probe_api, probe_postgres, probe_redis
from services.adapters.resp import RespClient

CPU_YARDSTICK, OUTPUT_YARDSTICK = 1.0, 2 * 1024  # % of one core; bytes per second
# state -> ([health] interval_s, the key pressed once the list is drawn)
STATES = {"health shown, polled every 10 s (default)": (10, ""), "health shown, polled every 1 s": (1, ""),
          "detail screen open (h), polled every 10 s (default)": (10, "h"),
          "detail screen open (h), polled every 1 s": (1, "h"), "health hidden: not polled (baseline)": (3600, "")}
PGBIN = Path("/usr/lib/postgresql/15/bin")


def console_window(interval_s: int, key: str, seconds: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="rc-bench-health-") as scratch:
        config = sandbox_config(Path(scratch))
        config.write_text(config.read_text().replace("interval_s = 10", f"interval_s = {interval_s}", 1))
        argv = [*CONSOLE, "--sandbox", "--config", str(config)]
        term = Term(argv, 24, 80, {"XDG_STATE_HOME": f"{scratch}/state", "XDG_CONFIG_HOME": f"{scratch}/cfg"})
        try:
            term.wait_for("health  ", 60)  # the first poll is drawn in the list's detail
            if key:
                mark = len(term.output)
                term.send(key.encode())
                term.wait_for("Health: ", 10, mark)
            term.pump(3)  # settle
            started, before = time.monotonic(), cpu_seconds(term.pid)
            term.pump(seconds)
            elapsed = time.monotonic() - started
            used = cpu_seconds(term.pid) - before
            if term.closed:
                raise RuntimeError("the console exited during the window")
            return 100 * used / elapsed, term.bytes_between(started, started + elapsed) / elapsed
        finally:
            term.stop()


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the handler's API
        body = json.dumps({"status": "ok", "version": "1.4.2"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def private_postgres(directory: Path) -> tuple[str, list[str]]:
    """initdb + pg_ctl start as the postgres user, trust on loopback: (its DSN, the stop command)."""
    directory.parent.chmod(0o755)  # a TemporaryDirectory is 0700: the postgres user must reach its cluster
    directory.mkdir()
    shutil.chown(directory, "postgres", "postgres")
    data, port = directory / "data", free_port()
    run = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run, str(PGBIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*run, str(PGBIN / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-w", "-t", "60",
                    "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {directory}", "start"],
                   check=True, capture_output=True, timeout=120)
    return (f"postgresql://postgres@127.0.0.1:{port}/postgres",
            [*run, str(PGBIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])


def probe_rounds(rounds: int) -> float:
    """CPU seconds of the calling thread per round of the three real probes."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/health"
    with tempfile.TemporaryDirectory(prefix="rc-bench-health-probes-") as scratch:
        redis = PrivateRedis(Path(scratch) / "redis")
        dsn, stop = private_postgres(Path(scratch) / "pg")
        try:
            readings = [probe_api(url, 2), probe_postgres(dsn, 2), probe_redis(RespClient(SecretStr(redis.url), 2))]
            if not all(r.reachable for r in readings):
                raise RuntimeError(f"a probe failed: {[r.error for r in readings]}")
            started = time.thread_time()
            for _ in range(rounds):
                probe_api(url, 2)
                probe_postgres(dsn, 2)
                probe_redis(RespClient(SecretStr(redis.url), 2))
            return (time.thread_time() - started) / rounds
        finally:
            redis.stop()
            subprocess.run(stop, check=False, capture_output=True, timeout=60)
            server.shutdown()


def main(seconds: float = 60.0, rounds: int = 50, only: str = "") -> None:
    figures = {}
    for state, (interval_s, key) in STATES.items():
        if only and only not in state and "baseline" not in state:
            continue
        figures[state] = console_window(interval_s, key, seconds)
        print(f"{state}: {figures[state][0]:.2f} % of a core, {figures[state][1] / 1024:.2f} KB/s", flush=True)
    base_cpu = figures["health hidden: not polled (baseline)"][0]
    print(f"\n80x24, sandbox, idle, {seconds:g} s windows; yardsticks: polling < {CPU_YARDSTICK:g} % of a core"
          f" over the hidden baseline, output < {OUTPUT_YARDSTICK / 1024:g} KB/s\n")
    print("| state | CPU, % of one core | polling's share (vs hidden) | output to the terminal | vs yardsticks |")
    print("| --- | --- | --- | --- | --- |")
    for state, (cpu, output) in figures.items():
        share = cpu - base_cpu
        ok = share < CPU_YARDSTICK and output < OUTPUT_YARDSTICK
        print(f"| {state} | {cpu:.2f} | {share:+.2f} | {output / 1024:.2f} KB/s | {'under' if ok else '**over**'} |")
    per_round = probe_rounds(rounds)
    print(f"\nreal probes (HTTP + PostgreSQL + Redis, loopback), {rounds} rounds: {per_round * 1000:.1f} ms of CPU a"
          f" round = {100 * per_round / 10:.2f} % of a core at the default 10 s interval"
          f" ({100 * per_round:.2f} % at 1 s)")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0, int(sys.argv[2]) if len(sys.argv) > 2 else 50,
         sys.argv[3] if len(sys.argv) > 3 else "")
