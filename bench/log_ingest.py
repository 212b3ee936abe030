"""Build-log ingest: lines/s into our pane vs a bare Textual Log vs a naive RichLog, memory
(RSS) while 1,000,000 lines go through our pane, and keypress latency while lines stream.

    uv run python bench/log_ingest.py [--lines 1000000] [--naive-lines 20000] [--budget 20]

Every variant runs in a headless Textual app (run_test, 80x24) and yields to the event loop
after each batch, so refreshes and rendering happen as they would live. Targets: (a) >= 1.0x (b),
(a) >= 50x (c), keypress latency under 100 ms.

(a) pays for the full log as the live console does: the pane only shows the path; the runner saves
the file (services/core/oplog.py). So a thread plays the operation's thread, teeing every line as
one LogLine event through the runner's OperationLog (one event per line, as steps log), while the
UI loop writes the same batch to the pane; (a)'s time runs until the pane has every line and the
file is closed with every line in it. Both share the process (and its GIL), as they do live.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Log, RichLog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.core.events import Event, LogLine  # noqa: E402
from services.core.oplog import OperationLog  # noqa: E402
from widgets.build_log import MAX_LINES, BuildLogPane  # noqa: E402

BATCH = 1_000
SIZE = (80, 24)
DISTINCT_BATCHES = 50  # lines are reused cyclically: generating them is not what is measured


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def batches() -> list[list[str]]:
    return [[f"[build] #{b:02d}-{n:04d} Step {n % 7 + 1}/7 compiling module pkg.mod{n % 97} ... ok"
             for n in range(BATCH)] for b in range(DISTINCT_BATCHES)]


def events(data: list[list[str]]) -> list[list[LogLine]]:
    return [[LogLine("bench-op", "build", line) for line in batch] for batch in data]


class Runner:
    """Plays the operation's thread: each batch the UI shows is also teed, event by event, through
    the runner's OperationLog (what the console does to save the full log)."""

    def __init__(self, path: Path) -> None:
        self.log = OperationLog(path)
        self.emit = self.log.tee(lambda event: None)  # the pump's put: not the file's cost
        self.events = events(batches())
        self.todo: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self.run, name="bench operation", daemon=True)
        self.thread.start()

    def run(self) -> None:
        emit = self.emit
        while (index := self.todo.get()) is not None:
            event: Event
            for event in self.events[index]:
                emit(event)

    def batch(self, written: int) -> None:
        self.todo.put((written // BATCH) % DISTINCT_BATCHES)

    def close(self) -> None:
        """Every line teed and on disk, the file closed."""
        self.todo.put(None)
        self.thread.join()
        self.log.close()


class Bench(App[None]):
    BINDINGS = [Binding("x", "mark", "mark")]

    def __init__(self, make: Callable[[], Widget]) -> None:
        super().__init__()
        self.make = make
        self.marks: list[float] = []

    def compose(self) -> ComposeResult:
        yield self.make()

    def action_mark(self) -> None:
        self.marks.append(time.perf_counter())


async def ingest(app: Bench, write: Callable[[list[str]], None], total: int, budget: float,
                 checkpoints: dict[int, float] | None = None,
                 done: Callable[[], None] | None = None) -> tuple[int, float]:
    """Write `total` lines in batches (or as many as fit in `budget` s): (lines, seconds)."""
    data = batches()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        written, start = 0, time.perf_counter()
        while written < total and time.perf_counter() - start < budget:
            write(data[(written // BATCH) % DISTINCT_BATCHES])
            written += BATCH
            await asyncio.sleep(0)
            if checkpoints is not None and written % 250_000 == 0:
                checkpoints[written] = rss_mb()
        await pilot.pause()
        if done is not None:
            done()
        return written, time.perf_counter() - start


async def latency(log_file: Path, presses: int = 30) -> tuple[list[float], float]:
    """Keypress -> handler latency (ms) while a producer writes 1000-line batches flat out."""
    pane = BuildLogPane(id="build")
    app = Bench(lambda: pane)
    data = batches()
    written = 0
    async with app.run_test(size=SIZE) as pilot:
        pane.start("latency", log_file)
        runner = Runner(log_file)
        stop = asyncio.Event()

        async def produce() -> None:
            nonlocal written
            while not stop.is_set():
                runner.batch(written)
                pane.write_lines(data[(written // BATCH) % DISTINCT_BATCHES])
                written += BATCH
                await asyncio.sleep(0)

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.3)
        results = []
        start = time.perf_counter()
        for _ in range(presses):
            before = len(app.marks)
            pressed = time.perf_counter()
            await pilot.press("x")
            while len(app.marks) == before:
                await asyncio.sleep(0.001)
            results.append((app.marks[-1] - pressed) * 1000)
            await asyncio.sleep(0.05)
        rate = written / (time.perf_counter() - start + 0.3)
        stop.set()
        await producer
        runner.close()
        pane.finish()
    return results, rate


async def main(lines: int, naive_lines: int, budget: float) -> None:
    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        log_file = Path(tmp) / "op.log"

        # (a) our pane, the full log saved to a file by the runner's OperationLog (as live)
        pane = BuildLogPane(max_lines=MAX_LINES, id="build")
        app_a = Bench(lambda: pane)
        rss_before = rss_mb()
        checkpoints: dict[int, float] = {}
        runner: Runner | None = None
        teed = 0

        def write_a(batch: list[str]) -> None:
            nonlocal runner, teed
            if runner is None:
                runner = Runner(log_file)
                pane.start("bench", log_file)
            runner.batch(teed)
            teed += len(batch)
            pane.write_lines(batch)

        kept = 0

        def done_a() -> None:
            nonlocal kept
            assert runner is not None
            runner.close()  # the file is complete: part of (a)'s time
            kept = len(pane.view.lines)
            pane.finish()

        n, secs = await ingest(app_a, write_a, lines, budget, checkpoints, done_a)
        rss_after = rss_mb()
        file_lines = sum(1 for _ in log_file.open())
        rows.append(("(a) BuildLogPane, batches of 1000 (+file)", n, secs))

        # (a0) our pane without a log file: the UI-side cost alone
        pane0 = BuildLogPane(max_lines=MAX_LINES, id="build")
        n, secs = await ingest(Bench(lambda: pane0), pane0.write_lines, lines, budget)
        rows.append(("(a0) BuildLogPane, no file", n, secs))

        # (b) bare Log, same cap, same batches
        bare = Log(max_lines=MAX_LINES)
        n, secs = await ingest(Bench(lambda: bare), bare.write_lines, lines, budget)
        rows.append(("(b) bare Log.write_lines, batches of 1000", n, secs))

        # (c) naive: a RichLog, one write (one Rich render) per line
        rich = RichLog(max_lines=MAX_LINES)

        def write_c(batch: list[str]) -> None:
            for line in batch:
                rich.write(line)

        n, secs = await ingest(Bench(lambda: rich), write_c, naive_lines, budget)
        rows.append(("(c) naive RichLog.write per line", n, secs))

        waits, stream_rate = await latency(Path(tmp) / "latency.log")

    rate = {label.split()[0]: n / secs for label, n, secs in rows}
    print(f"{'variant':<44} {'lines':>10} {'seconds':>8} {'lines/s':>12}")
    for label, n, secs in rows:
        print(f"{label:<44} {n:>10,} {secs:>8.2f} {n / secs:>12,.0f}")
    print()
    print(f"(a)/(b) = {rate['(a)'] / rate['(b)']:.2f}x  (target >= 1.0x); without the file (a0)/(b) = "
          f"{rate['(a0)'] / rate['(b)']:.2f}x")
    print(f"(a)/(c) = {rate['(a)'] / rate['(c)']:.0f}x  (target >= 50x)")
    print(f"(a) kept {kept:,} lines in the view; file held {file_lines:,} lines")
    marks = ", ".join(f"{k // 1000}k: {v:.0f}" for k, v in sorted(checkpoints.items()))
    print(f"(a) RSS before {rss_before:.0f} MB, after {rss_after:.0f} MB (during ingest, MB at {marks})")
    waits.sort()
    p95 = waits[int(len(waits) * 0.95) - 1]
    print(f"keypress latency while streaming ({stream_rate:,.0f} lines/s): median {statistics.median(waits):.1f} ms, "
          f"p95 {p95:.1f} ms, max {max(waits):.1f} ms over {len(waits)} presses (target < 100 ms)")


def cli(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--naive-lines", type=int, default=20_000)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per variant at most")
    args = parser.parse_args(argv)
    asyncio.run(main(args.lines, args.naive_lines, args.budget))


if __name__ == "__main__":
    cli()
