"""Deploy time: 100 small migrations through the console vs the same SQL files with psql.

Each contender gets a fresh database and the same 100 migration folders. Compared in one run:
  - psql, one process per file (what a shell loop over the folders does);
  - psql, one process with all files as -f arguments (the stronger yardstick);
  - the console's apply of all pending migrations (Prisma's lock, _prisma_migrations rows);
  - the console's whole `migrate` operation (lint, backup, apply, integrity, reindex), for information.

    RC_PG_DSN=postgresql://USER:PASS@127.0.0.1:PORT/postgres uv run python bench/migrate_deploy.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services import factory  # noqa: E402
from services.adapters.postgres import PostgresMigrations  # noqa: E402
from services.catalog import build_operation  # noqa: E402
from services.core import config as config_module  # noqa: E402

COUNT = 100
ROUNDS = 3


def write_migrations(root: Path) -> list[Path]:
    root.mkdir(parents=True)
    (root / "migration_lock.toml").write_text('provider = "postgresql"\n')
    files = []
    for i in range(COUNT):
        folder = root / f"2024{i:010d}_step_{i}"
        folder.mkdir()
        table = f'"T{i - i % 2}"'
        body = f'CREATE TABLE {table} ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL);\n' if i % 2 == 0 else \
            f'ALTER TABLE {table} ADD COLUMN "extra" TEXT;\nCREATE INDEX "T{i - 1}_name_idx" ON {table}("name");\n'
        (folder / "migration.sql").write_text(body)
        files.append(folder / "migration.sql")
    return files


def fresh_database(admin: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(admin, dbname=name)


def drop_database(admin: str, dsn: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))


def psql(dsn: str, files: list[Path], one_process: bool) -> None:
    base = [shutil.which("psql") or "psql", "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-d", dsn]
    if one_process:
        subprocess.run([*base, *[arg for f in files for arg in ("-f", str(f))]], check=True, stdout=subprocess.DEVNULL)
        return
    for file in files:
        subprocess.run([*base, "-f", str(file)], check=True, stdout=subprocess.DEVNULL)


def console_apply(dsn: str, root: Path) -> None:
    database = PostgresMigrations(SecretStr(dsn), root)
    with database.lock(lambda line: None):
        for record in database.status():
            database.apply(record.name, lambda line: None)


def console_operation(dsn: str, root: Path) -> None:
    toml = root.parent / "release.toml"
    toml.write_text(f"""[app]\nname = "bench"\nimage = "bench"\n[environments.bench]\napi_url = "http://127.0.0.1:1"
database_url = "${{DB}}"\nredis_url = "redis://127.0.0.1:1"\n[backup]\nlocal_dir = "backups"
[migrations]\ndir = "{root.name}"\nintegrity_tables = []\nreindex_tables = []\n""")
    services = factory.build(config_module.load(toml, {"DB": dsn}), state=root.parent / "state")
    result = services.runner.run(build_operation(services, "migrate", "bench"), lambda e: None, lambda q: "yes")
    assert result.outcome.value == "succeeded", result.detail


def main() -> None:
    admin = os.environ.get("RC_PG_DSN")
    if not admin:
        sys.exit("set RC_PG_DSN to a superuser DSN (bash tests/rig/run exports one)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "migrations"
        files = write_migrations(root)
        contenders: dict[str, Callable[[str], None]] = {
            "psql, a process per file": lambda dsn: psql(dsn, files, one_process=False),
            "psql, one process, 100 -f": lambda dsn: psql(dsn, files, one_process=True),
            "console: apply 100 (Prisma lock + rows)": lambda dsn: console_apply(dsn, root),
            "console: whole migrate operation": lambda dsn: console_operation(dsn, root),
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(ROUNDS):
            for name, run in contenders.items():
                dsn = fresh_database(admin)
                started = time.perf_counter()
                run(dsn)
                times[name].append(time.perf_counter() - started)
                drop_database(admin, dsn)
    print(f"deploy {COUNT} small migrations, {ROUNDS} rounds, median seconds")
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(f"  {name:<42} {median:6.2f} s  (min {min(times[name]):.2f}, max {max(times[name]):.2f})")
    yardstick = medians["psql, one process, 100 -f"]
    ours = medians["console: apply 100 (Prisma lock + rows)"]
    print(f"  ratio console apply / psql one process: {ours / yardstick:.2f}x (target <= 1.2x);"
          f" / psql per file: {ours / medians['psql, a process per file']:.2f}x")


if __name__ == "__main__":
    main()
