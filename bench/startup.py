"""Start-up: time to the first painted frame, to ready and to live, and peak memory, the console vs a
bare Textual app.

Each run starts a fresh process on a real pseudo-terminal (80x24), the way an operator's ssh
session would, and the contenders alternate in the same run:

- "first frame": the environments pane's title is drawn;
- "ready": the environments list shows production's version: the list as last seen
  (console/last_seen.py, marked stale) when one is kept, else the live list;
- "live": the live poll has answered: production's version drawn again after the main screen's
  build-log hint;
- peak RSS: the child's max resident memory when it is killed, once at ready and once at live.

The console starts cold (a new state dir: no list kept, as on a first start) and warm (the list kept by
the run before, as on every later start). For the bare app all of these are one frame.

    uv run python bench/startup.py [runs]
"""

from __future__ import annotations

import os
import select
import signal
import statistics
import sys
import tempfile
import time

from _common import ANSI, ROOT, spawn

FIRST = "Environments"
READY = "1.4.1"  # production's version in the list
HINT = "Nothing has run yet."  # the main screen's build-log hint
CONSOLE = [sys.executable, "-m", "console.cli", "--sandbox"]
BARE = [sys.executable, str(ROOT / "bench" / "bare_app.py")]


def run(argv: list[str], markers: list[str], state: str, timeout_s: float = 30.0) -> tuple[list[float], float]:
    """Seconds until each marker is on screen, each after the one before it in the output (so "live" is
    production's version drawn again after the main screen's hint); killed at the last. And the
    child's peak RSS in MiB."""
    started = time.perf_counter()
    pid, fd = spawn(argv, 24, 80, {"XDG_STATE_HOME": state})
    screen, seen, at = b"", [float("nan")] * len(markers), 0
    try:
        while time.perf_counter() - started < timeout_s and seen[-1] != seen[-1]:
            readable, _, _ = select.select([fd], [], [], 0.05)
            if readable:
                try:
                    screen += os.read(fd, 65536)
                except OSError:
                    break
                text = ANSI.sub(b"", screen)
                for i, marker in enumerate(markers):
                    if seen[i] != seen[i] and (i == 0 or seen[i - 1] == seen[i - 1]):
                        found = text.find(marker.encode(), at)
                        if found < 0:
                            break
                        seen[i], at = time.perf_counter() - started, found
    finally:
        os.kill(pid, signal.SIGTERM)
        _, _, usage = os.wait4(pid, 0)
        os.close(fd)
    if seen[-1] != seen[-1]:
        raise RuntimeError(f"{argv} drew no {markers[-1]!r} within {timeout_s}s")
    return seen, usage.ru_maxrss / 1024


def med(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main(runs: int = 7) -> None:
    bare: list[tuple[list[float], float]] = []
    cold: list[tuple[list[float], float]] = []
    warm: list[tuple[list[float], float]] = []
    warm_at_ready: list[float] = []
    with tempfile.TemporaryDirectory() as kept:
        run(CONSOLE, [FIRST, READY, HINT, READY], kept)  # warm the file cache, and keep a list
        run(BARE, [FIRST], kept)
        for _ in range(runs):
            bare.append(run(BARE, [FIRST], kept))
            with tempfile.TemporaryDirectory() as new:
                cold.append(run(CONSOLE, [FIRST, READY, HINT, READY], new))
            warm.append(run(CONSOLE, [FIRST, READY, HINT, READY], kept))
            warm_at_ready.append(run(CONSOLE, [FIRST, READY], kept)[1])
    frame = med([s[0][0] for s in bare])
    rss = max(s[1] for s in bare)
    print(f"start-up over {runs} runs each, alternating, 80x24 pty (medians; peak RSS: the largest)")
    print(f"  {'':<28} {'first frame':>11} {'ready':>7} {'live':>7} {'RSS ready':>10} {'RSS live':>9}")
    print(f"  {'bare Textual app':<28} {frame:9.0f}ms {frame:5.0f}ms {frame:5.0f}ms {rss:8.1f}MiB {rss:7.1f}MiB")
    for name, samples, at_ready in (("console, first start (cold)", cold, None),
                                    ("console, list kept (warm)", warm, warm_at_ready)):
        times = [med([s[0][i] for s in samples]) for i in (0, 1, 3)]
        live_rss = max(s[1] for s in samples)
        ready_rss = max(at_ready) if at_ready else live_rss
        print(f"  {name:<28} {times[0]:9.0f}ms {times[1]:5.0f}ms {times[2]:5.0f}ms {ready_rss:8.1f}MiB"
              f" {live_rss:7.1f}MiB")
        print(f"  {'  ratio vs bare':<28} {times[0] / frame:10.2f}x {times[1] / frame:6.2f}x {times[2] / frame:6.2f}x"
              f" {ready_rss / rss:9.2f}x {live_rss / rss:8.2f}x")
    print("  goals: ready <= 1.8x, RSS <= 1.4x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
