"""Expand/contract in --sandbox: every phase and abort over the simulated Ingredient table."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest

from services.catalog import build_operation
from services.core.events import ConfirmationNeeded, Event, LogLine, Outcome, Progress, StepFinished
from services.core.operations import Result
from services.core.ports import Fill, TableInfo
from services.factory import EXAMPLE_CONFIG, Services, build, load_config
from services.migrations.expand.params import not_null_check, sync_names, valid_type

SCALE = 3000
ADD = {"table": "Ingredient", "column": "expiresAt", "type": "timestamp(3)", "backfill": "now()"}
RENAME = {"table": "Ingredient", "column": "qty", "new_column": "quantity"}


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    return build(load_config(str(EXAMPLE_CONFIG), True, {}), sandbox_mode=True, state=tmp_path / "state",
                 time_scale=SCALE)


def run(services: Services, kind: str, params: dict[str, Any], phase: str, env: str = "development",
        typed: str | None = "yes", cancel_after_rows: int | None = None, start_at: int = 0,
        state: dict[str, Any] | None = None, op_id: str | None = None) -> tuple[Result, list[Event]]:
    events: list[Event] = []
    cancel = threading.Event()

    def emit(event: Event) -> None:
        events.append(event)
        if cancel_after_rows is not None and isinstance(event, Progress) and event.done >= cancel_after_rows:
            cancel.set()

    def confirm(question: ConfirmationNeeded) -> str | None:
        return typed

    op = build_operation(services, kind, env, {**params, "phase": phase})
    if op_id:
        op.id = op_id
    return services.runner.run(op, emit, confirm, cancel, start_at, state), events


def ok(outcome: tuple[Result, list[Event]]) -> list[Event]:
    result, events = outcome
    assert result.outcome is Outcome.SUCCEEDED, (result, [e for e in events if isinstance(e, LogLine)])
    return events


def table(services: Services, env: str = "development") -> TableInfo:
    info = services.schema(env).table("Ingredient")
    assert info is not None
    return info


def test_add_column_runs_every_phase(services: Services) -> None:
    ok(run(services, "expand-add-column", ADD, "expand"))
    assert table(services).columns["expiresAt"].not_null is False
    events = ok(run(services, "expand-add-column", {**ADD, "batch_size": 250}, "backfill"))
    progress = [e for e in events if isinstance(e, Progress)]
    assert len(progress) > 3 and progress[-1].done == progress[-1].total
    ok(run(services, "expand-add-column", ADD, "contract"))
    info = table(services)
    assert info.columns["expiresAt"].not_null and not info.constraints
    rows, pending = services.schema("development").count("Ingredient", "expiresAt", Fill(expression="NULL"))
    assert rows > 1000 and pending == 0


def test_rename_runs_every_phase_in_production_with_typed_confirmations(services: Services) -> None:
    events = ok(run(services, "expand-rename-column", RENAME, "expand", env="production", typed="production"))
    retries = [e.text for e in events if isinstance(e, LogLine) and "lock not granted" in e.text]
    assert len(retries) == 1 and "prisma-studio" in retries[0]  # the sandbox's busy table, once
    trigger, _ = sync_names("Ingredient", "qty", "quantity")
    assert trigger in table(services, "production").triggers
    ok(run(services, "expand-rename-column", RENAME, "backfill", env="production", typed="production"))
    declined, _ = run(services, "expand-rename-column", RENAME, "contract", env="production", typed="yes")
    assert declined.outcome is Outcome.DECLINED and "qty" in table(services, "production").columns
    ok(run(services, "expand-rename-column", RENAME, "contract", env="production", typed="production"))
    info = table(services, "production")
    assert "qty" not in info.columns and "quantity" in info.columns and not info.triggers


def test_aborts_put_the_schema_back(services: Services) -> None:
    before = table(services)
    ok(run(services, "expand-add-column", ADD, "expand"))
    ok(run(services, "expand-add-column", ADD, "abort-expand"))
    assert table(services) == before

    ok(run(services, "expand-add-column", ADD, "expand"))
    ok(run(services, "expand-add-column", ADD, "backfill"))
    ok(run(services, "expand-add-column", ADD, "contract"))
    ok(run(services, "expand-add-column", ADD, "abort-contract"))
    info = table(services)
    assert not info.columns["expiresAt"].not_null and not_null_check("Ingredient", "expiresAt") not in info.constraints

    ok(run(services, "expand-rename-column", RENAME, "expand"))
    ok(run(services, "expand-rename-column", RENAME, "abort-backfill"))
    ok(run(services, "expand-rename-column", RENAME, "abort-expand"))
    assert "quantity" not in table(services).columns and not table(services).triggers


def test_a_cancelled_backfill_resumes(services: Services) -> None:
    ok(run(services, "expand-add-column", ADD, "expand"))
    params = {**ADD, "batch_size": 100}
    first, _ = run(services, "expand-add-column", params, "backfill", cancel_after_rows=300)
    assert first.outcome is Outcome.CANCELLED
    record = services.journal.get(first.op_id)
    events = ok(run(services, "expand-add-column", params, "backfill", start_at=record.resume_index,
                    state=record.state, op_id=record.id))
    detail = next(e.detail for e in events if isinstance(e, StepFinished) and e.step_id == "backfill")
    already = int(re.search(r"(\d+) were already done", detail).group(1))  # type: ignore[union-attr]
    assert already >= 300


def test_refusals(services: Services) -> None:
    result, _ = run(services, "expand-add-column", {**ADD, "table": "Nope"}, "expand")
    assert result.outcome is Outcome.FAILED and "table 'Nope' not found" in result.detail
    ok(run(services, "expand-add-column", ADD, "expand"))
    result, _ = run(services, "expand-add-column", ADD, "contract")
    assert re.search(r"\d+ of \d+ rows still have expiresAt NULL", result.detail)
    result, _ = run(services, "expand-add-column", ADD, "expand")
    assert "already exists" in result.detail
    result, _ = run(services, "expand-rename-column", {**RENAME, "column": "id", "new_column": "key"}, "expand")
    assert "primary key" in result.detail


@pytest.mark.parametrize("kind", ["text", "timestamp(3)", "numeric(10,2)", "double precision", "character varying(20)",
                                  "timestamp(3) with time zone", "integer[]", '"Unit"'])
def test_types_accepted(kind: str) -> None:
    assert valid_type(kind)


@pytest.mark.parametrize("kind", ["serial", "bigserial", "text; DROP TABLE x", "text NOT NULL", "text default 'x'",
                                  "text\n", '"a""b"', "int references other", ""])
def test_types_refused(kind: str) -> None:
    assert not valid_type(kind)
