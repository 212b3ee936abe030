"""Expand/contract against a real PostgreSQL, with a writer thread playing the app throughout.

The table has a serial primary key and 20,000 rows. While each phase runs, the writer inserts
rows and updates random ones: through the old schema until expand is followed by a deploy, then
(add-column) through the new column too, (rename) through either column at random, and through
the new one only once contract starts. At the end every value the writer wrote must be there.
"""

from __future__ import annotations

import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from rig import config_builder as toml
from rig.helpers import wait_until

from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import ConfirmationNeeded, Event, LogLine, Outcome, Progress, StepFinished, StepStarted
from services.core.operations import Result
from services.factory import Services, build
from services.migrations.expand.params import not_null_check, sync_names

TABLE = "StockItem"  # mixed case: every name must be quoted on its way to SQL
ROWS = 20_000
FAST = {"batch_size": 500, "batch_delay_ms": 5}  # ~40 batches: long enough for the writer to overlap
ADD = {"table": TABLE, "column": "label", "type": "text", "backfill": "'b-' || id", **FAST}
RENAME = {"table": TABLE, "column": "qty", "new_column": "quantity", **FAST}
CHECK = not_null_check(TABLE, "label")
TRIGGER, FUNCTION = sync_names(TABLE, "qty", "quantity")


# --- the rig -----------------------------------------------------------------------------------


def release_toml(tmp_path: Path) -> Path:
    environments = toml.staging_and_production(api_url="http://127.0.0.1:3000/api", redis_url=toml.secret("TEST_REDIS"))
    return toml.release(environments, backup=toml.backup(tmp_path / "backups")).write(tmp_path / "release.toml")


@pytest.fixture
def dsn(pg_database: str) -> str:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        t = sql.Identifier(TABLE)
        conn.execute(sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, name text NOT NULL,"
                             " qty integer NOT NULL DEFAULT 0, unit text)").format(t))
        conn.execute(sql.SQL("CREATE INDEX {} ON {} (qty)").format(sql.Identifier(f"{TABLE}_qty_idx"), t))
        conn.execute(sql.SQL("INSERT INTO {} (name, qty, unit) SELECT 'item ' || i, i %% 1000, 'g'"
                             " FROM generate_series(1, %s) i").format(t), (ROWS,))
    return pg_database


@pytest.fixture
def services(dsn: str, tmp_path: Path) -> Services:
    config = config_module.load(release_toml(tmp_path), {"TEST_DB": dsn, "TEST_REDIS": "redis://127.0.0.1:1/0"})
    return build(config, sandbox_mode=False, state=tmp_path / "state")


@dataclass
class Run:
    result: Result
    events: list[Event]
    asked: list[ConfirmationNeeded]

    def logs(self, step: str | None = None) -> list[str]:
        return [e.text for e in self.events if isinstance(e, LogLine) and (step is None or e.step_id == step)]

    def detail(self, step: str) -> str:
        return next(e.detail for e in self.events if isinstance(e, StepFinished) and e.step_id == step)


def run(services: Services, kind: str, params: dict[str, Any], phase: str, env: str = "staging",
        typed: str | None = "yes", cancel_when: Callable[[Event], bool] | None = None,
        on_event: Callable[[Event], None] | None = None,
        start_at: int = 0, state: dict[str, Any] | None = None, op_id: str | None = None) -> Run:
    events: list[Event] = []
    asked: list[ConfirmationNeeded] = []
    cancel = threading.Event()

    def emit(event: Event) -> None:
        events.append(event)
        if on_event:
            on_event(event)
        if cancel_when and cancel_when(event):
            cancel.set()

    def confirm(question: ConfirmationNeeded) -> str | None:
        asked.append(question)
        return typed

    op = build_operation(services, kind, env, {**{k: str(v) for k, v in params.items()}, "phase": phase})
    if op_id:
        op.id = op_id
    result = services.runner.run(op, emit, confirm, cancel, start_at, state)
    return Run(result, events, asked)


def ok(r: Run) -> Run:
    assert r.result.outcome is Outcome.SUCCEEDED, (r.result, r.logs())
    return r


def failed(r: Run, step: str, *patterns: str) -> str:
    assert r.result.outcome is Outcome.FAILED, (r.result, r.logs())
    assert r.result.failed_step == step, r.result
    for pattern in patterns:
        assert re.search(pattern, r.result.detail), (pattern, r.result.detail)
    return r.result.detail


def fetch(dsn: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, args).fetchall()  # type: ignore[arg-type]


def execute(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def column(dsn: str, name: str) -> tuple[str, bool, str | None] | None:
    """(type, NOT NULL, default) of a column of the table, None if it is not there."""
    rows = fetch(dsn, "SELECT format_type(atttypid, atttypmod), attnotnull, pg_get_expr(adbin, adrelid)"
                      " FROM pg_attribute LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum"
                      " WHERE attrelid = %s::regclass AND attname = %s AND NOT attisdropped", f'"{TABLE}"', name)
    return (rows[0][0], rows[0][1], rows[0][2]) if rows else None


def constraints(dsn: str) -> dict[str, bool]:
    rows = fetch(dsn, "SELECT conname, convalidated FROM pg_constraint WHERE conrelid = %s::regclass", f'"{TABLE}"')
    return {r[0]: r[1] for r in rows}


def triggers(dsn: str) -> set[str]:
    return {r[0] for r in fetch(dsn, "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass"
                                     " AND NOT tgisinternal", f'"{TABLE}"')}


def has_function(dsn: str, name: str) -> bool:
    return bool(fetch(dsn, "SELECT 1 FROM pg_proc WHERE proname = %s", name))


def table_rows(dsn: str, *columns: str) -> dict[int, dict[str, Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql.SQL("SELECT id, {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(TABLE)))
        return {r[0]: dict(zip(columns, r[1:], strict=True)) for r in cur}


# --- the app, writing throughout -------------------------------------------------------------


Columns = Callable[[random.Random], list[str]]


class Writer:
    """The app: inserts a row and updates two random ones, over and over, in its own connection.

    `columns` (switched at each "deploy") picks the columns of each write. `alias` maps two
    columns to one logical value (a rename), so the last write wins whichever name it used.
    """

    def __init__(self, dsn: str, columns: Columns, alias: dict[str, str] | None = None) -> None:
        self.dsn = dsn
        self.columns = columns
        self.alias = alias or {}
        self.expected: dict[int, dict[str, Any]] = {}
        self.errors: list[BaseException] = []
        self.writes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        self.wait_for_writes()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def check(self) -> None:
        assert not self.errors, self.errors
        assert self.writes > 50, f"the writer hardly ran ({self.writes} writes)"

    def wait_for_writes(self, count: int = 20) -> None:
        """Until the app has made `count` more writes (or failed: check() says how)."""
        target = self.writes + count
        wait_until(lambda: self.errors or self.writes >= target, timeout=60, interval=0.01,
                   what=f"{count} more writes of the app")

    def deploy(self, columns: Columns) -> None:
        """Writes by the old app, then the new one takes over and writes too."""
        self.wait_for_writes()
        self.columns = columns
        self.wait_for_writes()

    def _loop(self) -> None:
        rng = random.Random(11)
        top, n = ROWS, 0
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self._stop.is_set():
                    n += 1
                    wrote = {c: (f"app-{n}" if c in ("unit", "label") else 1_000_000 + n) for c in self.columns(rng)}
                    names = sql.SQL(", ").join(sql.Identifier(c) for c in wrote)
                    if n % 3 == 0:
                        marks = sql.SQL(", ").join(sql.Placeholder() for _ in wrote)
                        row = conn.execute(sql.SQL("INSERT INTO {} (name, {}) VALUES (%s, {}) RETURNING id").format(
                            sql.Identifier(TABLE), names, marks), [f"new-{n}", *wrote.values()]).fetchone()
                        assert row is not None
                        target = row[0]
                        top = max(top, target)
                    else:
                        target = rng.randint(1, top)
                        sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in wrote)
                        conn.execute(sql.SQL("UPDATE {} SET {} WHERE id = %s").format(sql.Identifier(TABLE), sets),
                                     [*wrote.values(), target])
                    mine = self.expected.setdefault(target, {})
                    for name, value in wrote.items():
                        mine[self.alias.get(name, name)] = value
                    self.writes += 1
                    time.sleep(0.002)
        except BaseException as err:  # noqa: BLE001 - check() reports it
            self.errors.append(err)


def only(*names: str) -> Columns:
    return lambda rng: list(names)


def either(*names: str) -> Columns:
    return lambda rng: [rng.choice(names)]


class Blocker:
    """Another session that holds ACCESS EXCLUSIVE on the table for `seconds`, or until stopped."""

    def __init__(self, dsn: str, seconds: float) -> None:
        self.dsn, self.seconds = dsn, seconds
        self.held, self.done, self.let_go = threading.Event(), threading.Event(), threading.Event()
        self.pid = 0
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        with psycopg.connect(self.dsn, application_name="the blocker") as conn:
            self.pid = conn.info.backend_pid
            conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(TABLE)))
            self.held.set()
            self.done.wait(self.seconds)
            self.let_go.set()  # before the rollback that releases the lock: nobody gets it earlier
            conn.rollback()

    def start(self) -> Blocker:
        self._thread.start()
        assert self.held.wait(10), "could not take the lock"
        return self

    def stop(self) -> None:
        self.done.set()
        self._thread.join(timeout=10)


@contextmanager
def holding_lock(dsn: str, seconds: float) -> Iterator[Blocker]:
    blocker = Blocker(dsn, seconds).start()
    try:
        yield blocker
    finally:
        blocker.stop()


# --- whole runs --------------------------------------------------------------------------------


def test_add_column_expand_backfill_contract_loses_no_write(services: Services, dsn: str) -> None:
    with Writer(dsn, only("unit")) as app:  # the old app does not know the new column
        expand = ok(run(services, "expand-add-column", ADD, "expand"))
        assert column(dsn, "label") == ("text", False, None)
        app.deploy(only("unit", "label"))  # the new app writes it
        backfill = ok(run(services, "expand-add-column", ADD, "backfill"))
        contract = ok(run(services, "expand-add-column", ADD, "contract"))
    app.check()

    assert column(dsn, "label") == ("text", True, None)
    assert CHECK not in constraints(dsn)
    rows = table_rows(dsn, "unit", "label")
    for row_id, wrote in app.expected.items():
        for name, value in wrote.items():
            assert rows[row_id][name] == value, (row_id, name, rows[row_id], wrote)
    written = {i for i, w in app.expected.items() if "label" in w}
    assert all(rows[i]["label"] == f"b-{i}" for i in rows if i not in written)  # the backfill value elsewhere
    progress = [e for e in backfill.events if isinstance(e, Progress)]
    assert progress and progress[-1].done == progress[-1].total and progress[-1].unit == "rows"
    assert "rows in" in backfill.detail("backfill")
    assert any(re.search(r"rows/s, ETA \d+ s", line) for line in backfill.logs("backfill")), backfill.logs()
    password = urllib.parse.urlsplit(dsn).password
    assert password
    everything = " ".join(map(str, expand.events + backfill.events + contract.events))
    assert password not in everything


def test_rename_column_expand_backfill_contract_loses_no_write(services: Services, dsn: str) -> None:
    with Writer(dsn, only("qty"), alias={"qty": "Q", "quantity": "Q"}) as app:
        expand = ok(run(services, "expand-rename-column", RENAME, "expand"))
        assert any("StockItem_qty_idx" in line for line in expand.logs("check"))  # it goes with qty at contract
        app.deploy(either("qty", "quantity"))  # old and new app versions side by side
        ok(run(services, "expand-rename-column", RENAME, "backfill"))
        app.deploy(only("quantity"))  # every app reads the new name now
        contract = ok(run(services, "expand-rename-column", RENAME, "contract"))
    app.check()

    assert len(contract.asked) == 1 and "Drop StockItem.qty" in contract.asked[0].prompt
    assert column(dsn, "qty") is None
    assert column(dsn, "quantity") == ("integer", True, "0")  # NOT NULL and the default carried over
    assert TRIGGER not in triggers(dsn) and not has_function(dsn, FUNCTION)
    assert not_null_check(TABLE, "quantity") not in constraints(dsn)
    rows = table_rows(dsn, "quantity")
    assert len(rows) >= ROWS
    for row_id, wrote in app.expected.items():
        assert rows[row_id]["quantity"] == wrote["Q"], (row_id, rows[row_id], wrote)
    assert all(rows[i]["quantity"] == i % 1000 for i in range(1, ROWS + 1) if i not in app.expected)


def test_rename_keeps_both_columns_equal_until_contract(services: Services, dsn: str) -> None:
    with Writer(dsn, only("qty"), alias={"qty": "Q", "quantity": "Q"}) as app:
        ok(run(services, "expand-rename-column", RENAME, "expand"))
        app.deploy(either("qty", "quantity"))
        ok(run(services, "expand-rename-column", RENAME, "backfill"))
        app.wait_for_writes()  # writes after the backfill: the trigger keeps both columns equal
    app.check()
    rows = table_rows(dsn, "qty", "quantity")
    assert all(r["qty"] == r["quantity"] for r in rows.values())
    for row_id, wrote in app.expected.items():
        assert rows[row_id]["qty"] == wrote["Q"] == rows[row_id]["quantity"]


def test_production_contract_asks_for_the_environment_name(services: Services, dsn: str) -> None:
    for phase in ("expand", "backfill"):
        ok(run(services, "expand-rename-column", RENAME, phase, env="production", typed="production"))
    declined = run(services, "expand-rename-column", RENAME, "contract", env="production", typed="yes")
    assert declined.result.outcome is Outcome.DECLINED
    assert column(dsn, "qty") is not None
    assert all(q.expected == "production" for q in declined.asked)


# --- lock_timeout and retries --------------------------------------------------------------------


def test_expand_retries_while_a_lock_is_held_then_succeeds(services: Services, dsn: str) -> None:
    with holding_lock(dsn, 1.5) as blocker:
        r = ok(run(services, "expand-add-column", ADD, "expand"))
        assert blocker.let_go.is_set()  # it went on only once the blocker had let go by itself
    retries = [line for line in r.logs("expand") if "lock not granted" in line]
    assert retries, r.logs()
    assert f"pid {blocker.pid}" in retries[0] and "the blocker" in retries[0] and "AccessExclusiveLock" in retries[0]
    assert column(dsn, "label") == ("text", False, None)


def test_expand_gives_up_on_a_lock_held_too_long_and_changes_nothing(services: Services, dsn: str) -> None:
    with holding_lock(dsn, 60) as blocker:
        r = run(services, "expand-add-column", {**ADD, "lock_retries": 3, "lock_timeout_ms": 200}, "expand")
    failed(r, "expand", r"could not lock StockItem within 200 ms in 3 tries", f"pid {blocker.pid}", "the blocker")
    assert len([line for line in r.logs("expand") if "lock not granted" in line]) == 2
    assert column(dsn, "label") is None


def test_contract_retries_too(services: Services, dsn: str) -> None:
    for phase in ("expand", "backfill"):
        ok(run(services, "expand-add-column", ADD, phase))
    blocker = Blocker(dsn, 1.2)

    def block_at_add_check(event: Event) -> None:  # after the check step's count, which would wait it out
        if isinstance(event, StepStarted) and event.step_id == "add-check":
            blocker.start()

    try:
        r = ok(run(services, "expand-add-column", ADD, "contract", on_event=block_at_add_check))
    finally:
        blocker.stop()
    assert any("lock not granted" in line for line in r.logs("add-check"))
    assert column(dsn, "label") == ("text", True, None)


# --- aborts ---------------------------------------------------------------------------------------


def test_abort_expand_add_column_drops_it(services: Services, dsn: str) -> None:
    before = table_rows(dsn, "name", "qty", "unit")
    ok(run(services, "expand-add-column", ADD, "expand"))
    ok(run(services, "expand-add-column", ADD, "backfill"))
    r = ok(run(services, "expand-add-column", ADD, "abort-expand"))
    assert r.asked and "Drop the new column StockItem.label" in r.asked[0].prompt
    assert column(dsn, "label") is None
    assert table_rows(dsn, "name", "qty", "unit") == before
    assert "nothing to undo" in ok(run(services, "expand-add-column", ADD, "abort-expand")).detail("check")


def test_abort_expand_rename_keeps_writes_made_through_the_new_column(services: Services, dsn: str) -> None:
    with Writer(dsn, only("qty"), alias={"qty": "Q", "quantity": "Q"}) as app:
        ok(run(services, "expand-rename-column", RENAME, "expand"))
        app.deploy(either("qty", "quantity"))
        app.wait_for_writes()
        app.deploy(only("qty"))  # the new app is rolled back first, then expand is undone
        ok(run(services, "expand-rename-column", RENAME, "abort-expand"))
    app.check()
    assert column(dsn, "quantity") is None and column(dsn, "qty") == ("integer", True, "0")
    assert TRIGGER not in triggers(dsn) and not has_function(dsn, FUNCTION)
    rows = table_rows(dsn, "qty")
    for row_id, wrote in app.expected.items():
        assert rows[row_id]["qty"] == wrote["Q"]


def test_abort_backfill_stops_and_changes_nothing(services: Services, dsn: str) -> None:
    ok(run(services, "expand-add-column", ADD, "expand"))
    cancelled = run(services, "expand-add-column", {**ADD, "batch_size": 200, "batch_delay_ms": 20}, "backfill",
                    cancel_when=lambda e: isinstance(e, Progress) and e.done >= 2000)
    assert cancelled.result.outcome is Outcome.CANCELLED and cancelled.result.failed_step == "backfill"
    r = ok(run(services, "expand-add-column", ADD, "abort-backfill"))
    done = int(re.match(r"(\d+)/20000 rows backfilled", r.detail("report")).group(1))  # type: ignore[union-attr]
    assert 2000 <= done < ROWS
    assert column(dsn, "label") == ("text", False, None) and CHECK not in constraints(dsn)
    # and contract refuses, counting what is left
    failed(run(services, "expand-add-column", ADD, "contract"), "check", f"{ROWS - done} of {ROWS} rows still have")


def test_abort_contract_add_column_mid_way_and_after(services: Services, dsn: str) -> None:
    for phase in ("expand", "backfill"):
        ok(run(services, "expand-add-column", ADD, phase))
    stopped = run(services, "expand-add-column", ADD, "contract",
                  cancel_when=lambda e: isinstance(e, StepFinished) and e.step_id == "add-check")
    assert stopped.result.outcome is Outcome.CANCELLED
    assert constraints(dsn).get(CHECK) is False  # NOT VALID, as left mid-way
    ok(run(services, "expand-add-column", ADD, "abort-contract"))
    assert CHECK not in constraints(dsn) and column(dsn, "label") == ("text", False, None)

    ok(run(services, "expand-add-column", ADD, "contract"))
    assert column(dsn, "label") == ("text", True, None)
    ok(run(services, "expand-add-column", ADD, "abort-contract"))
    assert column(dsn, "label") == ("text", False, None) and CHECK not in constraints(dsn)
    assert all(r["label"] == f"b-{i}" for i, r in table_rows(dsn, "label").items())


def test_abort_contract_rename_mid_way_and_after(services: Services, dsn: str) -> None:
    for phase in ("expand", "backfill"):
        ok(run(services, "expand-rename-column", RENAME, phase))
    declined = run(services, "expand-rename-column", RENAME, "contract", typed=None)  # stops at the confirmation
    assert declined.result.outcome is Outcome.DECLINED
    check = not_null_check(TABLE, "quantity")
    assert constraints(dsn).get(check) is True  # carried over, validated, before the drop
    ok(run(services, "expand-rename-column", RENAME, "abort-contract"))
    assert check not in constraints(dsn) and column(dsn, "qty") is not None and TRIGGER in triggers(dsn)

    ok(run(services, "expand-rename-column", RENAME, "contract"))
    failed(run(services, "expand-rename-column", RENAME, "abort-contract"), "undo", "contract finished",
           "column=quantity new_column=qty")


# --- resume ----------------------------------------------------------------------------------------


def test_a_cancelled_backfill_resumes_where_it_stopped(services: Services, dsn: str) -> None:
    ok(run(services, "expand-add-column", ADD, "expand"))
    slow = {**ADD, "batch_size": 200, "batch_delay_ms": 20}
    first = run(services, "expand-add-column", slow, "backfill",
                cancel_when=lambda e: isinstance(e, Progress) and e.done >= 3000)
    assert first.result.outcome is Outcome.CANCELLED and first.result.failed_step == "backfill"
    record = services.journal.get(first.result.op_id)
    assert record.steps[record.resume_index].step_id == "backfill"

    second = ok(run(services, "expand-add-column", slow, "backfill", start_at=record.resume_index,
                    state=record.state, op_id=record.id))
    assert not any(isinstance(e, StepStarted) and e.step_id == "check" for e in second.events)
    already = int(re.search(r"(\d+) already backfilled", second.logs("backfill")[0]).group(1))  # type: ignore[union-attr]
    assert 3000 <= already < ROWS
    done = int(re.match(r"(\d+) rows in", second.detail("backfill")).group(1))  # type: ignore[union-attr]
    assert done == ROWS - already  # nothing done twice, nothing skipped
    assert fetch(dsn, f'SELECT count(*) FROM "{TABLE}" WHERE label IS NULL') == [(0,)]


# --- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "params", "phase", "step", "pattern"), [
    ("expand-add-column", {**ADD, "table": "Nope"}, "expand", "check", "table 'Nope' not found"),
    ("expand-add-column", {**ADD, "column": "unit"}, "expand", "check", "StockItem.unit already exists"),
    ("expand-add-column", ADD, "backfill", "check", "StockItem.label does not exist: run phase=expand first"),
    ("expand-add-column", {**ADD, "type": "text; DROP TABLE x"}, "expand", "check", "is not one this tool accepts"),
    ("expand-add-column", {**ADD, "type": "bigserial"}, "expand", "check", "is not one this tool accepts"),
    ("expand-add-column", ADD, "sideways", "check", "phase must be one of"),
    ("expand-add-column", {"table": TABLE}, "expand", "check", "column is required.*type is required"),
    ("expand-add-column", {**ADD, "batch_size": "lots"}, "backfill", "check", "batch_size must be a whole number"),
    ("expand-rename-column", {**RENAME, "column": "nope"}, "expand", "check", "StockItem.nope does not exist"),
    ("expand-rename-column", {**RENAME, "new_column": "unit"}, "expand", "check", "StockItem.unit already exists"),
    ("expand-rename-column", {**RENAME, "column": "id", "new_column": "key"}, "expand", "check", "primary key"),
    ("expand-rename-column", RENAME, "contract", "check", "StockItem.quantity does not exist"),
    ("expand-rename-column", RENAME, "backfill", "check", "run phase=expand first"),
])
def test_bad_input_fails_with_a_clear_message(services: Services, kind: str, params: dict[str, Any], phase: str,
                                              step: str, pattern: str) -> None:
    failed(run(services, kind, params, phase), step, pattern)


def test_contract_before_backfill_is_refused_with_the_count(services: Services, dsn: str) -> None:
    ok(run(services, "expand-add-column", ADD, "expand"))
    failed(run(services, "expand-add-column", ADD, "contract"), "check", f"{ROWS} of {ROWS} rows still have label NULL")
    ok(run(services, "expand-rename-column", RENAME, "expand"))
    failed(run(services, "expand-rename-column", RENAME, "contract"), "check",
           f"{ROWS} of {ROWS} rows have quantity different from qty")
    assert column(dsn, "qty") is not None


@pytest.mark.parametrize(("ddl", "pattern"), [
    ('CREATE TABLE "Loose" (a int, b text)', "Loose has no primary key"),
    ('CREATE TABLE "Loose" (a int, b int, PRIMARY KEY (a, b))', r"composite primary key \(a, b\)"),
])
def test_tables_without_a_single_column_key_are_refused(services: Services, dsn: str, ddl: str, pattern: str) -> None:
    execute(dsn, ddl)
    failed(run(services, "expand-add-column", {**ADD, "table": "Loose"}, "expand"), "check", pattern)
