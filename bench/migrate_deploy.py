"""Deploy time: a 160+ migration Prisma history on an empty database, the console's whole process vs psql.

The history (bench/prisma_history.py) is shaped like a real Prisma project's: CREATE TABLE, ALTER TABLE
ADD COLUMN, CREATE INDEX, foreign keys, enum types and values, relation tables. Each round, on a fresh
empty database each, alternating, both as whole processes timed by wall clock:
  - the yardstick: one `psql` process with every migration.sql as a `-f` argument;
  - `release-console migrate deploy --env bench --yes`: the whole operation (lint, backup, apply under
    Prisma's lock with the _prisma_migrations rows, integrity check, REINDEX/ANALYZE), start-up included.
Then, per round, one more run of each console with --json, on a fresh database each: its events'
timestamps give where the time goes (start-up to the operation's start, each step, exit).

PostgreSQL: RC_PG_DSN (a superuser DSN; `bash tests/rig/run` exports one to pytest, see rig.env),
or, without it, a private PostgreSQL 15 cluster this script starts in a temp dir (initdb and pg_ctl
from /usr/lib/postgresql/15/bin, as tests/rig/run does) and stops at the end. On a fresh machine:

    uv sync --frozen && uv run --frozen python bench/migrate_deploy.py [--rounds 5] [--count 168]
        [--baseline DIR] [--fast-pg]

The private cluster runs with PostgreSQL's durable defaults (fsync, synchronous_commit on), as a real
server does; --fast-pg gives it the rig's settings (fsync off), where every commit is nearly free.

With --baseline DIR, the console of another checkout runs too, in the same rounds: before and after
in one run, on the same noisy machine. Console processes run with a bytecode cache (PYTHONPYCACHEPREFIX
in the bench's temp dir, warmed before the rounds), as an installed console has.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _common import private_postgres  # noqa: E402
from prisma_history import write_history  # noqa: E402

CLI = [sys.executable, "-m", "console.cli"]  # the `release-console` entry point, as a whole process
GOAL = 2.0
TIMEOUT_S = 300


def fresh_database(admin: str) -> str:
    name = f"rc_bench_migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(admin, dbname=name)


def drop_database(admin: str, dsn: str) -> None:
    name = str(conninfo_to_dict(dsn)["dbname"])
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def psql(dsn: str, files: list[Path]) -> float:
    tool = Path("/usr/lib/postgresql/15/bin/psql")
    argv = [str(tool) if tool.exists() else shutil.which("psql") or "psql", "--quiet", "--no-psqlrc",
            "-v", "ON_ERROR_STOP=1", "-d", dsn, *[arg for f in files for arg in ("-f", str(f))]]
    began = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT_S)
    return time.perf_counter() - began


def release_toml(work: Path, migrations: Path) -> Path:
    path = work / "release.toml"
    path.write_text(f"""[app]
name = "bench"
image = "bench"

[environments.bench]
api_url = "http://127.0.0.1:1/api"
database_url = "${{RC_BENCH_DB}}"
redis_url = "redis://127.0.0.1:1/0"

[backup]
local_dir = "{work / 'backups'}"
compression = "zstd"
signing_key = "${{RC_BENCH_SIGNING_KEY}}"

[migrations]
dir = "{migrations}"
integrity_tables = ["Ingredient", "Category", "User"]
reindex_tables = ["Ingredient", "Category", "User"]
""")
    return path


def console(toml: Path, work: Path, dsn: str, as_json: bool = False, checkout: Path = ROOT) -> tuple[float, str]:
    # With a bytecode cache, as an installed console has (PYTHONDONTWRITEBYTECODE would compile every module).
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "RC_BENCH_DB": dsn,
           "RC_BENCH_SIGNING_KEY": "bench-signing-key-0123456789abcdef",
           "XDG_STATE_HOME": str(work / "state"), "XDG_CONFIG_HOME": str(work / "config"),
           "PYTHONPYCACHEPREFIX": str(work / "pycache" / checkout.name)}
    argv = [*CLI, "--config", str(toml), *(["--json"] if as_json else []), "migrate", "deploy", "--env", "bench",
            "--yes"]
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"release-console exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return took, done.stdout


def breakdown(began_wall: float, took: float, stdout: str) -> dict[str, float]:
    """Seconds per phase from the --json events' timestamps: start-up, each step, exit."""
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    phases: dict[str, float] = {}
    started = next(e["at"] for e in events if e["type"] == "OperationStarted")
    phases["start-up (to OperationStarted)"] = started - began_wall
    step_began: dict[str, float] = {}
    for event in events:
        if event["type"] == "StepStarted":
            step_began[event["step_id"]] = event["at"]
        elif event["type"] == "StepFinished" and event["step_id"] in step_began:
            phases[f"step {event['step_id']}"] = event["at"] - step_began[event["step_id"]]
    last = events[-1]["at"]
    phases["between steps (journal, audit)"] = (last - started) - sum(
        v for k, v in phases.items() if k.startswith("step "))
    phases["exit (after the last event)"] = began_wall + took - last
    return phases


def server_settings(admin: str) -> str:
    with psycopg.connect(admin) as conn:
        rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name IN"
                            " ('fsync', 'synchronous_commit', 'full_page_writes') ORDER BY name").fetchall()
    return ", ".join(f"{name}={value}" for name, value in rows)


def run(admin: str, rounds: int, count: int, baseline: Path | None) -> None:
    print(f"PostgreSQL settings: {server_settings(admin)}")
    with tempfile.TemporaryDirectory(prefix="rc-bench-migrate-") as tmp:
        work = Path(tmp)
        files = write_history(work / "migrations", count)
        toml = release_toml(work, work / "migrations")
        # Warm the bytecode cache (and the page cache) once, then the rounds.
        checkouts = {"console": ROOT, **({"baseline": baseline} if baseline else {})}
        for checkout in checkouts.values():
            dsn = fresh_database(admin)
            console(toml, work, dsn, checkout=checkout)
            drop_database(admin, dsn)
        times: dict[str, list[float]] = {"psql": [], **{who: [] for who in checkouts}}
        phases: dict[str, dict[str, list[float]]] = {who: {} for who in checkouts}
        for n in range(rounds):
            order = list(times) if n % 2 == 0 else list(reversed(times))
            for who in order:
                dsn = fresh_database(admin)
                times[who].append(psql(dsn, files) if who == "psql" else
                                  console(toml, work, dsn, checkout=checkouts[who])[0])
                drop_database(admin, dsn)
            for who, checkout in checkouts.items():
                dsn = fresh_database(admin)
                began_wall = time.time()
                took, out = console(toml, work, dsn, as_json=True, checkout=checkout)
                drop_database(admin, dsn)
                for phase, seconds in breakdown(began_wall, took, out).items():
                    phases[who].setdefault(phase, []).append(seconds)
            print(f"  round {n + 1}: " + ", ".join(
                f"{who} {t[-1]:.2f} s" + (f" ({t[-1] / times['psql'][-1]:.2f}x)" if who != "psql" else "")
                for who, t in times.items()), flush=True)
    print(f"\nmigrate deploy of {count} Prisma migrations on an empty database, whole processes,"
          f" {rounds} rounds (median, min-max):")
    labels = {"psql": "psql, one process, every file as -f", "console": "release-console migrate deploy --yes",
              "baseline": f"the same, from {baseline}"}
    for who, t in times.items():
        print(f"  {labels[who]:<40} {statistics.median(t):6.2f} s  ({min(t):.2f}-{max(t):.2f})")
    for who in checkouts:
        ratios = [c / p for c, p in zip(times[who], times["psql"], strict=True)]
        extra = [c - p for c, p in zip(times[who], times["psql"], strict=True)]
        print(f"  ratio {who} / psql: median {statistics.median(ratios):.2f}x (per round {min(ratios):.2f}-"
              f"{max(ratios):.2f}x; goal <= {GOAL:.1f}x); {who} - psql: median {statistics.median(extra):.2f} s"
              f" ({min(extra):.2f} to {max(extra):.2f})")
    # The apply and psql are both bound by the server (its fsyncs): on a loaded machine both grow and the
    # ratio shrinks. The time over psql and the load say how far a figure is from a quiet machine's.
    print(f"  load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("\nwhere the console's time goes (--json runs, median seconds):")
    print(f"  {'':<36} " + " ".join(f"{who:>9}" for who in checkouts))
    for phase in phases["console"]:
        print(f"  {phase:<36} " + " ".join(f"{statistics.median(phases[who].get(phase, [0.0])):9.3f}"
                                           for who in checkouts))


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--rounds", type=int, default=5)
    options.add_argument("--count", type=int, default=168, help="migrations in the history (default 168)")
    options.add_argument("--baseline", type=Path,
                         help="another checkout (e.g. `git archive main | tar -x -C DIR`) whose console runs as a"
                              " third contender, for before/after in one run")
    options.add_argument("--fast-pg", action="store_true",
                         help="the private cluster with the rig's settings (fsync off) instead of PostgreSQL's"
                              " durable defaults")
    args = options.parse_args()
    admin = os.environ.get("RC_PG_DSN")
    if admin:
        run(admin, args.rounds, args.count, args.baseline)
        return
    with tempfile.TemporaryDirectory(prefix="rc-bench-pg-") as pg_dir:
        os.chmod(pg_dir, 0o755)  # the cluster runs as the postgres user
        print(f"RC_PG_DSN is not set: starting a private PostgreSQL 15 in {pg_dir}")
        admin, stop = private_postgres(Path(pg_dir) / "pg", durable=not args.fast_pg)
        try:
            run(admin, args.rounds, args.count, args.baseline)
        finally:
            stop()


if __name__ == "__main__":
    main()
