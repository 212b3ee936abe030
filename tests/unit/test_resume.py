"""Resume, for real: a process running a sandbox migration is SIGKILLed mid-step; the next
process finds it in the journal, resumes it at that step, or abandons it with a record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.catalog import build_operation
from services.core.events import (
    ConfirmationNeeded,
    Event,
    Finished,
    OperationStarted,
    Outcome,
    StepStarted,
    StepStatus,
)
from services.factory import Services, build, load_config

ROOT = Path(__file__).resolve().parents[2]

# Runs `migrate` on production in the sandbox and reports each step start and log line on stdout.
WORKER = """
import json, sys
from pathlib import Path
from services.catalog import build_operation
from services.core.events import LogLine, StepStarted
from services.factory import build, load_config

state, scale = Path(sys.argv[1]), float(sys.argv[2])
services = build(load_config(None, True, {"XDG_CONFIG_HOME": str(state / "config")}),
                 sandbox_mode=True, state=state, time_scale=scale)
op = build_operation(services, "migrate", "production", {})

def emit(event):
    if isinstance(event, StepStarted):
        print(json.dumps({"started": event.step_id, "op": event.op_id}), flush=True)
    elif isinstance(event, LogLine):
        print(json.dumps({"log": event.text, "step": event.step_id}), flush=True)

def confirm(question):
    if question.free_text:  # the sandbox's pending migrations have blocking lint findings
        return "resume drill"
    assert question.expected == "production", question
    return "production"  # the typed confirmation before migrations touch production

services.runner.run(op, emit, confirm)
print(json.dumps({"finished": True}), flush=True)
"""


def kill_mid_step(state: Path, step: str = "apply") -> tuple[str, int]:
    """Start the worker, SIGKILL it while `step` is running; return the op id and the dead pid."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(state / "config"),
           "XDG_STATE_HOME": str(state)}
    # time_scale 10: the backup's dump takes ~0.8 s and each migration ~0.6 s, so the kill lands mid-apply.
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(state), "10"], cwd=state, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    op_id = None
    deadline = time.monotonic() + 30
    try:
        for line in proc.stdout:
            message = json.loads(line)
            assert "finished" not in message, "the worker finished before it could be killed"
            op_id = message.get("op", op_id)
            if message.get("step") == step and message.get("log", "").startswith("applying"):
                break
            assert time.monotonic() < deadline
        else:
            pytest.fail(f"worker exited with {proc.wait()} before step {step}")
        # While the worker lives, its operation is running, not interrupted.
        journal_alive = build_services(state).journal
        assert journal_alive.interrupted() == []
        assert journal_alive.get(op_id).status == "running"  # type: ignore[arg-type]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)  # reap it: a zombie still answers kill(pid, 0)
    assert proc.returncode == -signal.SIGKILL
    assert op_id is not None
    return op_id, proc.pid


def build_services(state: Path) -> Services:
    return build(load_config(None, True, {"XDG_CONFIG_HOME": str(state / "config")}), sandbox_mode=True,
                 state=state, time_scale=3000)


def no_confirm(question: ConfirmationNeeded) -> str | None:
    raise AssertionError(f"unexpected confirmation: {question.prompt}")


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "state").mkdir()
    return tmp_path / "state"


def test_killed_operation_is_listed_and_resumes_at_its_step(state: Path) -> None:
    op_id, dead_pid = kill_mid_step(state)
    services = build_services(state)

    interrupted = services.journal.interrupted()
    assert [r.id for r in interrupted] == [op_id]
    record = interrupted[0]
    assert (record.kind, record.env, record.pid) == ("migrate", "production", dead_pid)
    assert [s.step_id for s in record.steps] == ["lint", "backup", "confirm", "apply", "integrity", "reindex"]
    assert [s.status for s in record.steps] == [StepStatus.DONE] * 3 + [StepStatus.RUNNING] + [StepStatus.PENDING] * 2
    assert record.resume_index == 3
    # journaled after the lint and backup steps
    assert set(record.state) == {"lint", "override_reason", "counts_before", "backup_id"}
    # The dead process still holds the production lock.
    held = services.locks.holder("production")
    assert held is not None and held.pid == dead_pid

    events: list[Event] = []
    op = build_operation(services, record.kind, record.env, record.params)
    op.id = record.id
    result = services.runner.run(op, events.append, no_confirm, start_at=record.resume_index, state=record.state)

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    started = events[0]
    assert isinstance(started, OperationStarted) and started.start_at == 3
    assert [e.step_id for e in events if isinstance(e, StepStarted)] == ["apply", "integrity", "reindex"]
    assert isinstance(events[-1], Finished) and events[-1].outcome is Outcome.SUCCEEDED

    after = services.journal.get(op_id)
    assert after.status == "done"
    assert [s.status for s in after.steps] == [StepStatus.DONE] * 6
    assert after.steps[3].detail == "2 applied"
    assert after.steps[4].detail == "row counts kept"
    assert after.state["backup_id"] == record.state["backup_id"]  # the first run's backup, not a new one
    assert services.journal.interrupted() == []
    assert services.world is not None and services.world.envs["production"].pending == []
    assert services.locks.holder("production") is None

    records = list(services.audit.records())
    outcomes = [(r["action"], r["params"].get("op_id"), r["outcome"]) for r in records if r["action"] != "notify"]
    # The sandbox's notifications are audited too: the takeover's among them.
    told = [r["params"]["event"] for r in records if r["action"] == "notify"]
    assert told == ["operation.started", "lock.taken_over", "operation.started", "operation.succeeded",
                    "migration.applied"]
    assert outcomes[0] == ("migrate", op_id, "started")
    # The dead process's lock was taken over, and that was audited before the resume.
    assert outcomes[1][:2] == ("lock-takeover", op_id) and f"process {dead_pid} is gone" in outcomes[1][2]
    assert outcomes[2] == ("migrate", op_id, "resumed")
    assert outcomes[3][2].startswith("succeeded")
    assert services.audit.verify().ok


def test_killed_operation_can_be_abandoned(state: Path) -> None:
    op_id, _ = kill_mid_step(state)
    services = build_services(state)
    assert [r.id for r in services.journal.interrupted()] == [op_id]

    services.journal.abandon(op_id, "operator restored manually")

    record = services.journal.get(op_id)
    assert record.status == "abandoned"
    assert record.detail == "operator restored manually"
    assert [s.status for s in record.steps] == [StepStatus.DONE] * 3 + [StepStatus.SKIPPED] * 3
    assert all(s.detail == "abandoned: operator restored manually" for s in record.steps[3:])
    assert record.steps[1].detail.startswith("backup ")
    assert services.journal.interrupted() == []


def test_a_migrate_with_nothing_pending_sends_no_migration_applied(state: Path) -> None:
    services = build_services(state)

    def told() -> list[str]:
        return [r["params"]["event"] for r in services.audit.records() if r["action"] == "notify"]

    first = services.runner.run(build_operation(services, "migrate", "staging", {}), lambda event: None, no_confirm)
    assert first.outcome is Outcome.SUCCEEDED, first.detail
    assert told().count("migration.applied") == 1
    again = services.runner.run(build_operation(services, "migrate", "staging", {}), lambda event: None, no_confirm)
    assert again.outcome is Outcome.SUCCEEDED and services.journal.get(again.op_id).state["applied"] == []
    assert told().count("migration.applied") == 1 and told().count("operation.succeeded") == 2
