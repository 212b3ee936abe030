"""Start-up: time to the first painted frame and peak memory, the console vs a bare Textual app.

Each run starts a fresh process on a real pseudo-terminal (80x24), the way an operator's
ssh session would. "First frame" stops when the environments pane's title is drawn; "ready"
when the environments list shows data (for the bare app, the same frame). Peak memory is
the child's max RSS once ready. Both apps are measured alternately in the same run.

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

MARKER = "Environments"
READY = {"console (sandbox)": "1.4.1", "bare Textual app": MARKER}  # production's version in the list
COMMANDS = {
    "console (sandbox)": [sys.executable, "-m", "console.cli", "--sandbox"],
    "bare Textual app": [sys.executable, str(ROOT / "bench" / "bare_app.py")],
}


def first_frame(argv: list[str], ready: str, state: str, timeout_s: float = 30.0) -> tuple[float, float, float]:
    """Seconds until MARKER is on screen, seconds until `ready` is, and the child's peak RSS in MiB."""
    started = time.perf_counter()
    pid, fd = spawn(argv, 24, 80, {"XDG_STATE_HOME": state})
    screen = b""
    elapsed = done = float("nan")
    try:
        while time.perf_counter() - started < timeout_s:
            readable, _, _ = select.select([fd], [], [], 0.05)
            if readable:
                try:
                    screen += os.read(fd, 65536)
                except OSError:
                    break
                text = ANSI.sub(b"", screen)
                if elapsed != elapsed and MARKER.encode() in text:
                    elapsed = time.perf_counter() - started
                if ready.encode() in text:
                    done = time.perf_counter() - started
                    break
    finally:
        os.kill(pid, signal.SIGTERM)
        _, _, usage = os.wait4(pid, 0)
        os.close(fd)
    if done != done:
        raise RuntimeError(f"{argv} drew no {ready!r} within {timeout_s}s")
    return elapsed, done, usage.ru_maxrss / 1024


def main(runs: int = 7) -> None:
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as state:
        for name, argv in COMMANDS.items():  # warm the file cache once for each
            first_frame(argv, READY[name], state)
        for _ in range(runs):
            for name, argv in COMMANDS.items():
                results[name].append(first_frame(argv, READY[name], state))
    print(f"start-up over {runs} runs each, alternating, 80x24 pty")
    medians = {}
    for name, samples in results.items():
        frames, readies = [s[0] for s in samples], [s[1] for s in samples]
        medians[name] = (statistics.median(frames), statistics.median(readies), max(s[2] for s in samples))
        print(f"  {name:<18} first frame {medians[name][0] * 1000:5.0f} ms"
              f" (min {min(frames) * 1000:.0f}, max {max(frames) * 1000:.0f}),"
              f" ready {medians[name][1] * 1000:5.0f} ms, peak RSS {medians[name][2]:5.1f} MiB")
    ours, bare = medians["console (sandbox)"], medians["bare Textual app"]
    print(f"  ratio vs bare: first frame {ours[0] / bare[0]:.2f}x (target <= 1.5x),"
          f" ready {ours[1] / bare[1]:.2f}x, peak memory {ours[2] / bare[2]:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
