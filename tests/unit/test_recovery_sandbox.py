"""The disaster-recovery walkthrough and its drill in the sandbox: the checklist, failures that
say where things stand, resume at the step; and the real stop/start wiring without a target."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from services.backups.catalog import list_backups
from services.backups.loss import ago
from services.backups.verify import TrialRestore, read_verification, record_verification
from services.catalog import build_operation
from services.core.config import parse
from services.core.events import (
    ConfirmationNeeded,
    Event,
    Finished,
    LogLine,
    OperationStarted,
    Outcome,
    StepFinished,
    StepStarted,
    StepStatus,
)
from services.core.operations import Result, StepFailed
from services.factory import EXAMPLE_CONFIG, Services, build, load_config
from services.sandbox.adapters import SandboxTarget

SCALE = 3000
ORDER = ["choose", "confirm", "download", "verify", "stop", "restore-db", "restore-files", "validate", "start",
         "health", "report"]


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    return build(load_config(str(EXAMPLE_CONFIG), True, {}), sandbox_mode=True, state=tmp_path / "state",
                 time_scale=SCALE)


def run(services: Services, kind: str, params: dict[str, Any] | None = None, typed: str | None = "production",
        cancel_at: str | None = None) -> tuple[Result, list[Event], list[ConfirmationNeeded]]:
    events: list[Event] = []
    asked: list[ConfirmationNeeded] = []
    cancel = threading.Event()

    def emit(event: Event) -> None:
        events.append(event)
        if isinstance(event, StepStarted) and event.step_id == cancel_at:
            cancel.set()

    def confirm(question: ConfirmationNeeded) -> str | None:
        asked.append(question)
        return typed

    op = build_operation(services, kind, "production", params or {})
    return services.runner.run(op, emit, confirm, cancel), events, asked


def finished(events: list[Event]) -> dict[str, StepFinished]:
    return {e.step_id: e for e in events if isinstance(e, StepFinished)}


def logs(events: list[Event], step: str) -> list[str]:
    return [e.text for e in events if isinstance(e, LogLine) and e.step_id == step]


def running(services: Services) -> bool:
    assert services.world is not None
    return services.world.envs["production"].running


def test_walkthrough_is_a_checklist_that_downloads_and_verifies_before_it_stops(services: Services) -> None:
    result, events, asked = run(services, "restore", {"health_tries": "3", "health_interval_s": "1"})

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    started = next(e for e in events if isinstance(e, OperationStarted))
    assert [sid for sid, _ in started.steps] == ORDER
    titles = dict(started.steps)
    assert titles["confirm"] == "Confirm: Stop the services and restore the backup"
    assert titles["health"] == "Health-check /api/health (3 tries, 1s apart)"
    assert titles["restore-db"] == "Restore the database (one transaction)"
    assert [q.expected for q in asked] == ["production"]  # the typed name, once, before anything is touched

    done = finished(events)
    assert [s for s in ORDER if done[s].status is StepStatus.DONE] == ORDER
    newest = next(b for b in list_backups(services, "production") if b.complete)
    assert done["choose"].detail.startswith(f"{newest.id} (1.4.1, ")
    assert done["download"].detail == "2 artifacts, 3.3 kB from sandbox"
    assert done["verify"].detail == "2 of 2 sha256 match"
    checked = logs(events, "verify")
    assert [line.split(":")[0] for line in checked[:2]] == ["db.sql.gz", "app.tar.gz"]
    # The sandbox's seeded backups are older plain-SQL ones: scanned before anything stops.
    assert re.fullmatch(r"an older plain-SQL backup \(format 1\): \d+ lines scanned, no psql meta-command", checked[2])
    assert "signature matches" in " ".join(logs(events, "download"))
    assert done["stop"].detail == "stopped"
    assert done["restore-db"].detail == f"restored {newest.id}"
    assert done["validate"].detail == "config, database ok"
    assert done["health"].detail == "healthy after 1 try"
    assert logs(events, "health")[0].startswith("try 1/3: 200 ")
    assert re.fullmatch(r"RTO \S+, services down \S+", done["report"].detail)
    assert running(services)

    record = services.journal.get(result.op_id)
    assert [s.status for s in record.steps] == [StepStatus.DONE] * len(ORDER)
    assert set(record.state["digests"]) == {"db.sql.gz", "app.tar.gz"}
    assert set(record.state["timings"]) == set(ORDER) - {"confirm"}
    assert not Path(record.state["work_dir"]).exists()  # the working copy is removed at the end


def test_production_restore_declined_without_the_typed_name_touches_nothing(services: Services) -> None:
    result, events, _ = run(services, "restore", typed="prod")
    assert result.outcome is Outcome.DECLINED
    assert "download" not in [e.step_id for e in events if isinstance(e, StepStarted)]
    assert running(services)


def row(prompt: str, table: str) -> list[str]:
    """An integrity table's line in the confirmation: now, in backup, change."""
    return next(line.split()[1:] for line in prompt.splitlines() if line.startswith(f"  {table} "))


def test_the_confirmation_names_the_backup_its_age_and_the_rows_now_against_in_the_backup(
        services: Services) -> None:
    assert services.world is not None
    newest = next(b for b in list_backups(services, "production") if b.complete)
    live = services.world.envs["production"].rows
    result, events, asked = run(services, "restore", typed=None)  # declined: nothing is touched

    assert result.outcome is Outcome.DECLINED and running(services)
    [question] = asked
    lines = question.prompt.splitlines()
    assert lines[0] == "Stop the services and restore the backup in PRODUCTION."
    assert lines[1] == f"Plan: restore backup {newest.id},"
    taken = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(newest.created))
    # The seeded one-day-old backup (the clock runs 3000x: a slow machine adds minutes, not a day).
    assert re.fullmatch(rf"taken {taken}, 2[45] h \d\d? min ago\.", lines[2]), lines[2]
    assert lines[3] == "Every write to production since then will be LOST."
    # The seeded backup's counts are in its (signed) manifest: today's rows less a day's growth.
    manifest = json.loads(services.world.objects[f"production/{newest.id}/manifest.json"][0])
    assert manifest["row_counts"] == {"Ingredient": live["Ingredient"] - 6, "Category": 40, "User": live["User"] - 2}
    assert {t: row(question.prompt, t) for t in ("Ingredient", "Category", "User")} == {
        "Ingredient": [str(live["Ingredient"]), str(live["Ingredient"] - 6), "+6"],
        "Category": ["40", "40", "0"],
        "User": [str(live["User"]), str(live["User"] - 2), "+2"],
    }
    assert lines[8] == "Backup counts: from its signed manifest"
    assert lines[-1] == "Type 'production' to confirm."
    assert all(len(line) <= 64 for line in lines)  # no wrapping in the confirm modal at 80x24
    # The same text in the log (the CLI's lines and its --json), and as data in the journal.
    assert logs(events, "choose")[1:] == [lines[1].removeprefix("Plan: "), *lines[2:9]]
    loss = services.journal.get(result.op_id).state["loss"]
    assert loss["rows"]["User"] == {"now": live["User"], "backup": live["User"] - 2}
    assert loss["backup_counts_from"] == "its signed manifest" and loss["now_problem"] is None


def test_a_new_backup_records_its_counts_and_an_older_one_falls_back_to_its_trial_restore(
        services: Services) -> None:
    assert services.world is not None
    live = dict(services.world.envs["production"].rows)
    backup, _, _ = run(services, "backup")
    assert backup.outcome is Outcome.SUCCEEDED, backup.detail
    newest = next(b for b in list_backups(services, "production") if b.complete)
    manifest = json.loads(services.world.objects[f"production/{newest.id}/manifest.json"][0])
    assert manifest["row_counts"] == live and "signature" in manifest  # inside the signed text

    # An older backup, taken before manifests recorded counts (unsigned: an older console's).
    older = list_backups(services, "production")[2]
    key = f"production/{older.id}/manifest.json"
    data, when, meta = services.world.objects[key]
    stripped = {k: v for k, v in json.loads(data).items() if k not in ("row_counts", "signature")}
    services.world.objects[key] = (json.dumps(stripped).encode(), when, meta)
    _, _, asked = run(services, "restore", {"backup_id": older.id}, typed=None)
    prompt = asked[0].prompt
    assert row(prompt, "Ingredient") == [str(live["Ingredient"]), "?", "?"]
    assert "Backup counts: not recorded in this backup" in prompt

    trial = TrialRestore("rc_trial_x", 1.0, {"Ingredient": 1100, "Category": 39, "User": 300}, "sample")
    record_verification(services, "production", older.id, True, trial)
    _, _, asked = run(services, "restore", {"backup_id": older.id}, typed=None)
    prompt = asked[0].prompt
    assert row(prompt, "Ingredient") == [str(live["Ingredient"]), "1100", f"+{live['Ingredient'] - 1100}"]
    assert re.search(r"Backup counts: from its trial restore of \d{4}-\d\d-\d\d \d\d:\d\d UTC", prompt)


def test_a_migration_rollback_names_what_it_loses_too(services: Services) -> None:
    newest = next(b for b in list_backups(services, "production") if b.complete)
    result, _, asked = run(services, "migrate-rollback", typed=None)
    assert result.outcome is Outcome.DECLINED
    [question] = asked
    assert f"Plan: restore backup {newest.id}," in question.prompt
    assert "Every write to production since then will be LOST." in question.prompt
    assert row(question.prompt, "Category") == ["40", "40", "0"]


def test_a_drill_names_no_loss(services: Services) -> None:
    _, _, asked = run(services, "restore-drill", typed=None)
    assert "LOST" not in asked[0].prompt and "the live services, database and files are not touched" in asked[0].prompt


def test_a_damaged_backup_is_refused_while_the_services_still_run(services: Services) -> None:
    newest = next(b for b in list_backups(services, "production") if b.complete)
    assert services.world is not None
    key = f"production/{newest.id}/db.sql.gz"
    data, when, meta = services.world.objects[key]
    services.world.objects[key] = (bytes([data[0] ^ 1]) + data[1:], when, meta)

    result, events, _ = run(services, "restore")

    assert result.outcome is Outcome.FAILED and result.failed_step == "verify"
    assert "db.sql.gz does not match the manifest's sha256" in result.detail
    assert "Now: nothing live was changed; the services still run" in result.detail
    final = events[-1]
    assert isinstance(final, Finished) and "restore an older backup (backup_id)" in final.next_options
    assert "stop" not in [e.step_id for e in events if isinstance(e, StepStarted)]
    assert running(services)
    steps = services.journal.get(result.op_id).steps
    assert [s.status for s in steps][3:5] == [StepStatus.FAILED, StepStatus.PENDING]


def test_health_that_never_comes_up_fails_with_where_things_stand(services: Services,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SandboxTarget, "start", lambda self, on_line: on_line("start: nothing started"))

    result, events, _ = run(services, "restore", {"health_tries": "3", "health_interval_s": "0.5"})

    assert result.outcome is Outcome.FAILED and result.failed_step == "health"
    assert "not healthy after 3 tries 0.5s apart" in result.detail
    assert "the services were started on the restored data" in result.detail
    assert [line.split(":")[0] for line in logs(events, "health")] == ["try 1/3", "try 2/3", "try 3/3"]
    final = events[-1]
    assert isinstance(final, Finished)
    assert final.next_options[0].startswith("look at the app's logs")
    record = services.journal.get(result.op_id)
    assert record.steps[ORDER.index("health")].status is StepStatus.FAILED
    assert record.steps[ORDER.index("report")].status is StepStatus.PENDING


def test_an_interrupted_walkthrough_resumes_at_its_step_without_downloading_again(services: Services) -> None:
    first, _, _ = run(services, "restore", cancel_at="stop")
    assert first.outcome is Outcome.CANCELLED
    record = services.journal.get(first.op_id)
    assert record.resume_index == ORDER.index("stop")
    assert {"backup_id", "work_dir", "files", "digests", "started_at"} <= set(record.state)

    events: list[Event] = []
    op = build_operation(services, record.kind, record.env, record.params)
    op.id = record.id
    result = services.runner.run(op, events.append, lambda q: None, start_at=record.resume_index,
                                 state=record.state)

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert [e.step_id for e in events if isinstance(e, StepStarted)] == ORDER[ORDER.index("stop"):]
    after = services.journal.get(first.op_id)
    assert after.state["started_at"] == record.state["started_at"]  # the RTO counts from the first start
    assert [s.status for s in after.steps] == [StepStatus.DONE] * len(ORDER)


def test_a_working_copy_changed_after_its_download_is_hashed_again_and_refused(services: Services) -> None:
    """The download hashes what it writes; verify trusts that hash only for the file as it was written."""
    first, _, _ = run(services, "restore", cancel_at="verify")
    assert first.outcome is Outcome.CANCELLED
    record = services.journal.get(first.op_id)
    assert record.resume_index == ORDER.index("verify")
    dump = Path(record.state["files"]["db.sql.gz"])
    data = dump.read_bytes()
    dump.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size: only a fresh hash can tell

    events: list[Event] = []
    op = build_operation(services, record.kind, record.env, record.params)
    op.id = record.id
    result = services.runner.run(op, events.append, lambda q: None, start_at=record.resume_index,
                                 state=record.state)

    assert result.outcome is Outcome.FAILED and result.failed_step == "verify"
    assert "db.sql.gz does not match the manifest's sha256" in result.detail
    assert running(services)


@pytest.mark.parametrize("kind,params", [("restore-drill", {}), ("restore", {"drill": "true"})])
def test_drill_restores_into_scratch_and_touches_nothing_live(services: Services, kind: str,
                                                              params: dict[str, Any]) -> None:
    result, events, asked = run(services, kind, params)

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    # Nothing live is touched, but it restores what the backup holds: production asks for the name typed.
    assert [q.expected for q in asked] == ["production"]
    started = next(e for e in events if isinstance(e, OperationStarted))
    assert started.title == "Recovery drill for production"
    titles = dict(started.steps)
    assert titles["confirm"] == "Confirm: Restore the backup into a scratch database"
    assert titles["health"] == "Health check: skipped in a drill without health_url"
    done = finished(events)
    assert all(step.status is StepStatus.DONE for step in done.values())
    assert done["stop"].detail == "skipped"
    assert done["start"].detail == "skipped"
    assert done["restore-db"].detail == "3 tables restored and read; dropped"
    assert logs(events, "restore-db")[-1] == "dropped scratch database rc_trial_sandbox"
    assert done["health"].detail == "skipped"
    assert done["report"].detail.startswith("drill RTO ")
    assert running(services)
    assert services.locks.holder("production") is None  # a drill takes no release lock
    backup_id = services.journal.get(result.op_id).state["backup_id"]
    verification = read_verification(services, "production", backup_id)
    assert verification is not None and verification["ok"]


def test_a_drill_not_confirmed_downloads_nothing(services: Services) -> None:
    result, events, _ = run(services, "restore-drill", typed=None)
    assert result.outcome is Outcome.DECLINED and result.failed_step == "confirm"
    assert "download" not in [e.step_id for e in events if isinstance(e, StepStarted)]


def test_drill_health_checks_a_given_url(services: Services) -> None:
    result, events, _ = run(services, "restore-drill", {"health_url": "http://127.0.0.1:1/api/health"})
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert finished(events)["health"].detail == "healthy after 1 try"  # the sandbox's checker
    assert logs(events, "health")[0].startswith("try 1/30: 200")


def test_bad_health_parameters_are_refused_before_anything_runs(services: Services) -> None:
    with pytest.raises(ValueError, match="health_tries must be a number"):
        build_operation(services, "restore", "production", {"health_tries": "many"})
    with pytest.raises(ValueError, match="health_interval_s must be more than 0"):
        build_operation(services, "restore", "production", {"health_interval_s": "0"})


# --- real mode: stopping and starting without a deploy target ----------------------------------

CONFIG = {
    "app": {"name": "app", "image": "app"},
    "environments": {"staging": {"api_url": "http://127.0.0.1:9/api", "database_url": "postgresql://x@127.0.0.1/x",
                                 "redis_url": "redis://127.0.0.1"}},
}


def real(tmp_path: Path, services: dict[str, list[str]] | None = None) -> Services:
    raw: dict[str, Any] = {**CONFIG, "environments": {"staging": {**CONFIG["environments"]["staging"]}}}
    if services:
        raw["environments"]["staging"]["services"] = services
    return build(parse(raw, {}), state=tmp_path / "state")


def test_without_target_or_commands_stop_says_what_to_configure(tmp_path: Path) -> None:
    target = real(tmp_path).target("staging")
    with pytest.raises(StepFailed) as failed:
        target.stop(print)
    assert str(failed.value) == "cannot stop staging's services: it has no deploy target and no service commands"
    assert failed.value.next_options[0].startswith("set [environments.staging.services] stop = [...]")
    assert target.status().events == ("no deploy target configured",)


def test_service_commands_stream_their_output_and_check_the_exit_code(tmp_path: Path) -> None:
    target = real(tmp_path, {"stop": ["echo", "stopping app"], "start": ["sh", "-c", "echo boom >&2; exit 3"]}) \
        .target("staging")
    lines: list[str] = []
    target.stop(lines.append)
    assert lines == ["$ echo 'stopping app'", "stopping app", "stop command finished (exit 0)"]
    with pytest.raises(StepFailed, match=r"the start command \(sh -c 'echo boom >&2; exit 3'\) exited with 3: boom"):
        target.start(lines.append)
    assert target.status().events == ("no deploy target configured",)
    with pytest.raises(StepFailed, match="no deploy target configured for staging"):
        target.deploy("app:1", print)


@pytest.mark.parametrize(("seconds", "said"), [
    (42 * 60 + 59, "42 min"), (9 * 3600 + 12 * 60, "9 h 12 min"), (47 * 3600 + 59 * 60, "47 h 59 min"),
    (3 * 86400 + 4 * 3600, "3 days 4 h"),
])
def test_a_backups_age_reads_as_hours_and_minutes_then_days(seconds: float, said: str) -> None:
    assert ago(seconds) == said
