"""Idle CPU: the console with a canary running and nobody typing, vs 5 % of one core.

Each run starts `release-console --sandbox --time-scale 30` on a real pseudo-terminal, so the
canary's 30 s check interval is one second: a sample for every chart at 1 Hz, the most the pane
redraws (one state runs at the strategy's own pace instead). The canary is
started the way an operator would (c, the version 1.4.2 typed into the form, Enter); 1.4.2 stays
healthy in the sandbox, and the config's canary lasts 2 h (4 real minutes), so samples keep
coming all through. Then, untouched for the window (60 s), the console's CPU time (utime +
stime of all its threads, /proc/<pid>/stat) over wall time, and the UI (main) thread's share,
in these states:

- canary pane live: the pane shown, its charts replotted as samples come; measured over checks
  ~5-65, and again over checks ~125-185, long after every chart holds its full window (60 samples)
  and with the trace 185 checks long;
- canary hidden, build log shown: 2 pressed; the build log shows the canary's log lines as they come;
- canary hidden, audit shown: 6 pressed; a pane the canary does not write to;
- canary pane live, 30 s checks in real time: --time-scale 1, the strategy's own cadence, so a
  sample comes every 30 s (two redraws in a window);
- no canary: the console just started, nothing running.

At 80x24 the pane shows one chart, at 120x40 all four. The bytes the console wrote to the
terminal are counted too (what an ssh session would carry).

    uv run python bench/idle_cpu.py [runs] [seconds]     # default 1 run, 60 s windows; every state, both sizes
    uv run python bench/idle_cpu.py 2 --state "canary pane live" --checkout /tmp/before --checkout .

`--state` (repeatable): only these states; `--size` (repeatable, 80x24 or 120x40): only these
terminals; `--checkout` (repeatable): the console of that checkout (its .venv), each in turn within
every run, so a before and an after are measured side by side under the same load.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from _common import ANSI, ROOT, Term, cpu_seconds, sandbox_config, start_canary

YARDSTICK = 5.0  # % of one core
SIZES = ((24, 80), (40, 120))
STRATEGY = "canary pane live, 30 s checks in real time"
# state -> (the pane key pressed once the canary runs, the sandbox's time scale)
STATES = {"canary pane live": ("", 30), "canary hidden, build log shown": ("2", 30),
          "canary hidden, audit shown": ("6", 30), STRATEGY: ("", 1), "no canary": ("", 30)}
FULL = "canary pane live, charts full"
CHECK = re.compile(rb"check (\d+)/\d+|(\d+)/\d+ checks")
Figure = tuple[float, float, float, int | None]  # % of a core, of which the UI thread, bytes/s, checks seen


def window(term: Term, seconds: float) -> Figure:
    mark, started = len(term.output), time.monotonic()
    before, ui_before = cpu_seconds(term.pid), cpu_seconds(term.pid, term.pid)
    term.pump(seconds)
    used, ui = cpu_seconds(term.pid) - before, cpu_seconds(term.pid, term.pid) - ui_before
    elapsed = time.monotonic() - started
    if term.closed:
        raise RuntimeError("the console exited during the window")
    first, last = _checks(bytes(term.output[:mark])), _checks(bytes(term.output))
    checks = last - first if first is not None and last is not None else None
    return 100 * used / elapsed, 100 * ui / elapsed, term.bytes_between(started, started + elapsed) / elapsed, checks


def measure(rows: int, columns: int, state: str, seconds: float, config: Path, checkout: Path = ROOT
            ) -> dict[str, Figure]:
    with tempfile.TemporaryDirectory(prefix="rc-bench-idle-") as scratch:
        key, time_scale = STATES[state]
        argv = [str(checkout / ".venv" / "bin" / "release-console"), "--sandbox", "--time-scale", str(time_scale),
                "--config", str(config)]
        term = Term(argv, rows, columns, {"XDG_STATE_HOME": f"{scratch}/state", "XDG_CONFIG_HOME": f"{scratch}/cfg"},
                    checkout)
        try:
            term.wait_for("1.4.1", 60)  # production's version: the environments list is drawn
            if state != "no canary":
                start_canary(term, first_check_s=30 if time_scale > 1 else 75)
            if key:
                mark = len(term.output)
                term.send(key.encode())
                term.wait_for(f"{key} {'Build log' if key == '2' else 'Audit'}", 10, mark)
            term.pump(3)  # settle: the first frames of the new state
            figures = {state: window(term, seconds)}
            if state == "canary pane live":
                term.pump(max(0.0, 125 - seconds - 8))  # until check ~125: 120 samples in every chart
                figures[FULL] = window(term, seconds)
        finally:
            term.stop()
    return figures


def _checks(output: bytes) -> int | None:
    """The last check number drawn (the canary title's countdown, or the runbook's progress)."""
    found = CHECK.findall(ANSI.sub(b"", output))
    return int(found[-1][0] or found[-1][1]) if found else None


def main(runs: int = 1, seconds: float = 60.0, states: list[str] | None = None,
         sizes: list[tuple[int, int]] | None = None, checkouts: list[Path] | None = None) -> None:
    results: dict[tuple[str, int, int, str], list[Figure]] = {}
    checkouts = checkouts or [ROOT]
    with tempfile.TemporaryDirectory(prefix="rc-bench-idle-cfg-") as scratch:
        config = sandbox_config(Path(scratch))
        for run in range(1, runs + 1):
            for rows, columns in sizes or SIZES:
                for state in states or STATES:
                    for checkout in checkouts:
                        who = f" {checkout}" if len(checkouts) > 1 else ""
                        for name, figure in measure(rows, columns, state, seconds, config, checkout).items():
                            results.setdefault((who, columns, rows, name), []).append(figure)
                            print(f"run {run}{who} {columns}x{rows} {name}: {figure[0]:.2f} % of a core (UI thread"
                                  f" {figure[1]:.2f}), {figure[2] / 1024:.2f} KB/s to the terminal,"
                                  f" {figure[3] if figure[3] is not None else '?'} checks seen", flush=True)
    print(f"\nidle CPU over {seconds:g} s windows, {runs} run(s) each, medians (min-max); yardstick {YARDSTICK:g} %"
          " of one core; canary samples at 1 Hz (sandbox, --time-scale 30) unless the state says otherwise\n")
    print("| checkout | terminal | state | CPU, % of one core | UI thread | output to the terminal | vs yardstick |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (who, columns, rows, state), figures in sorted(results.items(), key=lambda item: item[0][1:]):
        cpu = [f[0] for f in figures]
        median = statistics.median(cpu)
        print(f"| {who.strip() or '.'} | {columns}x{rows} | {state} | {median:.2f} ({min(cpu):.2f}-{max(cpu):.2f}) |"
              f" {statistics.median(f[1] for f in figures):.2f} | {statistics.median(f[2] for f in figures) / 1024:.2f}"
              f" KB/s | {'under' if median < YARDSTICK else '**over**'} ({median / YARDSTICK:.2f}x) |")


def _size(text: str) -> tuple[int, int]:
    columns, rows = (int(n) for n in text.split("x"))
    return rows, columns


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("runs", nargs="?", type=int, default=1)
    parser.add_argument("seconds", nargs="?", type=float, default=60.0)
    parser.add_argument("--state", action="append", choices=list(STATES), help="only this state (repeatable)")
    parser.add_argument("--size", action="append", type=_size, help="only this terminal, e.g. 80x24 (repeatable)")
    parser.add_argument("--checkout", action="append", type=lambda p: Path(p).resolve(),
                        help="the console of this checkout, in turn with the others (repeatable)")
    args = parser.parse_args()
    main(args.runs, args.seconds, args.state, args.size, args.checkout)
