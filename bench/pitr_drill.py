"""The point-in-time drill against a raw `pgbackrest restore` of the same target, in one run (issue 19).

On a private cluster archiving through pgBackRest (tests/rig/pitr_cluster.py) with bench/backup.py's
database (--size-mb of plain SQL): a pgBackRest full backup, a marker row `kept`, the target (the
next whole second), a row `lost` after it. Then, alternating, --rounds times each:
  - the console's `pitr-drill` through its services (target resolved in the window, `pgbackrest check`,
    restore into scratch_dir, start on a free port, wait for promotion, read the copy's head and rows,
    stop and remove it, the report), checking the copy held `kept` and not `lost` (its rows);
  - by hand, the same work without the console: `pgbackrest restore` into an empty directory (timed
    alone: the raw restore), then pg_ctl start, `pg_is_in_recovery()` polled until promoted, a count,
    pg_ctl stop and rm (timed together: the raw drill).

    bash tests/rig/run --exec uv run --frozen python bench/pitr_drill.py [--size-mb 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from _pitr import console_services, pitr_cluster, step_seconds
from backup import BENCH_DB, ensure_database
from rig.helpers import free_port, wait_until
from rig.pitr_cluster import PGBIN, PitrCluster
from rig.walk import Walk

from services.backups.pitr import target_time
from services.backups.pitr_target import pgbackrest_time
from services.core.events import Outcome


def server_now(cluster: PitrCluster) -> float:
    return float(cluster.execute("SELECT extract(epoch FROM clock_timestamp())", BENCH_DB)[0][0])


def console_drill(work: Path, cluster: PitrCluster, target: str, rows: int) -> dict[str, float]:
    services = console_services(work, cluster, BENCH_DB)
    began = time.monotonic()
    try:
        run = Walk(services, "pitr-drill", target=target)
    finally:
        services.close()
    whole = time.monotonic() - began
    if run.result.outcome is not Outcome.SUCCEEDED:
        raise RuntimeError(f"pitr-drill ended {run.result.outcome}: {run.result.detail}")
    lost = f"bench_rows: {rows} rows live, {rows} at the target: a restore to it would lose 0"
    if lost not in run.lines("report"):
        raise RuntimeError(f"the copy did not hold the bench rows: {run.lines('report')}")
    steps = step_seconds(run.events)
    return {"whole": whole, **steps}


def raw_drill(cluster: PitrCluster, target: str, round_no: int) -> tuple[float, float]:
    """(the raw restore, the raw restore + start + promoted + count + stop + rm)."""
    scratch = cluster.drills / f"raw-{round_no}"
    port = free_port()
    began = time.monotonic()
    cluster.as_postgres("mkdir", "-m", "0700", str(scratch))
    cluster.pgbackrest(f"--pg1-path={scratch}", "--archive-mode=off", "--type=time", f"--target={target}",
                       "--target-action=promote", f"--recovery-option=port={port}",
                       "--recovery-option=listen_addresses=127.0.0.1", "--recovery-option=unix_socket_directories=",
                       "restore")
    restored = time.monotonic() - began
    pg_ctl = str(PGBIN / "pg_ctl")
    cluster.as_postgres(pg_ctl, "-D", str(scratch), "-l", f"{scratch}.log", "-w", "-t", "600", "start")
    dsn = f"postgresql://postgres:{cluster.password}@127.0.0.1:{port}/{BENCH_DB}"

    def promoted() -> bool:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]  # type: ignore[index]

    wait_until(promoted, timeout=600, what="the raw copy promoted")
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SELECT count(*) FROM bench_rows").fetchone()
    cluster.as_postgres(pg_ctl, "-D", str(scratch), "-m", "immediate", "-w", "stop")
    cluster.as_postgres("rm", "-rf", "--", str(scratch), f"{scratch}.log")
    return restored, time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500, help="plain SQL size of the bench database")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rc-bench-pitr-drill-"))
    try:
        with pitr_cluster() as cluster:
            ensure_database(cluster.dsn(), args.size_mb)
            return measure(work, cluster, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(work: Path, cluster: PitrCluster, rounds: int) -> int:
    rows = int(cluster.execute("SELECT count(*) FROM bench_rows", BENCH_DB)[0][0])
    size = int(cluster.execute("SELECT pg_database_size(current_database())", BENCH_DB)[0][0])
    print(f"{BENCH_DB}: {rows:,} rows, the database {size / 1e6:.0f} MB")
    cluster.pgbackrest("--type=full", "backup")
    cluster.execute("CREATE TABLE pitr_marker (body text PRIMARY KEY)", BENCH_DB)
    cluster.execute("INSERT INTO pitr_marker VALUES ('kept')", BENCH_DB)
    target = int(server_now(cluster)) + 1
    wait_until(lambda: server_now(cluster) > target + 0.2, timeout=10, what="the clock past the target")
    cluster.execute("INSERT INTO pitr_marker VALUES ('lost')", BENCH_DB)
    cluster.pgbackrest("check")  # the target's WAL archived before anything is timed

    console: list[dict[str, float]] = []
    raw: list[tuple[float, float]] = []
    for round_no in range(rounds):  # alternating, so neither always runs on a warmer cache
        if round_no % 2:
            raw.append(raw_drill(cluster, pgbackrest_time(target), round_no))
            console.append(console_drill(work, cluster, target_time(target), rows))
        else:
            console.append(console_drill(work, cluster, target_time(target), rows))
            raw.append(raw_drill(cluster, pgbackrest_time(target), round_no))
        print(f"round {round_no + 1}: console drill {console[-1]['whole']:.1f}s (drill step"
              f" {console[-1]['drill']:.1f}s), raw restore {raw[-1][0]:.1f}s, raw drill {raw[-1][1]:.1f}s")

    def median(values: list[float]) -> float:
        return statistics.median(values)

    whole, step = median([c["whole"] for c in console]), median([c["drill"] for c in console])
    resolve, report = median([c["target"] for c in console]), median([c["report"] for c in console])
    raw_restore, raw_whole = median([r[0] for r in raw]), median([r[1] for r in raw])
    print(f"\nmedians of {rounds} rounds ({size / 1e6:.0f} MB database)")
    print(f"  raw pgbackrest restore (alone)                     {raw_restore:6.1f}s")
    print(f"  raw drill: restore, start, promoted, count, stop, rm {raw_whole:6.1f}s")
    print(f"  console drill step (the same work)                 {step:6.1f}s  {step / raw_whole:.2f}x the raw drill")
    print(f"  console target step (check + window + counts)      {resolve:6.1f}s")
    print(f"  console report step                                {report:6.1f}s")
    print(f"  console pitr-drill, whole operation                {whole:6.1f}s  {whole / raw_restore:.2f}x the raw"
          " restore")
    return 0


if __name__ == "__main__":
    sys.exit(main())
