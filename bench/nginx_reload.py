"""How long after `nginx -s reload` returns do nginx's old workers still send new requests to the old upstream?

The Docker host target's drain trusts a count of 0 connections to the old container only once the
reload has surely taken effect (NEW_WORKERS_S after nginx is seen sending to the new container, else
DRAIN_SETTLE_S; docker_target.py): an old container stopped sooner may still get requests from old
workers, which fail. This measures that
window on the rig's nginx (the tests' config: 2 workers): two `busybox httpd` upstreams, each
answering its own name; requests one after another through nginx (a new connection each) all along;
the upstream file switched from one to the other `rounds` times, 0.4 s apart. For each switch: when
the last request that the old upstream answered was sent, after the reload returned.

    uv run python bench/nginx_reload.py [rounds]     # default 30; needs nginx and busybox (the rig's)
"""

from __future__ import annotations

import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _common import start_nginx  # noqa: E402
from rig.helpers import free_port  # noqa: E402

from services.adapters.docker_target import DRAIN_SETTLE_S, NEW_WORKERS_S  # noqa: E402


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with tempfile.TemporaryDirectory(prefix="rc-bench-reload-") as scratch:
        work = Path(scratch)
        ports, servers = [free_port(), free_port()], []
        for name, port in zip("ab", ports, strict=True):
            (work / name).mkdir()
            (work / name / "name").write_text(name)
            servers.append(subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}",
                                             "-h", str(work / name)]))
        nginx = start_nginx(work / "nginx")
        sent: list[tuple[float, str]] = []  # (when sent, who answered)
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                at = time.monotonic()
                connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=5)
                try:
                    connection.request("GET", "/name")
                    answer = connection.getresponse()
                    sent.append((at, answer.read().decode() if answer.status == 200 else f"HTTP {answer.status}"))
                except OSError as err:
                    sent.append((at, type(err).__name__))
                finally:
                    connection.close()

        def point(port: int) -> None:
            nginx.upstream_file.write_text(f"upstream {nginx.upstream} {{\n    server 127.0.0.1:{port};\n}}\n")
            subprocess.run(nginx.reload, check=True, capture_output=True)

        windows = []
        try:
            point(ports[0])
            time.sleep(0.5)
            thread = threading.Thread(target=client, daemon=True)
            thread.start()
            for n in range(rounds):
                time.sleep(0.4)
                old = "ab"[n % 2]
                point(ports[(n + 1) % 2])
                returned = time.monotonic()
                time.sleep(0.6)
                late = [at for at, who in sent if at >= returned and who == old]
                if late:
                    windows.append(max(late) - returned)
            stop.set()
            thread.join(10)
        finally:
            subprocess.run([*nginx.base, "-s", "stop"], capture_output=True, check=False)
            for server in servers:
                server.kill()
                server.wait()
    failed = [who for _at, who in sent if who not in ("a", "b")]
    ms = sorted(round(1000 * w) for w in windows) or [0]
    print(f"{rounds} reloads, {len(sent)} requests, {len(failed)} failed;"
          f" {rounds - len(windows)} reloads with no request to the old upstream after the reload returned")
    print(f"the last request the old upstream answered, sent after the reload returned: median"
          f" {statistics.median(ms):g} ms, max {max(ms)} ms (NEW_WORKERS_S {1000 * NEW_WORKERS_S:.0f} ms,"
          f" DRAIN_SETTLE_S {1000 * DRAIN_SETTLE_S:.0f} ms)")
    print("all (ms): " + ", ".join(map(str, ms)))


if __name__ == "__main__":
    main()
