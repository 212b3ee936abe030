"""The point-in-time restore walkthrough in the sandbox: its steps, the target (a time, or before a
migration), the refusals before anything stops, where a failure leaves things, and a resume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from rig.opkit import run, sandbox_services

from services.adapters.pgbackrest import PgBackRest
from services.backups.pitr import utc
from services.backups.pitr_target import parse_target, pgbackrest_time
from services.catalog import build_operation
from services.core.events import ConfirmationNeeded, Event, LogLine, Outcome, StepFinished, StepStarted, StepStatus
from services.core.operations import Result, StepFailed
from services.core.pitr_config import PitrConfig
from services.core.pitr_port import RecoveryTarget
from services.factory import EXAMPLE_CONFIG, Services, build, load_config
from services.sandbox.pitr import SandboxPitr

SCALE = 3000
ORDER = ["target", "confirm", "stop-app", "stop-db", "restore", "start-db", "recovery", "validate", "start-app",
         "health", "report"]
UNDONE = "20240618160000_recipe_tags"  # the sandbox's newest applied migration, 20 days old


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    return sandbox_services(tmp_path, monkeypatch)


def restore(services: Services, target: str, cancel_at: str | None = None) -> tuple[Result, list[Event],
                                                                                      list[ConfirmationNeeded]]:
    return run(services, "pitr-restore", "production", {"target": target}, typed="production",
               cancel_at=cancel_at)


def engine(services: Services) -> SandboxPitr:
    made = services.pitr("production")
    assert isinstance(made, SandboxPitr)
    return made


def details(events: list[Event]) -> dict[str, str]:
    return {e.step_id: e.detail for e in events if isinstance(e, StepFinished)}


def started(events: list[Event]) -> list[str]:
    return [e.step_id for e in events if isinstance(e, StepStarted)]


def applied(services: Services) -> list[str]:
    return [m.name for m in engine(services).live().migrations()]


def test_target_shapes() -> None:
    assert parse_target("2026-12-06 20:15:30") == ("time", 1796588130.0)
    assert parse_target(" before:20240801120000_add_expiry_date ") == ("before", "20240801120000_add_expiry_date")
    assert parse_target("20261206-161251F") == ("backup", "20261206-161251F")
    assert parse_target("20261206-161251F_20261207-010000I") == ("backup", "20261206-161251F_20261207-010000I")
    for bad in ("2026-12-06T20:15:30", "2026-13-06 20:15:30", "yesterday", "before:", "before:a b", "before:;rm",
                "20261206-161251I", "20261206-161251F_x"):
        with pytest.raises(ValueError, match="target|migration name"):
            parse_target(bad)
    assert pgbackrest_time(1796588130.25) == "2026-12-06 20:15:30.250000+00"


def test_a_bad_target_is_refused_before_the_operation_starts(services: Services) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD HH:MM:SS, before:MIGRATION_NAME, or a backup label"):
        build_operation(services, "pitr-restore", "production", {"target": "last tuesday"})
    with pytest.raises(ValueError, match="needs target"):
        build_operation(services, "pitr-restore", "production", {})
    result, events, _ = run(services, "pitr-restore", "staging", {"target": "before:x"}, typed="yes")
    assert result.failed_step == "target" and "no point-in-time recovery for staging" in result.detail
    assert started(events) == ["target"]


def test_before_a_migration_walks_every_step_and_reports_what_was_lost(services: Services) -> None:
    assert applied(services)[-1] == UNDONE
    started_at = next(m.started_at for m in engine(services).live().migrations() if m.name == UNDONE)
    rows_before = services.database("production").row_counts(["Ingredient"])["Ingredient"]

    result, events, asked = restore(services, f"before:{UNDONE}")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert started(events) == ORDER
    assert [q.expected for q in asked] == ["production"]  # production: the name typed
    assert f"after {utc(started_at - 2.0)} will be LOST, and migration {UNDONE} undone" in asked[0].prompt
    assert engine(services).restored_to == pgbackrest_time(started_at - 2.0)  # margin_s, 2 by default
    lines = [e.text for e in events if isinstance(e, LogLine)]
    assert any(f"migration {UNDONE} started at" in line and "2s before" in line for line in lines)
    assert any(line.startswith("in recovery:") for line in lines)  # polled until recovery ended
    assert UNDONE not in applied(services)
    done = details(events)
    assert done["stop-app"] == "stopped" and done["start-app"] == "started"
    assert done["health"].startswith("healthy after")
    lost = rows_before - services.database("production").row_counts(["Ingredient"])["Ingredient"]
    assert lost > 0  # the sandbox's app wrote rows in the 20 days since
    assert done["report"].startswith("RTO ")
    assert f"migrations undone: {UNDONE}; rows lost: Ingredient {lost}" in done["report"]
    assert engine(services).running


@pytest.mark.parametrize("target,reason", [
    ("2001-01-01 00:00:00", "is before the oldest backup's end"),
    ("2099-01-01 00:00:00", "is after the last archived WAL"),
    ("before:20990101000000_never_applied", "is not applied in production"),
    ("20000101-000000F", "backup 20000101-000000F is not in stanza main (the newest: "),
])
def test_a_target_outside_the_window_is_refused_before_anything_stops(services: Services, target: str,
                                                                      reason: str) -> None:
    result, events, asked = restore(services, target)
    assert result.outcome is Outcome.FAILED and result.failed_step == "target"
    assert reason in result.detail and "Now: nothing was stopped or changed" in result.detail
    if "window" in reason or "WAL" in reason:
        assert "the recovery window is" in result.detail
    assert started(events) == ["target"] and asked == []
    assert engine(services).running and engine(services).restored_to is None


def test_a_failed_step_says_where_things_stand_and_the_walkthrough_resumes_there(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = engine(services)

    def refuse(target_time: str, on_line: Any) -> None:
        raise StepFailed("pgbackrest restore failed (exit 38): unable to restore (sandbox)", ("retry this step",))

    monkeypatch.setattr(broken, "restore", refuse)
    first, _, _ = restore(services, f"before:{UNDONE}")
    assert first.outcome is Outcome.FAILED and first.failed_step == "restore"
    assert "Now: PostgreSQL is STOPPED; its data is unchanged" in first.detail
    assert not broken.running

    monkeypatch.undo()
    record = services.journal.get(first.op_id)
    assert record.resume_index == ORDER.index("restore")
    events: list[Event] = []
    op = build_operation(services, record.kind, record.env, record.params)
    op.id = record.id
    result = services.runner.run(op, events.append, lambda q: None, start_at=record.resume_index, state=record.state)
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert started(events) == ORDER[ORDER.index("restore"):]
    assert [s.status for s in services.journal.get(first.op_id).steps] == [StepStatus.DONE] * len(ORDER)
    assert UNDONE not in applied(services)


def test_cancelled_between_steps_it_stops_there_and_says_so(services: Services) -> None:
    result, events, _ = restore(services, f"before:{UNDONE}", cancel_at="stop-db")
    assert result.outcome is Outcome.CANCELLED
    assert "restore" not in started(events)
    assert UNDONE in applied(services)  # nothing restored


def refuse(*args: Any) -> None:
    raise StepFailed("refused (sandbox)", ("retry this step",))


@pytest.mark.parametrize("method,step,standing", [
    ("stop_database", "stop-db", "Now: the app is STOPPED; the database is unchanged"),
    ("restore", "restore", "Now: PostgreSQL is STOPPED; its data is unchanged"),
    ("start_database", "start-db", "Now: the cluster is restored to"),
])
def test_each_failure_says_where_things_stand(services: Services, monkeypatch: pytest.MonkeyPatch, method: str,
                                             step: str, standing: str) -> None:
    monkeypatch.setattr(engine(services), method, refuse)
    result, _, _ = restore(services, f"before:{UNDONE}")
    assert result.outcome is Outcome.FAILED and result.failed_step == step
    assert "refused (sandbox)" in result.detail and standing in result.detail


def test_recovery_that_does_not_end_is_bounded_by_recovery_timeout_s(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    config = load_config(str(EXAMPLE_CONFIG), True, {})
    assert config.backup.pitr is not None
    pitr = config.backup.pitr.model_copy(update={"recovery_timeout_s": 60.0})
    config = config.model_copy(update={"backup": config.backup.model_copy(update={"pitr": pitr})})
    services = build(config, sandbox_mode=True, state=tmp_path / "state", time_scale=SCALE)
    monkeypatch.setattr(engine(services), "start_database", lambda on_line: on_line("started by hand, not"))
    result, events, _ = restore(services, f"before:{UNDONE}")
    assert result.outcome is Outcome.FAILED and result.failed_step == "recovery"
    assert "recovery did not end within 60s (cannot connect to the sandbox's cluster: it is stopped)" in result.detail
    assert "PostgreSQL may not be running" in result.detail
    assert any(isinstance(e, LogLine) and e.text.startswith("in recovery: cannot connect") for e in events)


def test_a_restore_that_left_the_migration_applied_fails_validation(services: Services,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine(services), "restore", lambda target, on_line: on_line("restored nothing"))
    result, _, _ = restore(services, f"before:{UNDONE}")
    assert result.outcome is Outcome.FAILED and result.failed_step == "validate"
    assert f"migrations after the target are still applied in the live cluster (sandbox): {UNDONE}" in result.detail
    assert "restored to" in result.detail and "and running" in result.detail


def test_a_stanza_without_a_backup_is_refused(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = replace(engine(services).info(), backups=())
    monkeypatch.setattr(engine(services), "info", lambda: empty)
    result, events, _ = restore(services, f"before:{UNDONE}")
    assert result.failed_step == "target" and "has no backup: nothing to restore from" in result.detail
    assert started(events) == ["target"] and engine(services).running


def pgbackrest_engine(**settings: Any) -> PgBackRest:
    base = {"environment": "production", "stanza": "main", "data_dir": "/srv/pg/data", "log_file": "/srv/pg/log"}
    return PgBackRest(PitrConfig(**{**base, **settings}), "postgresql://u@127.0.0.1:1/db")


def test_the_adapter_refuses_a_target_it_did_not_format_before_running_anything() -> None:
    for bad in ("2026-12-06 20:00:00", "2026-12-06 20:00:00+00; rm -rf /", "now"):
        with pytest.raises(ValueError, match="not a UTC time as the console writes it"):
            pgbackrest_engine(pgbackrest="/nonexistent/pgbackrest").restore(RecoveryTarget(time=bad), print)
    for label in ("20261206-161251F --type=none", "latest", "20261206-161251X"):
        with pytest.raises(ValueError, match="is not one pgBackRest writes"):
            pgbackrest_engine(pgbackrest="/nonexistent/pgbackrest").restore(RecoveryTarget(backup=label), print)


def test_pg_ctl_that_cannot_run_or_answers_oddly_is_a_clear_failure() -> None:
    with pytest.raises(StepFailed, match="cannot run /nonexistent/pg_ctl"):
        pgbackrest_engine(pg_ctl="/nonexistent/pg_ctl").stop_database(print)
    with pytest.raises(StepFailed, match="pg_ctl status exited 1"):  # 0 is running, 3 stopped; false says 1
        pgbackrest_engine(pg_ctl="/bin/false").start_database(print)
    said: list[str] = []
    pgbackrest_engine(pg_ctl="/bin/true").stop_database(said.append)  # `true` says 0: running, so stopped
    assert said[0] == "$ /bin/true -D /srv/pg/data -m fast -w -t 21600 stop"


@pytest.mark.parametrize("setting,problem", [
    ({"pg_ctl": "pg_ctl"}, "must be an absolute path"),
    ({"log_file": "pitr.log"}, "must be an absolute path"),
    ({"stop": []}, "at least the program"),
    ({"start": ["pg_ctl", "start\n-o x"]}, "is not a plain argument"),
    ({"margin_s": -1}, "greater than or equal to 0"),
    ({"recovery_timeout_s": 0}, "greater than 0"),
    ({"scratch_dir": "drills"}, "must be an absolute path"),
    ({"drill_shared_buffers": "lots"}, "a size as PostgreSQL writes it"),
    ({"drill_shared_buffers": "128MB -c fsync=off"}, "a size as PostgreSQL writes it"),
    ({"scratch_dir": "/srv/pg/data/drills"}, "must not hold each other"),
    ({"scratch_dir": "/srv/pg"}, "must not hold each other"),
])
def test_restore_settings_are_validated(setting: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        pgbackrest_engine(**setting)
