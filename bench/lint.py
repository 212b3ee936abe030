"""Migration lint of a 160-migration Prisma history (issue 16: at most 0.3 s, parsed once, cached by
checksum), in one run against its yardstick: the regex engine it replaced, loaded from the commit
before the change (git show REGEX_COMMIT:services/migrations/lint.py).

Figures, each the median of ROUNDS in-process runs of lint_migrations over the same 160 files:
  regex engine   the old lint (no parser, no cache)
  cold           pglast, the parse cache emptied before each run (a first lint of these files)
  cached         pglast, the files parsed already (a re-lint of unchanged files: the pane's refresh)
and the engine's import in a fresh interpreter (pglast's import, paid on the first lint only).

With RC_PG_DSN (the rig: `bash tests/rig/run --exec uv run --frozen python bench/lint.py`), in the same run:
  pglast + estimates, cold/cached  the same lint plus the database step of `migrate lint` (lint_live.against):
                                   every table the findings name exists, with rows, ANALYZEd, in a bench
                                   database; one catalog query per lint
  lock rates                   the MB/s that lint_live's lock estimates divide by: a rewrite (ALTER COLUMN
                               TYPE int -> bigint), a validation scan (ADD CHECK) and an index build (CREATE
                               INDEX) of a RATE_ROWS-row Prisma-shaped table with two indexes, each the median
                               of 3, data in memory (the table was just written)

Run: uv run --frozen python bench/lint.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.migrations import lint, lint_parse  # noqa: E402

REGEX_COMMIT = "43ce0a6"
RATE_ROWS = 1_000_000
MIGRATIONS = 160
ROUNDS = 15


def history(count: int) -> list[tuple[str, str]]:
    """A Prisma history as `prisma migrate dev` writes it: models, relations, columns, indexes, enums."""
    files = []
    for i in range(count):
        m, prev = f"Model{i}", f"Model{max(i - 1, 0)}"
        kind = i % 5
        if kind in (0, 1):
            sql = f"""-- CreateTable
CREATE TABLE "{m}" (
    "id" SERIAL NOT NULL,
    "name" TEXT NOT NULL,
    "slug" VARCHAR(191) NOT NULL,
    "price" DECIMAL(65,30) NOT NULL DEFAULT 0,
    "active" BOOLEAN NOT NULL DEFAULT true,
    "meta" JSONB,
    "{prev.lower()}Id" INTEGER,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "{m}_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "{m}_slug_key" ON "{m}"("slug");

-- CreateIndex
CREATE INDEX "{m}_createdAt_idx" ON "{m}"("createdAt");

-- AddForeignKey
ALTER TABLE "{m}" ADD CONSTRAINT "{m}_{prev.lower()}Id_fkey" FOREIGN KEY ("{prev.lower()}Id") REFERENCES "{prev}"("id") ON DELETE SET NULL ON UPDATE CASCADE;
"""  # noqa: E501
        elif kind == 2:
            sql = f"""SET lock_timeout = '500ms';
-- AlterTable
ALTER TABLE "{prev}" ADD COLUMN     "note" TEXT,
ADD COLUMN     "rank" INTEGER NOT NULL DEFAULT 0;

-- CreateIndex
CREATE INDEX "{prev}_rank_idx" ON "{prev}"("rank");
"""
        elif kind == 3:
            sql = f"""-- CreateEnum
CREATE TYPE "{m}Status" AS ENUM ('DRAFT', 'ACTIVE', 'ARCHIVED');

-- AlterTable
ALTER TABLE "{prev}" ADD COLUMN     "status" "{m}Status" NOT NULL DEFAULT 'DRAFT';

-- CreateTable
CREATE TABLE "_{m}To{prev}" (
    "A" INTEGER NOT NULL,
    "B" INTEGER NOT NULL
);

-- CreateIndex
CREATE UNIQUE INDEX "_{m}To{prev}_AB_unique" ON "_{m}To{prev}"("A", "B");
"""
        else:
            sql = f"""/*
  Warnings:

  - You are about to drop the column `note` on the `{prev}` table. All the data in the column will be lost.

*/
-- AlterTable
ALTER TABLE "{prev}" DROP COLUMN "note",
ALTER COLUMN "name" SET DATA TYPE VARCHAR(200);

CREATE OR REPLACE FUNCTION "{m.lower()}_touch"() RETURNS trigger AS $$
BEGIN
  NEW."updatedAt" := now();
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""
        files.append((f"2024{i // 28 + 1:02d}{i % 28 + 1:02d}120000_{m.lower()}", sql))
    return files


def regex_engine() -> Callable[[list[tuple[str, str]]], list[object]]:
    source = subprocess.run(["git", "show", f"{REGEX_COMMIT}:services/migrations/lint.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("lint_regex")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{REGEX_COMMIT}:services/migrations/lint.py", "exec"), module.__dict__)  # noqa: S102
    return module.lint_migrations  # type: ignore[no-any-return]


def timed(run: Callable[[], object], before: Callable[[], object] = lambda: None) -> list[float]:
    times = []
    for _ in range(ROUNDS):
        before()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def import_seconds() -> list[float]:
    probe = ("import time; t = time.perf_counter(); import services.migrations.lint_engine; "
             "print(time.perf_counter() - t)")
    return [float(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout) for _ in range(5)]


def main() -> int:
    files = history(MIGRATIONS)
    size = sum(len(sql) for _, sql in files)
    old = regex_engine()
    print(f"{len(files)} migrations, {size / 1000:.0f} kB, {ROUNDS} rounds; findings: regex "
          f"{len(old(files))}, pglast {len(lint.lint_migrations(files))}")
    figures = {
        "regex engine (yardstick)": timed(lambda: old(files)),
        "pglast, cold (cache emptied)": timed(lambda: lint.lint_migrations(files), lint_parse._cache.clear),
        "pglast, cached (unchanged files)": timed(lambda: lint.lint_migrations(files)),
        "engine import (fresh process)": import_seconds(),
    }
    admin = os.environ.get("RC_PG_DSN")
    if admin:
        with bench_database(admin) as dsn:
            figures |= with_estimates(dsn, files)
            rates = lock_rates(dsn)
    else:
        print("RC_PG_DSN is not set: no database case (run it in the rig)")
    yardstick = statistics.median(figures["regex engine (yardstick)"])
    for name, times in figures.items():
        median = statistics.median(times)
        ratio = f"  {median / yardstick:5.2f}x regex" if "import" not in name else ""
        print(f"{name:38} median {median * 1000:6.1f} ms  (min {min(times) * 1000:6.1f}, max "
              f"{max(times) * 1000:6.1f}){ratio}")
    if admin:
        for work, mb_s in rates.items():
            print(f"lock rate, {work:18} {mb_s:6.0f} MB/s")
    budget = [name for name in figures if "cold" in name]
    return 0 if all(statistics.median(figures[name]) <= 0.3 for name in budget) else 1


@contextmanager
def bench_database(admin: str) -> Iterator[str]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"rc_bench_lint_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(**{**conninfo_to_dict(admin), "dbname": name})
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def with_estimates(dsn: str, files: list[tuple[str, str]]) -> dict[str, list[float]]:
    """The lint with the database step, every table its findings name live (1000 rows each, ANALYZEd)."""
    import psycopg
    from pydantic import SecretStr

    from services.adapters.postgres import PostgresMigrations
    from services.migrations.lint_live import against

    tables = sorted({f.table for f in lint.lint_migrations(files) if f.table})
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in tables:
            conn.execute(sql.SQL('CREATE TABLE {} ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL)').format(
                sql.Identifier(table)))
            conn.execute(sql.SQL("INSERT INTO {} (\"name\") SELECT 'row ' || g FROM generate_series(1, 1000) g")
                         .format(sql.Identifier(table)))
        conn.execute("ANALYZE")
    database = PostgresMigrations(SecretStr(dsn), ROOT)
    scripts = [text for _, text in files]
    try:
        findings = against(database, lint.lint_migrations(files), scripts, 10)
        print(f"with estimates: {len(tables)} live tables, {sum(f.size_bytes is not None for f in findings)} "
              f"findings with estimates, {sum(f.blocking for f in findings)} blocking")
        run = lambda: against(database, lint.lint_migrations(files), scripts, 10)  # noqa: E731
        return {"pglast + estimates, cold": timed(run, lint_parse._cache.clear),
                "pglast + estimates, cached": timed(run)}
    finally:
        database.close()


def lock_rates(dsn: str) -> dict[str, float]:
    """MB/s of a rewrite, a validation scan and an index build: the work the table's size over the rate
    estimates, as lint_live reads the sizes (total bytes for a rewrite, heap bytes for the others)."""
    import psycopg

    steps = {
        "rewrite": ('ALTER TABLE rates ALTER COLUMN "rank" TYPE {}', True),
        "scan (validate)": ('ALTER TABLE rates ADD CONSTRAINT "c{}" CHECK ("name" IS NOT NULL)', False),
        "index build": ('CREATE INDEX "i{}" ON rates ("name")', False),
    }
    times: dict[str, list[float]] = {work: [] for work in steps}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('CREATE TABLE rates ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL, "slug" TEXT NOT NULL,'
                     ' "rank" INTEGER NOT NULL, "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP)')
        conn.execute(f"""INSERT INTO rates ("name", "slug", "rank") SELECT 'Ingredient number ' || g,
                         'ingredient-' || g, g FROM generate_series(1, {RATE_ROWS}) g""")
        conn.execute('CREATE UNIQUE INDEX rates_slug_key ON rates ("slug")')
        conn.execute("VACUUM ANALYZE rates")
        mb_s = {}
        for work, (statement, total) in steps.items():
            for round_ in range(3):
                function = "pg_total_relation_size" if total else "pg_relation_size"
                size = conn.execute(f"SELECT {function}('rates')").fetchone()
                text = statement.format(("BIGINT", "INTEGER", "BIGINT")[round_] if total else round_)
                start = time.perf_counter()
                conn.execute(text)  # type: ignore[call-overload]
                times[work].append(time.perf_counter() - start)
            mb_s[work] = int(size[0]) / 1e6 / statistics.median(times[work]) if size else 0.0
        conn.execute("DROP TABLE rates")
    return mb_s


if __name__ == "__main__":
    sys.exit(main())
