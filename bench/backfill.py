"""Backfill 1,000,000 rows under a live writer: expand/contract vs a naive UPDATE + SET NOT NULL.

A writer thread updates random rows of the table, one short statement at a time, all through
each run; we record how long every statement took (its wait). Then, in the same run and on two
identical tables:

  (a) expand/contract: the console's expand-add-column, phases expand, backfill, contract
      (batches of 1000 by primary key, lock_timeout 500 ms with retries), through the runner;
  (b) naive: ADD COLUMN; UPDATE t SET c = now(); ALTER TABLE t ALTER c SET NOT NULL.

It reports the writer's max and p99 wait and the backfill's rows/s. Goal: (a)'s max wait < 1 s.
PostgreSQL comes from RC_PG_DSN (the rig exports it); a scratch database is created and dropped.

    RC_PG_DSN=postgresql://... uv run python bench/backfill.py [rows]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.catalog import build_operation  # noqa: E402
from services.core import config as config_module  # noqa: E402
from services.core.audit import mask  # noqa: E402
from services.core.events import Event, LogLine, Outcome, StepFinished  # noqa: E402
from services.factory import build  # noqa: E402

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000


@dataclass
class Writer:
    """Updates a random row, again and again, in its own connection; remembers each statement's time."""

    dsn: str
    table: str
    rows: int
    samples: list[tuple[float, float]] = field(default_factory=list)  # (started, seconds)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        import random

        rng = random.Random(3)
        update = sql.SQL("UPDATE {} SET qty = qty + 1 WHERE id = %s").format(sql.Identifier(self.table))
        with psycopg.connect(self.dsn, autocommit=True, application_name="bench writer") as conn:
            while not self._stop.is_set():
                began = time.perf_counter()
                try:
                    conn.execute(update, (rng.randint(1, self.rows),))
                except psycopg.Error as err:
                    self.errors.append(str(err).splitlines()[0])
                self.samples.append((began, time.perf_counter() - began))
                time.sleep(0.001)

    def waits(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        return [s for t, s in self.samples if start <= t < end]


@dataclass
class Measured:
    name: str
    seconds: float
    backfill_rows_per_s: float
    waits: list[float]
    phases: dict[str, float]  # phase -> max wait within it
    errors: int


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values, default=0.0)


def make_table(dsn: str, table: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        t = sql.Identifier(table)
        conn.execute(sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, name text NOT NULL, qty integer NOT NULL,"
                             " note text)").format(t))
        conn.execute(sql.SQL("INSERT INTO {} (name, qty, note) SELECT 'item ' || i, i %% 1000, repeat('x', 40)"
                             " FROM generate_series(1, %s) i").format(t), (ROWS,))
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(t))


def expand_contract(dsn: str, table: str, state: Path) -> Measured:
    path = state / "release.toml"
    path.write_text('[app]\nname = "bench"\nimage = "bench"\n[environments.bench]\napi_url = "http://127.0.0.1/"\n'
                    'database_url = "${BENCH_DB}"\nredis_url = "redis://127.0.0.1:1/0"\n'
                    f'[backup]\nlocal_dir = "{state / "backups"}"\n')
    services = build(config_module.load(path, {"BENCH_DB": dsn}), sandbox_mode=False, state=state)
    params = {"table": table, "column": "checked_at", "type": "timestamp(3)", "backfill": "now()",
              "batch_size": "1000", "lock_timeout_ms": "500"}
    writer = Writer(dsn, table, ROWS).start()
    time.sleep(1.0)
    phases: dict[str, tuple[float, float]] = {}
    backfill_rate = 0.0
    began = time.perf_counter()
    for phase in ("expand", "backfill", "contract"):
        events: list[Event] = []
        start = time.perf_counter()
        op = build_operation(services, "expand-add-column", "bench", {**params, "phase": phase})
        result = services.runner.run(op, events.append, lambda question: "yes")
        phases[phase] = (start, time.perf_counter())
        for line in (e.text for e in events if isinstance(e, LogLine) and "lock not granted" in e.text):
            print(f"  {phase}: {line}", flush=True)
        if result.outcome is not Outcome.SUCCEEDED:
            writer.stop()
            raise SystemExit(f"{phase} {result.outcome}: {result.detail}")
        if phase == "backfill":
            detail = next(e.detail for e in events if isinstance(e, StepFinished) and e.step_id == "backfill")
            backfill_rate = float(detail.split("(")[1].split(" rows/s")[0].replace(",", ""))
    seconds = time.perf_counter() - began
    time.sleep(1.0)
    writer.stop()
    return Measured("(a) expand/contract", seconds, backfill_rate, writer.waits(began, began + seconds),
                    {p: max(writer.waits(s, e), default=0.0) for p, (s, e) in phases.items()}, len(writer.errors))


def naive(dsn: str, table: str) -> Measured:
    writer = Writer(dsn, table, ROWS).start()
    time.sleep(1.0)
    t = sql.Identifier(table)
    phases: dict[str, tuple[float, float]] = {}
    began = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for phase, statement in (
            ("add column", sql.SQL("ALTER TABLE {} ADD COLUMN checked_at timestamp(3)").format(t)),
            ("update", sql.SQL("UPDATE {} SET checked_at = now()").format(t)),
            ("set not null", sql.SQL("ALTER TABLE {} ALTER COLUMN checked_at SET NOT NULL").format(t)),
        ):
            start = time.perf_counter()
            conn.execute(statement)
            phases[phase] = (start, time.perf_counter())
    seconds = time.perf_counter() - began
    time.sleep(1.0)
    writer.stop()
    update_s = phases["update"][1] - phases["update"][0]
    return Measured("(b) naive UPDATE + SET NOT NULL", seconds, ROWS / update_s, writer.waits(began, began + seconds),
                    {p: max(writer.waits(s, e), default=0.0) for p, (s, e) in phases.items()}, len(writer.errors))


def main() -> int:
    admin = os.environ.get("RC_PG_DSN")
    if not admin:
        print("set RC_PG_DSN to a PostgreSQL superuser DSN (the rig exports it)", file=sys.stderr)
        return 2
    name = f"rc_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        version = conn.execute("SHOW server_version").fetchone()
    dsn = urllib.parse.urlsplit(admin)._replace(path=f"/{name}").geturl()
    print(f"PostgreSQL {version[0] if version else '?'} at {mask(dsn)}; {ROWS:,} rows per table", flush=True)
    try:
        started = time.perf_counter()
        for table in ("bench_a", "bench_b"):
            make_table(dsn, table)
        print(f"tables ready in {time.perf_counter() - started:.1f} s", flush=True)
        with tempfile.TemporaryDirectory() as state:
            results = [expand_contract(dsn, "bench_a", Path(state)), naive(dsn, "bench_b")]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    report(results)
    return 0 if results[0].waits and max(results[0].waits) < 1.0 else 1


def report(results: list[Measured]) -> None:
    print()
    print(f"{'':34} {'total s':>8} {'rows/s':>10} {'writes':>7} {'p50 ms':>7} {'p99 ms':>8} {'max ms':>8} "
          f"{'errors':>6}")
    for r in results:
        print(f"{r.name:34} {r.seconds:8.1f} {r.backfill_rows_per_s:10,.0f} {len(r.waits):7} "
              f"{statistics.median(r.waits) * 1000:7.1f} {p99(r.waits) * 1000:8.1f} {max(r.waits) * 1000:8.1f} "
              f"{r.errors:6}")
    print()
    for r in results:
        phases = ", ".join(f"{p} {w * 1000:.0f} ms" for p, w in r.phases.items())
        print(f"{r.name}: max writer wait by phase: {phases}")
    goal = max(results[0].waits)
    print(f"\ngoal: expand/contract max writer wait < 1 s: {'met' if goal < 1 else 'MISSED'} ({goal * 1000:.0f} ms)")


if __name__ == "__main__":
    sys.exit(main())
