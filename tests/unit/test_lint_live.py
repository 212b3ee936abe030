"""The lint's levels against the database's estimates (lint_live): empty and new tables are information,
a lock on a small table is a warning, a live table of real size keeps BLOCKING; the lock estimate is
the size over the rate; offline, the parser's findings say why there are no estimates."""

from __future__ import annotations

import pytest

from services.core.ports import TableSize
from services.migrations import lint_live
from services.migrations.lint import Finding, counts, lint_sql

MB = 1_000_000
INDEX = 'SET lock_timeout = \'1s\';\nCREATE INDEX "User_email_idx" ON "User"("email");\n'
RENAME = 'SET lock_timeout = \'1s\';\nALTER TABLE "User" RENAME COLUMN "email" TO "mail";\n'
TYPE = 'SET lock_timeout = \'1s\';\nALTER TABLE "User" ALTER COLUMN "age" TYPE BIGINT;\n'


def one(sql: str, size: TableSize | None, created: tuple[str, ...] = (), blocking_mb: float = 10) -> Finding:
    findings = lint_live.with_estimates(lint_sql(sql, "m"), {"User": size} if size else {}, created,
                                        round(blocking_mb * MB))
    assert len(findings) == 1, findings
    return findings[0]


def test_the_parser_finds_the_table_each_finding_locks() -> None:
    assert [(f.rule, f.table) for f in lint_sql(INDEX + RENAME)] == [
        ("create-index-non-concurrently", "User"), ("renaming-column", "User")]
    assert [(f.rule, f.table) for f in lint_sql('DROP TABLE "Old", "Older";\nALTER TABLE "User" ADD COLUMN "x" INT '
                                                 "NOT NULL;")] == [
        ("missing-lock-timeout", ""), ("dropping-table", "Old"), ("adding-not-null-without-default", "User")]


def test_a_live_table_of_real_size_keeps_blocking_with_its_estimates() -> None:
    f = one(INDEX, TableSize(2_000_000, 400 * MB, 300 * MB))
    assert (f.level, f.estimated_rows, f.size_bytes) == ("blocking", 2_000_000, 400 * MB)
    assert f.estimated_lock_s == pytest.approx(300 / lint_live.INDEX_MB_S, rel=1e-3)  # table bytes / rate
    assert "~2,000,000 rows, 400.0 MB: index build holds the lock" in f.note and "(estimate)" in f.note


def test_a_rewrite_is_estimated_on_the_total_size() -> None:
    f = one(TYPE, TableSize(2_000_000, 400 * MB, 300 * MB))
    assert f.estimated_lock_s == pytest.approx(400 / lint_live.REWRITE_MB_S, rel=1e-3)


@pytest.mark.parametrize("size", [TableSize(0, 16384, 0), TableSize(0, 24576, 8192), TableSize(None, 8192, 0)])
def test_an_empty_table_is_information(size: TableSize) -> None:
    for sql in (INDEX, RENAME, TYPE):
        f = one(sql, size)
        assert (f.level, f.blocking, f.info) == ("info", False, True)
        assert f.note.startswith("empty table")


def test_a_lock_on_a_small_table_is_a_warning_but_a_rename_stays_blocking() -> None:
    small = TableSize(3000, 2 * MB, 1 * MB)
    indexed = one(INDEX, small)
    assert indexed.level == "warning" and "below the blocking size (10.0 MB" in indexed.note
    renamed = one(RENAME, small)  # breaks the running app whatever the size
    assert renamed.level == "blocking" and renamed.estimated_lock_s == 0.0 and "brief" in renamed.note
    assert one(INDEX, small, blocking_mb=1).level == "blocking"  # the threshold is the config's


def test_rows_analyzed_as_none_but_a_table_past_the_threshold_is_not_empty() -> None:
    assert one(INDEX, TableSize(0, 50 * MB, 40 * MB)).level == "blocking"
    never_analyzed = one(INDEX, TableSize(None, 50 * MB, 40 * MB))
    assert never_analyzed.level == "blocking" and "unknown rows (never analyzed)" in never_analyzed.note


def test_a_table_created_earlier_in_the_batch_is_information() -> None:
    f = one(INDEX, None, created=("User",))
    assert f.level == "info" and f.size_bytes is None and "created earlier in this batch" in f.note


def test_a_table_the_database_lacks_is_said_so_and_keeps_its_level() -> None:
    f = one(INDEX, None)
    assert f.level == "blocking" and "does not exist in the database" in f.note and f.estimated_rows is None


def test_findings_of_the_whole_migration_are_untouched() -> None:
    findings = lint_live.with_estimates(lint_sql('CREATE INDEX "i" ON "User"("x");'), {}, (), MB)
    assert findings[0].rule == "missing-lock-timeout" and findings[0].note == "" and findings[0].level == "warning"


def test_offline_keeps_the_parsers_levels_and_says_why() -> None:
    parsed = lint_sql(INDEX + RENAME)
    offline = lint_live.offline(parsed, "cannot connect to postgresql://app:***@db/app: refused")
    assert [(f.rule, f.level) for f in offline] == [(f.rule, f.level) for f in parsed]
    assert {f.note for f in offline} == {"no estimates: cannot connect to postgresql://app:***@db/app: refused"}


def test_counts_name_the_information_only_when_there_is_some() -> None:
    parsed = lint_sql(INDEX + RENAME)
    assert counts(parsed) == "2 blocking, 0 warnings"
    empty = lint_live.with_estimates(parsed, {"User": TableSize(0, 8192, 0)}, (), MB)
    assert counts(empty) == "0 blocking, 0 warnings, 2 info"
