"""The point-in-time restore against a dump restore of the same data, in one run (issue 19).

On a private PostgreSQL 15 cluster archiving its WAL through pgBackRest (tests/rig/pitr_cluster.py), the
bench database of bench/backup.py (random md5 text, built by its ensure_database; --size-mb of plain
SQL) is loaded, then, through the console's services as an operator's walkthroughs run them
(services.catalog + the runner, as tests/integration/test_pitr.py drives them):
  1. `pitr-backup` full: a pgBackRest full backup;
  2. optionally (--rewrite-share) an UPDATE of that share of the rows: WAL for the restore to replay;
  3. a marker row `kept`, then `backup`: the console's dump (signed pg_dump -Fc through zstd), so the
     dump and the point-in-time target hold the same data;
  4. the target: the next whole second; then a row `lost` after it;
  5. `pitr-restore` to the target: stop the app, stop PostgreSQL, `pgbackrest restore --delta
     --type=time`, start PostgreSQL, wait for recovery to end, validate, start the app, health check;
  6. `restore` of the dump: download and check it, stop the app, pg_restore --clean in one transaction
     over the live database, validate, start the app, health check.
Both walkthroughs have the same app: `true` as its stop and start commands and a local HTTP server as
its health endpoint. After each, the bench checks that the database holds every bench row and `kept`,
but not `lost`. Each step's time comes from the walkthrough's events.

For where the time goes, a plain `pgbackrest restore` of the same target into an empty directory (a
lost disk: every file copied, nothing to compare) is timed last; it is not started.

    bash tests/rig/run --exec uv run --frozen python bench/pitr_restore_time.py [--size-mb 500] [--rewrite-share 0.5]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _pitr import console_services, pitr_cluster, scalar, step_seconds, wal_bytes
from backup import BENCH_DB, ensure_database, health_server
from rig.helpers import wait_until
from rig.pitr_cluster import PitrCluster
from rig.walk import Walk

from services.backups.pitr import target_time
from services.backups.pitr_target import pgbackrest_time
from services.core.container import Services
from services.core.events import Outcome

PITR_STEPS = ["target", "confirm", "stop-app", "stop-db", "restore", "start-db", "recovery", "validate", "start-app",
              "health", "report"]
DUMP_STEPS = ["choose", "confirm", "download", "verify", "stop", "restore-db", "restore-files", "validate", "start",
              "health", "report"]


def server_now(cluster: PitrCluster) -> float:
    return float(scalar(cluster, "SELECT extract(epoch FROM clock_timestamp())", BENCH_DB))


def walk(build: Services, kind: str, **params: str) -> tuple[Walk, float]:
    """One walkthrough in production, every question answered; (its run, its wall seconds)."""
    began = time.monotonic()
    try:
        run = Walk(build, kind, **params)
    finally:
        build.close()
    if run.result.outcome is not Outcome.SUCCEEDED:
        raise RuntimeError(f"{kind} ended {run.result.outcome}: {run.result.detail}")
    return run, time.monotonic() - began


def holds_the_target(cluster: PitrCluster, rows: int, what: str) -> None:
    """Every bench row and `kept`, not `lost`: the restore reached the target's data and no further."""
    markers = [r[0] for r in cluster.execute("SELECT body FROM pitr_marker ORDER BY body", BENCH_DB)]
    counted = scalar(cluster, "SELECT count(*) FROM bench_rows", BENCH_DB)
    if markers != ["kept"] or counted != rows:
        raise RuntimeError(f"after the {what}: markers {markers}, {counted} bench rows (expected ['kept'], {rows})")
    print(f"after the {what}: {counted:,} bench rows, marker rows {markers}: the target's data, nothing after")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500, help="plain SQL size of the bench database")
    parser.add_argument("--rewrite-share", type=float, default=0.0,
                        help="share of the rows updated between the full backup and the target (WAL to replay)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rc-bench-pitr-restore-"))
    health = health_server()
    try:
        with pitr_cluster() as cluster:
            ensure_database(cluster.dsn(), args.size_mb)
            return measure(cluster, work, health.server_address[1], args.rewrite_share)
    finally:
        health.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def measure(cluster: PitrCluster, work: Path, health_port: int, rewrite_share: float) -> int:
    def services() -> Services:
        # Built afresh for each walkthrough, as a console process would be: a restart drops old connections.
        return console_services(work, cluster, BENCH_DB, stop=["true"], start=["true"],
                                api_url=f"http://127.0.0.1:{health_port}/api")

    rows = int(scalar(cluster, "SELECT count(*) FROM bench_rows", BENCH_DB))
    table_mb = int(scalar(cluster, "SELECT pg_total_relation_size('bench_rows')", BENCH_DB)) / 1e6
    database_mb = int(scalar(cluster, "SELECT pg_database_size(current_database())", BENCH_DB)) / 1e6
    print(f"{BENCH_DB} in the PITR cluster: {rows:,} rows; bench_rows {table_mb:.0f} MB with its index,"
          f" the database {database_mb:.0f} MB")
    cluster.execute("CREATE TABLE pitr_marker (body text PRIMARY KEY)", BENCH_DB)

    # The health check's first use imports httpx (0.3-0.4 s): paid here, not by whichever walkthrough runs first.
    httpx.get(f"http://127.0.0.1:{health_port}/api/health", timeout=5).raise_for_status()
    full, full_s = walk(services(), "pitr-backup", type="full")
    print(f"pgBackRest full backup (pitr-backup): {full_s:.1f}s, {full.detail('backup')}")
    if rewrite_share > 0:  # writes after the backup: WAL the point-in-time restore has to replay
        wal_before = wal_bytes(cluster)
        began = time.monotonic()
        cluster.execute(f"UPDATE bench_rows SET a = md5(a) WHERE id <= {int(rows * rewrite_share)}", BENCH_DB)
        print(f"rewrote {rewrite_share:.0%} of the rows after the backup in {time.monotonic() - began:.1f}s:"
              f" {(wal_bytes(cluster) - wal_before) / 1e6:.0f} MB of WAL to replay")
    cluster.execute("INSERT INTO pitr_marker VALUES ('kept')", BENCH_DB)
    dump, dump_s = walk(services(), "backup")
    stored = sum(f.stat().st_size for f in (work / "store").rglob("*") if f.is_file())
    print(f"console dump backup (backup): {dump_s:.1f}s, {stored / 1e6:.0f} MB in the store")

    target = int(server_now(cluster)) + 1  # the operator gives whole seconds: the next one after `kept`
    wait_until(lambda: server_now(cluster) > target + 0.2, timeout=10, what="the clock past the target")
    cluster.execute("INSERT INTO pitr_marker VALUES ('lost')", BENCH_DB)

    pitr, pitr_s = walk(services(), "pitr-restore", target=target_time(target))
    holds_the_target(cluster, rows, "point-in-time restore")
    restored, restored_s = walk(services(), "restore")
    holds_the_target(cluster, rows, "dump restore")
    copy_s = full_copy(cluster, pgbackrest_time(target))
    report(pitr, pitr_s, restored, restored_s, copy_s)
    return 0


def report(pitr: Walk, pitr_s: float, restored: Walk, restored_s: float, copy_s: float) -> None:
    """The two walkthroughs step by step, side by side; their outages and the ratio."""
    pitr_steps, dump_steps = step_seconds(pitr.events), step_seconds(restored.events)
    print(f"\n{'step (point-in-time restore)':<30} {'s':>6}    {'step (dump restore)':<30} {'s':>6}")
    for left, right in zip(PITR_STEPS, DUMP_STEPS, strict=True):
        print(f"{left:<30} {pitr_steps.get(left, 0):>6.1f}    {right:<30} {dump_steps.get(right, 0):>6.1f}")
    pitr_outage = sum(pitr_steps.get(s, 0) for s in PITR_STEPS[PITR_STEPS.index("stop-app"):PITR_STEPS.index("report")])
    dump_outage = sum(dump_steps.get(s, 0) for s in DUMP_STEPS[DUMP_STEPS.index("stop"):DUMP_STEPS.index("report")])
    print(f"{'whole walkthrough':<30} {pitr_s:>6.1f}    {'whole walkthrough':<30} {restored_s:>6.1f}")
    outage = "outage (stop .. healthy)"
    print(f"{outage:<30} {pitr_outage:>6.1f}    {outage:<30} {dump_outage:>6.1f}")
    print(f"\npoint-in-time restore / dump restore: {pitr_s / restored_s:.2f}x the whole walkthrough,"
          f" {pitr_outage / dump_outage:.2f}x the outage")
    print(f"reported: {pitr.detail('report')} | {restored.detail('report')}")
    print(f"pgbackrest restore of the same target into an empty directory (every file copied, not started):"
          f" {copy_s:.1f}s, against {pitr_steps['restore']:.1f}s for the walkthrough's --delta restore over the"
          f" stopped cluster")


def full_copy(cluster: PitrCluster, target: str) -> float:
    """`pgbackrest restore` of the target into an empty directory of the cluster's owner; removed after."""
    scratch = cluster.root / f"copy-{int(time.time())}"  # not in drills/: that is the drill's scratch_dir
    cluster.as_postgres("mkdir", "-m", "0700", str(scratch))  # pgBackRest restores into a directory that exists
    began = time.monotonic()
    cluster.pgbackrest(f"--pg1-path={scratch}", "--type=time", f"--target={target}", "--target-action=promote",
                       "restore")
    took = time.monotonic() - began
    shutil.rmtree(scratch, ignore_errors=True)
    return took


if __name__ == "__main__":
    sys.exit(main())
