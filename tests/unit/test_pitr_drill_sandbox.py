"""The point-in-time drill in the sandbox: its steps, a backup label as the target, what it reports,
that the copy is removed when the drill fails, and that a live cluster restarted meanwhile is caught.
The drill against a real cluster: tests/integration/test_pitr.py."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rig.opkit import run, sandbox_services

from services.backups.pitr import utc
from services.catalog import build_operation
from services.core.events import Event, LogLine, Outcome, StepFinished, StepStarted
from services.core.operations import StepFailed
from services.factory import Services
from services.sandbox.pitr import SandboxCopy, SandboxPitr

UNDONE = "20240618160000_recipe_tags"  # the sandbox's newest applied migration, 20 days old


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    return sandbox_services(tmp_path, monkeypatch)


@pytest.fixture
def engine(services: Services, monkeypatch: pytest.MonkeyPatch) -> SandboxPitr:
    """One engine for the test, so what a step did to it is what the next step and the test see."""
    made = services.pitr("production")
    assert isinstance(made, SandboxPitr)
    monkeypatch.setattr(services, "pitr", lambda env: made)
    return made


def drill(services: Services, target: str) -> tuple[Any, list[Event]]:
    result, events, asked = run(services, "pitr-drill", "production", {"target": target}, typed="production")
    assert [q.expected for q in asked] == ["production"]
    return result, events


def finished(events: list[Event]) -> dict[str, str]:
    return {e.step_id: e.detail for e in events if isinstance(e, StepFinished)}


def lines(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, LogLine)]


def test_a_drill_before_a_migration_reads_the_copy_and_leaves_the_live_cluster_as_it_was(
        services: Services, engine: SandboxPitr) -> None:
    live = engine.live()
    applied, identity = [m.name for m in live.migrations()], live.identity()

    result, events = drill(services, f"before:{UNDONE}")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert [e.step_id for e in events if isinstance(e, StepStarted)] == ["target", "confirm", "drill", "report"]
    assert [m.name for m in live.migrations()] == applied and live.identity() == identity
    assert engine.running and engine.restored_to is None and engine.scratch_names == []
    done = finished(events)
    assert f"head {applied[-2]}; the copy is removed" in done["drill"]
    assert f"a restore would undo {UNDONE} and lose rows: Ingredient " in done["report"]
    said = lines(events)
    assert any("the live cluster is untouched" in line for line in said)
    assert any(line.startswith("Ingredient: ") and "a restore to it would lose" in line for line in said)


def test_a_backup_label_is_a_target_for_the_drill_and_the_restore(services: Services, engine: SandboxPitr) -> None:
    backup = engine.info().backups[-3]
    result, events = drill(services, backup.label)
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert any(f"backup {backup.label} ({backup.type}) ended at {utc(backup.stopped)}" in line
               for line in lines(events))
    assert finished(events)["report"].startswith(f"restorable to {utc(backup.stopped)} in ")

    restored, _, _ = run(services, "pitr-restore", "production", {"target": backup.label}, typed="production")
    assert restored.outcome is Outcome.SUCCEEDED, restored.detail
    assert engine.restored_to == f"the end of backup {backup.label}"


def test_a_drill_that_fails_in_the_copy_still_removes_it(services: Services, engine: SandboxPitr,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(self: SandboxCopy, tables: object) -> dict[str, int]:
        raise StepFailed("cannot connect to the drill's copy")

    monkeypatch.setattr(SandboxCopy, "row_counts", unreadable)
    result, events = drill(services, f"before:{UNDONE}")
    assert result.outcome is Outcome.FAILED and result.failed_step == "drill"
    assert "cannot connect to the drill's copy" in result.detail
    assert engine.scratch_names == [] and any("stopped and removed" in line for line in lines(events))


def test_a_live_cluster_restarted_during_the_drill_fails_the_report(services: Services, engine: SandboxPitr,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = engine.scratch

    @contextlib.contextmanager
    def restarted_meanwhile(*args: Any) -> Iterator[SandboxCopy]:
        with scratch(*args) as copy:
            engine.started += 60  # as a crash and restart of the live server would
            yield copy

    monkeypatch.setattr(engine, "scratch", restarted_meanwhile)
    result, _ = drill(services, f"before:{UNDONE}")
    assert result.outcome is Outcome.FAILED and result.failed_step == "report"
    assert "the live cluster changed during the drill" in result.detail


def test_a_bad_target_is_refused_before_the_drill_starts(services: Services) -> None:
    with pytest.raises(ValueError, match="or a backup label"):
        build_operation(services, "pitr-drill", "production", {"target": "20261206-161251X"})


def test_a_drill_cancelled_in_its_copy_removes_it_and_resumes_at_the_drill(services: Services,
                                                                           engine: SandboxPitr) -> None:
    events: list[Event] = []
    cancel = threading.Event()

    def emit(event: Event) -> None:  # ctrl+x once the copy is being restored
        events.append(event)
        if isinstance(event, LogLine) and "pgbackrest restore (drill)" in event.text:
            cancel.set()

    operation = build_operation(services, "pitr-drill", "production", {"target": f"before:{UNDONE}"})
    result = services.runner.run(operation, emit, lambda question: "production", cancel)
    assert result.outcome is Outcome.CANCELLED and result.failed_step == "drill", result.detail
    assert engine.scratch_names == [] and any("stopped and removed" in line for line in lines(events))

    record = services.journal.get(result.op_id)
    assert record.steps[record.resume_index].step_id == "drill"
    again = build_operation(services, record.kind, record.env, record.params)
    again.id = record.id
    resumed: list[Event] = []
    done = services.runner.run(again, resumed.append, lambda question: None, start_at=record.resume_index,
                               state=record.state)
    assert done.outcome is Outcome.SUCCEEDED, done.detail
    assert [e.step_id for e in resumed if isinstance(e, StepStarted)] == ["drill", "report"]
    assert engine.scratch_names == []
