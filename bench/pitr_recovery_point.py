"""The recovery point under a steady write load: how old the last archived WAL segment gets (issue 19).

On a private PostgreSQL 15 cluster archiving its WAL through pgBackRest (tests/rig/pitr_cluster.py:
archive_command = `pgbackrest archive-push`, synchronous, lz4, to a posix repo), archive_timeout is set
with ALTER SYSTEM + pg_reload_conf() (default 30 s). A thread then inserts small rows at a steady rate
(default 300 a second, one transaction each, as an app's writes come), while the main thread reads the
recovery point every --every seconds, as the backups pane and `pitr check` read it:
services.backups.pitr.read_window, whose archiver age is the age of the last archived WAL segment on the
server's clock. It never runs `pgbackrest check`, which would force a WAL switch and flatter the figure.

The yardsticks: archive_timeout as configured (at light load, PostgreSQL switches the WAL segment that
often, and the age should stay under it plus the time archive-push takes), and a nightly dump's
recovery point, up to 24 h.

    bash tests/rig/run --exec uv run --frozen python bench/pitr_recovery_point.py \
        [--archive-timeout 30] [--rate 300] [--seconds 180] [--every 1]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from _pitr import console_services, pitr_cluster, scalar, summary, wal_bytes
from rig.helpers import wait_until
from rig.pitr_cluster import PitrCluster

from services.backups.pitr import read_window
from services.core.container import Services

NIGHTLY_S = 24 * 3600
SEGMENT_BYTES = 16 * 2**20  # PostgreSQL's default WAL segment


class SteadyWriter(threading.Thread):
    """`rate` single-row INSERTs a second, each its own transaction, paced on the monotonic clock."""

    def __init__(self, dsn: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.dsn, self.rate = dsn, rate
        self.stopping = threading.Event()
        self.written = 0
        self.behind_s = 0.0  # the latest an insert started against its schedule: did the load keep its rate?

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            began = time.monotonic()
            while not self.stopping.is_set():
                due = began + self.written / self.rate
                if (wait := due - time.monotonic()) > 0:
                    self.stopping.wait(wait)
                else:
                    self.behind_s = max(self.behind_s, -wait)
                conn.execute("INSERT INTO bench_writes (body) VALUES (md5(random()::text))")
                self.written += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive-timeout", type=int, default=30, help="archive_timeout, seconds")
    parser.add_argument("--rate", type=float, default=300, help="inserts a second")
    parser.add_argument("--seconds", type=float, default=180, help="how long the load runs")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between two readings")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rc-bench-pitr-rpo-"))
    try:
        with pitr_cluster() as cluster:
            return on_cluster(cluster, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def on_cluster(cluster: PitrCluster, work: Path, args: argparse.Namespace) -> int:
    """archive_timeout set, a table for the load, and the console's services on the cluster."""
    database = cluster.new_database()
    cluster.execute("CREATE TABLE bench_writes (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT"
                    " clock_timestamp(), body text NOT NULL)", database)
    cluster.execute(f"ALTER SYSTEM SET archive_timeout = {int(args.archive_timeout)}")
    cluster.execute("SELECT pg_reload_conf()")
    wait_until(lambda: scalar(cluster, "SHOW archive_timeout") == f"{args.archive_timeout}s",
               timeout=10, what="archive_timeout reloaded")
    services = console_services(work, cluster, database)
    try:
        return measure(services, cluster, database, args)
    finally:
        services.close()


def push_seconds(cluster: PitrCluster) -> list[float]:
    """How long each `pgbackrest archive-push` took, as it said itself on its console, which is PostgreSQL's
    log ("archive-push command end: completed successfully (123ms)")."""
    said = cluster.log.read_text(errors="replace")
    return [int(ms) / 1000 for ms in re.findall(r"archive-push command end: completed successfully \((\d+)ms\)", said)]


def archive_bytes(cluster: PitrCluster) -> int:
    """What the repository's WAL archive holds: the cost of each switch archive_timeout forces."""
    return sum(f.stat().st_size for f in (cluster.repo / "archive").rglob("*") if f.is_file())


@dataclass
class Readings:
    ages: list[float] = field(default_factory=list)  # the recovery point at each reading
    reads: list[float] = field(default_factory=list)  # how long each read_window took
    archived_at: list[float] = field(default_factory=list)  # each last_archived_time seen: a segment in the repo


def read_for(services: Services, seconds: float, every: float) -> Readings:
    """The recovery point every `every` seconds for `seconds`, as the backups pane reads it."""
    readings, began = Readings(), time.monotonic()
    while (elapsed := time.monotonic() - began) < seconds:
        asked = time.monotonic()
        report = read_window(services, "production")
        readings.reads.append(time.monotonic() - asked)
        archiver = report.archiver
        if report.problems or archiver is None or archiver.age_s is None:
            print(f"  {elapsed:5.0f}s PROBLEM: {'; '.join(report.problems) or 'no archived segment'}")
        else:
            readings.ages.append(archiver.age_s)
            if archiver.last_archived_at is not None and archiver.last_archived_at not in readings.archived_at:
                readings.archived_at.append(archiver.last_archived_at)
                print(f"  {elapsed:5.0f}s {archiver.last_archived_wal} archived; age {archiver.age_s:.1f}s")
        time.sleep(max(0.0, began + len(readings.reads) * every - time.monotonic()))
    return readings


def measure(services: Services, cluster: PitrCluster, database: str, args: argparse.Namespace) -> int:
    first = read_window(services, "production")
    assert first.archiver is not None, first.problems
    wal_before, pushes_before, repo_before = wal_bytes(cluster), len(push_seconds(cluster)), archive_bytes(cluster)
    writer = SteadyWriter(cluster.dsn(database), args.rate)
    print(f"archive_timeout = {args.archive_timeout}s; {args.rate:g} inserts/s for {args.seconds:g}s;"
          f" reading the recovery point every {args.every:g}s (read_window, no pgbackrest check)")
    writer.start()
    readings = read_for(services, args.seconds, args.every)
    writer.stopping.set()
    writer.join(timeout=10)
    wal, pushes = wal_bytes(cluster) - wal_before, push_seconds(cluster)[pushes_before:]
    stored = archive_bytes(cluster) - repo_before
    last = read_window(services, "production").archiver
    assert last is not None and first.archiver is not None

    ages, reads, archived_at = readings.ages, readings.reads, readings.archived_at
    intervals = [b - a for a, b in zip(archived_at, archived_at[1:], strict=False)]
    low, mid, p95, high = summary(ages)
    fill_s = SEGMENT_BYTES / max(wal / args.seconds, 1)
    print(f"\n{writer.written:,} rows in {args.seconds:g}s ({writer.written / args.seconds:.0f}/s, the writer at most"
          f" {writer.behind_s:.2f}s behind its schedule); {wal / 1e6:.1f} MB of WAL"
          f" ({wal / args.seconds / 1e3:.0f} kB/s): a 16 MiB segment would fill in {fill_s:.0f}s at this rate, so"
          f" {'archive_timeout' if fill_s > args.archive_timeout else 'the segments filling'} sets the pace")
    segments = last.archived_count - first.archiver.archived_count
    print(f"segments archived: {segments}, failures: {last.failed_count - first.archiver.failed_count};"
          f" {stored / 1e6:.1f} MB added to the repository's archive (lz4), {stored / max(segments, 1) / 1e6:.2f} MB"
          f" a segment: {stored / args.seconds * 86400 / 1e9:.1f} GB a day at this pace")
    if intervals:
        print(f"time between two archived segments: min {min(intervals):.1f}s, median"
              f" {statistics.median(intervals):.1f}s, max {max(intervals):.1f}s")
    if pushes:
        print(f"archive-push (pgBackRest's log): {len(pushes)} pushes, median {statistics.median(pushes):.2f}s,"
              f" max {max(pushes):.2f}s")
    print(f"one read of the recovery point (read_window: pgbackrest info + pg_stat_archiver): median"
          f" {statistics.median(reads):.2f}s, max {max(reads):.2f}s")
    print(f"\nrecovery point (age of the last archived WAL segment), {len(ages)} readings:")
    print(f"{'min':>7} {'median':>7} {'p95':>7} {'max':>7}   archive_timeout   nightly dump")
    print(f"{low:>6.1f}s {mid:>6.1f}s {p95:>6.1f}s {high:>6.1f}s   {args.archive_timeout:>14}s   up to {NIGHTLY_S}s")
    print(f"max / archive_timeout: {high / args.archive_timeout:.2f}; the nightly dump's worst case is"
          f" {NIGHTLY_S / high:,.0f}x the max, its average (12 h) {NIGHTLY_S / 2 / mid:,.0f}x the median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
