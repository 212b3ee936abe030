"""Backup and restore throughput: the console vs the shell pipelines of the strategy, in one run.

A ~500 MB database of rows that do not compress trivially (random md5 text) is built once and
reused (a marker table records its size). Then, on the same warm server:
  - `pg_dump > /dev/null`: how fast the dump itself can go (the ceiling);
  - `pg_dump | gzip > file` (gzip -6, the strategy's pipeline) and `pg_dump | zstd -3 -T0 > file`;
  - `release-console backup create` with gzip and with zstd: whole processes (start-up included),
    a signed custom-format archive (pg_dump -Fc -Z0 through the console's compressor), peak RSS
    of the process measured with wait4;
  - restore, as whole processes, vs `gunzip -c file | psql --single-transaction` into an empty database:
    `release-console restore` (the walkthrough an operator runs: lock, download with the signature
    and sha256 checks, stop, pg_restore in one transaction into an empty database, validate, start,
    health check; the stop and start commands are `true`, the health check a local HTTP server) and
    `release-console drill` (the same checks, then pg_restore -j into a scratch database it creates,
    counts, reads and drops).

Console processes run with a bytecode cache (PYTHONPYCACHEPREFIX in the bench's temp dir, warmed
before the rounds), as an installed console has: without one (PYTHONDONTWRITEBYTECODE=1) every
process compiles its ~550 modules again, about 1.6 s on this machine; --cold measures that.

    RC_PG_DSN=postgresql://USER:PASS@127.0.0.1:PORT/postgres uv run python bench/backup.py [--size-mb 500]

Subprocess pipelines use argument lists (no shell). Temporary files and restore databases are
removed at the end; the bench database is kept for the next run (--drop removes it too).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "rc_bench_backup"
ROW_BYTES = 106  # a row of the plain dump: id, three md5s, tabs and newline
TIMEOUT_S = 900  # any one contender; the whole run stays well under half an hour at 500 MB

CLI = [sys.executable, "-m", "console.cli"]  # the `release-console` entry point, as a whole process


def pg_env(dsn: str) -> dict[str, str]:
    params = conninfo_to_dict(dsn)
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE"}
    return {**os.environ, **{env: str(params[k]) for k, env in names.items() if params.get(k)}}


def tool(name: str) -> str:
    versioned = Path("/usr/lib/postgresql/15/bin") / name
    return str(versioned) if versioned.exists() else shutil.which(name) or name


def ensure_database(admin: str, size_mb: int) -> str:
    """The bench database, built once: reused while its marker says it has the size asked for."""
    dsn = make_conninfo(admin, dbname=BENCH_DB)
    rows = size_mb * 1_000_000 // ROW_BYTES
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    with psycopg.connect(dsn, autocommit=True) as conn:
        marker = conn.execute("SELECT to_regclass('bench_marker') IS NOT NULL").fetchone()
        if marker and marker[0]:
            found = conn.execute("SELECT rows FROM bench_marker").fetchone()
            if found and found[0] == rows:
                print(f"reusing {BENCH_DB} ({rows:,} rows)")
                return dsn
        print(f"building {BENCH_DB}: {rows:,} rows of random md5 text (~{size_mb} MB of SQL), once")
        began = time.monotonic()
        conn.execute("DROP TABLE IF EXISTS bench_marker, bench_rows")
        conn.execute("CREATE TABLE bench_rows (id integer PRIMARY KEY, a text, b text, c text)")
        step = 500_000
        for start in range(1, rows + 1, step):
            conn.execute("INSERT INTO bench_rows SELECT g, md5(random()::text), md5(random()::text),"
                         " md5(random()::text) FROM generate_series(%s, %s) g", (start, min(start + step - 1, rows)))
        conn.execute("VACUUM ANALYZE bench_rows")
        conn.execute("CREATE TABLE bench_marker (rows bigint)")
        conn.execute("INSERT INTO bench_marker VALUES (%s)", (rows,))
        print(f"  built in {time.monotonic() - began:.0f}s")
    return dsn


def fresh_database(admin: str) -> str:
    name = f"rc_bench_restore_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(admin, dbname=name)


def drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def timed(run: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    began = time.monotonic()
    run(*args, **kwargs)
    return time.monotonic() - began


def pipeline(first: list[str], second: list[str], out: Path | None, env: dict[str, str],
             stdin: Path | None = None) -> None:
    """first | second [> out], as a shell would run it, without a shell."""
    with (stdin.open("rb") if stdin else open(os.devnull, "rb")) as source, \
            (out.open("wb") if out else open(os.devnull, "wb")) as sink:
        producer = subprocess.Popen(first, stdin=source, stdout=subprocess.PIPE, env=env)
        consumer = subprocess.Popen(second, stdin=producer.stdout, stdout=sink, env=env)
        assert producer.stdout is not None
        producer.stdout.close()  # the consumer holds the pipe now: SIGPIPE reaches the producer
        codes = consumer.wait(timeout=TIMEOUT_S), producer.wait(timeout=TIMEOUT_S)
    if any(codes):
        raise RuntimeError(f"{first[0]} | {second[0]} exited {codes}")


def zstd_cli() -> str | None:
    found = shutil.which("zstd")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("zstd is not installed: apt-get install -y zstd")
    subprocess.run(["apt-get", "install", "-y", "-q", "zstd"], check=False, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("zstd")


def release_toml(work: Path, dsn: str, compression: str, name: str = "", health_port: int = 1) -> Path:
    """The bench's config. A restore config (`name`) points the same environment and store at another
    database, with `true` as its stop and start commands and the bench's own health endpoint."""
    path = work / f"release-{name or compression}.toml"
    (work / "migrations").mkdir(exist_ok=True)
    services = '\n[environments.bench.services]\nstop = ["true"]\nstart = ["true"]\n' if name else ""
    path.write_text(f"""
[app]
name = "bench"
image = "bench"

[environments.bench]
api_url = "http://127.0.0.1:{health_port}/api"
database_url = "{dsn}"
redis_url = "redis://127.0.0.1:1"
{services}

[backup]
local_dir = "store-{compression}"
compression = "{compression}"
signing_key = "${{BENCH_SIGNING_KEY}}"

[migrations]
dir = "migrations"
integrity_tables = ["bench_rows"]

[recovery]
health_interval_s = 0.1
""")
    return path


def health_server() -> http.server.ThreadingHTTPServer:
    """Answers 200 to anything: the restored app's health check in the restore walkthrough."""

    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the handler's protocol
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def warm_bytecode() -> None:
    """Fill the bench's bytecode cache once, as an installed console's first run does: a process that
    imports what backup, restore and drill import (psycopg's lazily imported parts by connecting)."""
    modules = ["console.cli", "services.factory", "services.adapters.postgres", "services.adapters.postgres_audit",
               "services.adapters.postgres_locks", "services.adapters.local_store", "services.adapters.http",
               "services.adapters.service_commands", "services.adapters.app_files"]
    code = (f"import importlib; [importlib.import_module(m) for m in {modules!r}];"
            " from services.catalog import all_actions; all_actions()")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT), **BYTECODE})


BYTECODE: dict[str, str] = {}  # how console processes find their bytecode cache (main sets it)


def console(config: Path, state: Path, *argv: str) -> tuple[float, int, str]:
    """One whole `release-console` process (start-up included): seconds, peak RSS in kB, its output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(state), "BENCH_SIGNING_KEY": "bench-key",
           **BYTECODE}
    began = time.monotonic()
    process = subprocess.Popen([*CLI, "--config", str(config), *argv], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read()
    # wait4 on this one child: its own peak RSS (ru_maxrss), not a maximum over every child so far.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - began
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"release-console {' '.join(argv)} exited {process.returncode}:\n{text[-3000:]}")
    return seconds, usage.ru_maxrss, text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500, help="plain SQL size of the bench database")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each figure is the median")
    parser.add_argument("--drop", action="store_true", help="drop the bench database afterwards")
    parser.add_argument("--cold", action="store_true", help="console processes without a bytecode cache")
    args = parser.parse_args()
    admin = os.environ.get("RC_PG_DSN")
    if not admin:
        print("set RC_PG_DSN to a superuser DSN (bash tests/rig/run prints it in rig.env)", file=sys.stderr)
        return 2
    dsn = ensure_database(admin, args.size_mb)
    work = Path(tempfile.mkdtemp(prefix="rc-bench-backup-"))
    if args.cold:
        BYTECODE["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        BYTECODE["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        warm_bytecode()
    try:
        times, sizes, peaks = run_rounds(admin, dsn, work, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.drop:
            drop_database(admin, BENCH_DB)
    median = {name: statistics.median(values) for name, values in times.items()}
    sql_mb = sizes.pop("sql") / 1e6
    print(f"\n{sql_mb:.0f} MB of plain SQL, {os.cpu_count()} CPUs, PostgreSQL at {conninfo_to_dict(dsn)['host']};"
          f" median of {args.rounds} rounds")
    print(f"{'contender':<32} {'seconds':>8} {'MB/s':>7} {'out MB':>7} {'peak RSS MB':>12}")
    for name, seconds in median.items():
        out = f"{sizes[name] / 1e6:.0f}" if name in sizes else ""
        peak = f"{peaks[name] / 1024:.0f}" if name in peaks else ""
        print(f"{name:<32} {seconds:>8.1f} {sql_mb / seconds:>7.0f} {out:>7} {peak:>12}")
    _targets(median, max(peaks[k] for k in peaks if k.startswith("console")) / 1024)
    return 0


def run_rounds(admin: str, dsn: str, work: Path, rounds: int) -> tuple[dict[str, list[float]], dict[str, int],
                                                                         dict[str, int]]:
    env = pg_env(dsn)
    times: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    peaks: dict[str, int] = {}
    pg_dump = [tool("pg_dump"), "--format=plain", "--clean", "--if-exists", "--no-owner"]
    psql = [tool("psql"), "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
    zstd_bin = zstd_cli()
    if zstd_bin is None:
        print("no zstd CLI (apt-get install zstd): the `pg_dump | zstd -3 -T0` yardstick is skipped")
    subprocess.run([*pg_dump, "-f", os.devnull], env=env, check=True)  # warm the cache
    sizes["sql"] = _plain_size(pg_dump, env)
    gz, zst = work / "pipeline.sql.gz", work / "pipeline.sql.zst"

    def record(name: str, seconds: float, size: int | None = None, peak: int | None = None) -> None:
        times.setdefault(name, []).append(seconds)
        if size is not None:
            sizes[name] = size
        if peak is not None:
            peaks[name] = max(peak, peaks.get(name, 0))

    health = health_server()
    for round_ in range(1, rounds + 1):
        print(f"round {round_}/{rounds}")
        record(RAW, timed(subprocess.run, [*pg_dump, "-f", os.devnull], env=env, check=True))
        record(PIPE_GZIP, timed(pipeline, pg_dump, ["gzip", "-6"], gz, env), gz.stat().st_size)
        if zstd_bin:
            record(PIPE_ZSTD, timed(pipeline, pg_dump, [zstd_bin, "-3", "-T0", "-q"], zst, env), zst.stat().st_size)
        # The yardstick restore: the strategy's `gunzip | psql`, one transaction, into a fresh database.
        target = fresh_database(admin)
        try:
            record(PIPE_RESTORE, timed(pipeline, ["gunzip", "-c", str(gz)], psql, None, pg_env(target)))
        finally:
            drop_database(admin, str(conninfo_to_dict(target)["dbname"]))
        for compression in ("gzip", "zstd"):
            config, state = release_toml(work, dsn, compression), work / f"state-{compression}"
            seconds, peak, _ = console(config, state, "backup", "create", "--env", "bench", "--yes")
            folder = next((work / f"store-{compression}" / "bench").iterdir())
            manifest = json.loads((folder / "manifest.json").read_text())
            artifact = next(iter(manifest["artifacts"].values()))
            record(f"console backup, {compression}", seconds, artifact["size"], peak)
            # The restore path as a whole process: a drill downloads the signed backup into a working
            # copy, checks the signature and every sha256, restores with pg_restore -j into a scratch
            # database on the same server, counts and reads it, and drops it.
            seconds, peak, _ = console(config, state, "drill", "--env", "bench", "--yes",
                                       "--backup-id", folder.name)
            record(f"console drill (restore), {compression}", seconds, peak=peak)
            # The restore walkthrough into an empty database, as the yardstick restores into one.
            target = fresh_database(admin)
            try:
                restoring = release_toml(work, target, compression, name=f"restore-{compression}",
                                         health_port=health.server_address[1])
                seconds, peak, _ = console(restoring, state, "restore", "--env", "bench", "--yes",
                                           "--backup-id", folder.name)
                record(f"console restore, {compression}", seconds, peak=peak)
            finally:
                drop_database(admin, str(conninfo_to_dict(target)["dbname"]))
            shutil.rmtree(work / f"store-{compression}", ignore_errors=True)
    return times, sizes, peaks


def _plain_size(pg_dump: list[str], env: dict[str, str]) -> int:
    """The plain SQL's size, once: the MB/s column is in MB of SQL for every contender."""
    process = subprocess.Popen(pg_dump, stdout=subprocess.PIPE, env=env)
    stdout = process.stdout
    assert stdout is not None
    size = sum(len(chunk) for chunk in iter(lambda: stdout.read(1 << 20), b""))
    process.wait(timeout=TIMEOUT_S)
    return size


RAW, PIPE_GZIP, PIPE_ZSTD = "pg_dump > /dev/null (ceiling)", "pg_dump | gzip -6 > file", "pg_dump | zstd -3 -T0 > file"
PIPE_RESTORE = "gunzip -c file | psql"


def _targets(median: dict[str, float], peak_mb: float) -> None:
    gzip_s, zstd_s = median[PIPE_GZIP], median.get(PIPE_ZSTD)
    console_gzip, console_zstd = median["console backup, gzip"], median["console backup, zstd"]
    checks = [
        ("console gzip >= pipeline gzip throughput", console_gzip <= gzip_s, f"{gzip_s / console_gzip:.2f}x"),
        ("console zstd >= 4x pipeline gzip", console_zstd * 4 <= gzip_s, f"{gzip_s / console_zstd:.2f}x"),
        ("console zstd within 1.3x of pg_dump | zstd -3 -T0",
         zstd_s is not None and console_zstd <= 1.3 * zstd_s,
         f"{console_zstd / zstd_s:.2f}x its time" if zstd_s else "skipped: no zstd CLI"),
        ("peak memory of a console process < 150 MB", peak_mb < 150, f"{peak_mb:.0f} MB"),
    ]
    for compression in ("zstd", "gzip"):
        for what in ("restore", "drill (restore)"):
            restore_s = median[f"console {what}, {compression}"]
            checks.append((f"console {what.split()[0]} ({compression}) faster than gunzip | psql",
                           restore_s < median[PIPE_RESTORE], f"{median[PIPE_RESTORE] / restore_s:.2f}x its speed"))
    print(f"\npg_dump alone: {median[RAW]:.1f}s (the ceiling for any backup)")
    for name, ok, figure in checks:
        print(f"{'met   ' if ok else 'MISSED'} {name}: {figure}")


if __name__ == "__main__":
    sys.exit(main())
