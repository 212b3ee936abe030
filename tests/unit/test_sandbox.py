"""The sandbox world and the actions run against it: migrate, restore, prune (the canary: test_canary_monitor)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from services.adapters.local_store import LocalStore
from services.backups.catalog import DAY, list_backups, prune_candidates
from services.catalog import build_operation
from services.core.events import (
    ConfirmationNeeded,
    Event,
    LogLine,
    Outcome,
    StepFinished,
    StepStarted,
    StepStatus,
)
from services.core.operations import Result
from services.factory import EXAMPLE_CONFIG, Services, build, load_config
from services.sandbox.adapters import SandboxMetrics
from services.sandbox.world import PENDING, World

SCALE = 3000


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    return tmp_path / "state"


def sandbox(state: Path, config_path: Path = EXAMPLE_CONFIG) -> Services:
    return build(load_config(str(config_path), True, {}), sandbox_mode=True, state=state, time_scale=SCALE)


def run(services: Services, kind: str, env: str, typed: str | None = None,
        params: dict[str, object] | None = None) -> tuple[Result, list[Event], list[ConfirmationNeeded]]:
    events: list[Event] = []
    asked: list[ConfirmationNeeded] = []

    def confirm(question: ConfirmationNeeded) -> str | None:
        asked.append(question)
        return typed

    op = build_operation(services, kind, env, params or {})
    result = services.runner.run(op, events.append, confirm)
    return result, events, asked


def logs(events: list[Event], step: str) -> list[str]:
    return [e.text for e in events if isinstance(e, LogLine) and e.step_id == step]


def finished_steps(events: list[Event]) -> dict[str, StepFinished]:
    return {e.step_id: e for e in events if isinstance(e, StepFinished)}


# --- the world ------------------------------------------------------------------------------


def samples(seed: int, count: int = 12) -> list[dict[str, dict[str, float | None]]]:
    metrics = SandboxMetrics(World(seed, SCALE), "production")
    return [{s: dict(v) for s, v in metrics.sample().series.items()} for _ in range(count)]


def test_world_is_deterministic_per_seed() -> None:
    first, second = samples(7), samples(7)
    assert first == second
    assert first != samples(8)
    assert first[0]["stable"] != first[1]["stable"]  # noise, but the same noise per seed
    a, b = World(7, origin=1_767_225_600.0), World(7, origin=1_767_225_600.0)  # backup ids come from the clock
    assert {k: v[0] for k, v in a.objects.items()} == {k: v[0] for k, v in b.objects.items()}
    assert a.envs["production"].rows == b.envs["production"].rows


# --- migrate --------------------------------------------------------------------------------


def test_migrate_production_applies_pending_and_reports_row_counts(state: Path) -> None:
    services = sandbox(state)
    assert services.world is not None
    prod = services.world.envs["production"]
    rows = dict(prod.rows)
    backups_before = len(list_backups(services, "production"))

    result, events, asked = run(services, "migrate", "production", typed="production")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    # An override reason for the blocking lint findings, then the typed confirmation after the backup.
    assert [(q.free_text, q.expected) for q in asked] == [(True, None), (False, "production")]
    assert services.audit.tail(1)[0]["override_reason"] == "production"
    done = finished_steps(events)
    assert done["apply"].detail == "2 applied"
    assert done["integrity"].detail == "row counts kept"
    assert prod.pending == []
    assert [m.name for m in prod.migrations[-2:]] == PENDING
    assert all(m.state == "applied" for m in services.database("production").status())
    assert [line for line in logs(events, "apply") if line.startswith("applying")] == [f"applying {n}" for n in PENDING]

    report = logs(events, "integrity")
    for table in ("Ingredient", "Category", "User"):
        line = next(x for x in report if x.startswith(table))
        assert re.fullmatch(rf"{table}\s+{rows[table]}\s+{rows[table]}", line), line

    backups = list_backups(services, "production")
    assert len(backups) == backups_before + 1
    newest = backups[0]
    assert newest.complete and newest.id == done["backup"].detail.removeprefix("backup ")


# --- restore --------------------------------------------------------------------------------


def test_restore_runs_all_eleven_steps(state: Path) -> None:
    services = sandbox(state)
    result, events, asked = run(services, "restore", "production", typed="production")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert [q.expected for q in asked] == ["production"]
    started = [e.step_id for e in events if isinstance(e, StepStarted)]
    # The backup is downloaded and verified before the services stop: a damaged one never causes an outage.
    assert started == ["choose", "confirm", "download", "verify", "stop", "restore-db", "restore-files", "validate",
                       "start", "health", "report"]
    done = finished_steps(events)
    assert all(s.status is StepStatus.DONE for s in done.values())
    assert done["health"].detail == "healthy after 1 try"
    assert done["verify"].detail == "2 of 2 sha256 match"
    newest = next(b for b in list_backups(services, "production") if b.complete)
    assert done["choose"].detail.startswith(newest.id)
    assert logs(events, "health")[0].startswith("try 1/30: 200 ")
    assert services.world is not None and services.world.envs["production"].running
    assert [s.status for s in services.journal.get(result.op_id).steps] == [StepStatus.DONE] * 11


def test_restore_in_production_declined_without_the_typed_name(state: Path) -> None:
    services = sandbox(state)
    result, _, _ = run(services, "restore", "production", typed="prod")
    assert result.outcome is Outcome.DECLINED
    assert services.world is not None and services.world.envs["production"].running  # never stopped


# --- prune ----------------------------------------------------------------------------------


def test_prune_lists_only_backups_past_retention(state: Path) -> None:
    services = sandbox(state)
    assert services.world is not None
    now = services.world.clock.now()
    ages = sorted(round((now - b.created) / DAY) for b in list_backups(services, "production"))
    assert ages == [1, 3, 9, 22, 41]
    doomed = prune_candidates(services, "production", now)
    assert [round((now - b.created) / DAY) for b in doomed] == [41]
    assert prune_candidates(services, "staging", now) == []


def test_prune_never_deletes_the_newest_n(state: Path, tmp_path: Path) -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8").replace("retention_days = 30", "retention_days = 2")
    config_path = tmp_path / "short-retention.toml"
    config_path.write_text(text, encoding="utf-8")
    services = sandbox(state, config_path)
    assert services.config.backup.retention_days == 2 and services.config.backup.keep_newest == 3
    assert services.world is not None
    now = services.world.clock.now()
    everything = list_backups(services, "production")
    newest_three = {b.id for b in everything[:3]}

    doomed = prune_candidates(services, "production", now)
    # 41, 22, 9 and 3 days are all past 2 days, but 9 and 3 are among the newest three.
    assert [round((now - b.created) / DAY) for b in doomed] == [22, 41]
    assert not newest_three & {b.id for b in doomed}

    result, events, asked = run(services, "prune", "production", typed="production")
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert asked[0].expected == "production"
    assert finished_steps(events)["delete"].detail == "2 deleted"
    left = {b.id for b in list_backups(services, "production")}
    assert left == {b.id for b in everything} - {b.id for b in doomed}
    assert newest_three <= left


def test_a_pinned_backup_is_never_pruned_and_unpinning_releases_it(state: Path) -> None:
    services = sandbox(state)
    assert services.world is not None
    now = services.world.clock.now()
    [oldest] = prune_candidates(services, "production", now)

    pinned, _, _ = run(services, "backup-pin", "production", params={"backup_id": oldest.id, "release": "v1.3.9"})
    assert pinned.outcome is Outcome.SUCCEEDED, pinned.detail
    entry = next(b for b in list_backups(services, "production") if b.id == oldest.id)
    assert entry.pinned == "v1.3.9"
    assert prune_candidates(services, "production", now) == []

    # Unpinning exposes it to retention: asked as a destructive action is, and declined it stays pinned.
    unpin = {"backup_id": oldest.id, "release": ""}
    declined, _, asked = run(services, "backup-pin", "production", typed="staging", params=unpin)
    assert declined.outcome is Outcome.DECLINED, declined.detail
    [question] = asked
    assert question.expected == "production"
    assert question.prompt.startswith(f"Unpin backup {oldest.id} (pinned to v1.3.9, taken 41 days")
    assert "Retention may then delete it" in question.prompt and "older than 30 days" in question.prompt
    assert prune_candidates(services, "production", now) == []
    assert next(b for b in list_backups(services, "production") if b.id == oldest.id).pinned == "v1.3.9"

    unpinned, _, asked = run(services, "backup-pin", "production", typed="production", params=unpin)
    assert unpinned.outcome is Outcome.SUCCEEDED, unpinned.detail
    assert [q.expected for q in asked] == ["production"]
    assert [b.id for b in prune_candidates(services, "production", now)] == [oldest.id]
    again, events, asked = run(services, "backup-pin", "production", params=unpin)  # not pinned: nothing to ask
    assert again.outcome is Outcome.SUCCEEDED and asked == []
    assert finished_steps(events)["pin"].detail == f"{oldest.id} is not pinned: nothing to unpin"

    missing, _, _ = run(services, "backup-pin", "production", params={"backup_id": "19990101T000000Z",
                                                                      "release": "v0"})
    assert missing.outcome is Outcome.FAILED and "no backup 19990101T000000Z" in missing.detail


@pytest.mark.parametrize("prune_after", [True, False])
def test_a_backup_then_applies_retention_unless_prune_after_is_off(state: Path, tmp_path: Path,
                                                                    prune_after: bool) -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    config_path = tmp_path / "release.toml"
    config_path.write_text(text.replace("prune_after = true", f"prune_after = {str(prune_after).lower()}"))
    services = sandbox(state, config_path)
    assert services.config.backup.prune_after is prune_after
    before = {b.id for b in list_backups(services, "production")}
    [oldest] = prune_candidates(services, "production")  # 41 days old

    asked: list[ConfirmationNeeded] = []
    listed_when_asked: list[set[str]] = []
    events: list[Event] = []

    def typed(question: ConfirmationNeeded) -> str:
        asked.append(question)
        listed_when_asked.append({b.id for b in list_backups(services, "production")})
        return "production"

    result = services.runner.run(build_operation(services, "backup", "production", {}), events.append, typed)

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    after = {b.id for b in list_backups(services, "production")}
    new = after - before
    assert len(new) == 1
    if not prune_after:
        assert asked == []
        assert after == before | new
        assert finished_steps(events)["retention"].detail.startswith("skipped: [backup] prune_after = false")
        return
    # Deleting is destructive: production asks for its name typed, after the backup and before deleting.
    [question] = asked
    assert question.expected == "production" and question.step_id == "retention"
    assert question.prompt.startswith("Delete 1 backup past 30 days from sandbox in PRODUCTION.")
    assert f"production/{oldest.id}" in question.prompt and f"Backup {next(iter(new))} is complete" in question.prompt
    assert listed_when_asked == [before | new]
    assert after == (before | new) - {oldest.id}
    plan = logs(events, "retention")
    # The dry-run list first: what goes, what is kept though old enough and why, then the deletion.
    assert plan[:5] == [
        *(f"keep production/{backup_id} in sandbox ({age} days old): one of the newest 3"
          for backup_id, age in zip(sorted(after, reverse=True)[:3], (0, 1, 3), strict=True)),
        f"would delete production/{oldest.id} in sandbox (41 days old)",
        "keep 2 more within 30 days",
    ]
    assert plan[5] == f"deleted production/{oldest.id} from sandbox"
    assert finished_steps(events)["retention"].detail == "1 of 1 past 30 days deleted from sandbox"
    [audited] = [r for r in services.audit.records() if r["action"] == "backup-delete"]
    assert audited["params"]["backups"] == [f"sandbox:{oldest.id}"] and audited["params"]["op_id"] == result.op_id


@pytest.mark.parametrize("typed", [None, "staging"])  # no answer (a cron job without --confirm-env), a wrong name
def test_a_declined_retention_keeps_the_backup_and_deletes_nothing(state: Path, typed: str | None) -> None:
    services = sandbox(state)
    before = {b.id for b in list_backups(services, "production")}
    [oldest] = prune_candidates(services, "production")

    result, events, asked = run(services, "backup", "production", typed=typed)

    assert result.outcome is Outcome.DECLINED, result.detail  # exit 3, as every declined action
    assert [q.expected for q in asked] == ["production"]
    after = {b.id for b in list_backups(services, "production")}
    [new] = after - before
    assert after == before | {new} and oldest.id in after
    first_line = result.detail.splitlines()[0]
    assert first_line.startswith(f"backup {new} is complete and kept; nothing deleted: not confirmed: Delete 1")
    assert finished_steps(events)["backup"].status is StepStatus.DONE
    assert finished_steps(events)["retention"].status is StepStatus.FAILED
    assert f"nothing deleted: backup {new} is complete and kept" in logs(events, "retention")[-1]
    assert not [r for r in services.audit.records() if r["action"] == "backup-delete"]


def test_a_backup_with_nothing_past_retention_asks_nothing(state: Path) -> None:
    services = sandbox(state)
    first, _, asked = run(services, "backup", "production", typed="production")
    assert first.outcome is Outcome.SUCCEEDED and len(asked) == 1  # the 41-day-old one went

    second, events, asked = run(services, "backup", "production")  # no answer would decline: none is asked

    assert second.outcome is Outcome.SUCCEEDED, second.detail
    assert asked == []
    assert finished_steps(events)["retention"].detail == "none past 30 days in sandbox"


def test_backups_taken_within_one_second_list_newest_first(state: Path, tmp_path: Path) -> None:
    """A manifest's created_at is to the second: the id's -N orders two backups of the same second
    (a local directory lists ...Z before ...Z-2)."""
    services = dataclasses.replace(sandbox(state), store=LocalStore(tmp_path / "backups"))
    assert services.world is not None
    origin = services.world.clock.origin
    services.world.clock.now = lambda: origin  # type: ignore[method-assign]  # both in the same second
    for _ in range(2):
        result, _, _ = run(services, "backup", "staging")
        assert result.outcome is Outcome.SUCCEEDED, result.detail
    local = [b.id for b in list_backups(services, "staging") if b.store == "local"]
    assert local == [local[1] + "-2", local[1]]
