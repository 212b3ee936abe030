"""The operations runner with a real journal, audit log and file locks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.core import identity
from services.core.audit import AuditLog
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
from services.core.journal import Journal
from services.core.locks import FileLocks, LockInfo
from services.core.operations import (
    Operation,
    Runner,
    Step,
    StepContext,
    StepFailed,
    current_cancel,
    pause,
    shielded,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Rig:
    journal: Journal
    audit: AuditLog
    locks: FileLocks
    runner: Runner
    events: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    def outcomes(self) -> list[str]:
        return [r["outcome"] for r in self.audit.records()]


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    journal = Journal(tmp_path / "journal.sqlite3")
    audit = AuditLog(tmp_path / "audit.jsonl")
    locks = FileLocks(tmp_path / "locks")
    return Rig(journal, audit, locks, Runner(journal, audit, locks))


def no_confirm(question: ConfirmationNeeded) -> str | None:
    raise AssertionError(f"unexpected confirmation: {question.prompt}")


def op(steps: list[Step], env: str = "staging", **params: object) -> Operation:
    return Operation("test", env, "Test operation", steps, dict(params))


def ok(name: str, calls: list[str]) -> Step:
    def run(ctx: StepContext) -> str:
        calls.append(name)
        ctx.log(f"{name} running")
        return f"{name} ok"

    return Step(name, f"Step {name}", run)


def structure(events: list[Event]) -> list[tuple[str, ...]]:
    shape: list[tuple[str, ...]] = []
    for e in events:
        if isinstance(e, OperationStarted):
            shape.append(("started",))
        elif isinstance(e, StepStarted):
            shape.append(("step", e.step_id))
        elif isinstance(e, StepFinished):
            shape.append(("done", e.step_id, e.status.value))
        elif isinstance(e, Finished):
            shape.append(("finished", e.outcome.value))
    return shape


def test_success_emits_events_in_order_and_journals(rig: Rig) -> None:
    calls: list[str] = []
    seen_holder = []

    def middle(ctx: StepContext) -> str:
        seen_holder.append(rig.locks.holder(ctx.env))
        ctx.state["built"] = "sha256:abc"
        ctx.progress(1, 1, "images")
        return "built"

    operation = op([ok("a", calls), Step("b", "Step b", middle), ok("c", calls)], version="1.5.0")
    result = rig.runner.run(operation, rig.emit, no_confirm)

    assert result.outcome is Outcome.SUCCEEDED
    assert calls == ["a", "c"]
    assert structure(rig.events) == [
        ("started",),
        ("step", "a"), ("done", "a", "done"),
        ("step", "b"), ("done", "b", "done"),
        ("step", "c"), ("done", "c", "done"),
        ("finished", "succeeded"),
    ]
    started = rig.events[0]
    assert isinstance(started, OperationStarted)
    assert started.steps == (("a", "Step a"), ("b", "Step b"), ("c", "Step c"))
    assert [e.index for e in rig.of(StepStarted)] == [0, 1, 2]  # type: ignore[attr-defined]
    assert any(isinstance(e, LogLine) and e.text == "a running" for e in rig.events)
    assert all(e.op_id == operation.id for e in rig.events)

    # The lock was ours while running, and is free afterwards.
    assert seen_holder[0] is not None and seen_holder[0].pid == os.getpid()
    assert rig.locks.holder("staging") is None

    record = rig.journal.get(operation.id)
    assert record.status == "done"
    assert [s.status for s in record.steps] == [StepStatus.DONE] * 3
    assert [s.detail for s in record.steps] == ["a ok", "built", "c ok"]
    assert record.state == {"built": "sha256:abc"}
    assert record.params == {"version": "1.5.0"}
    assert rig.journal.interrupted() == []

    assert rig.outcomes() == ["started", "succeeded: 3 steps done"]
    assert rig.audit.verify().ok


def test_appended_entries_are_journaled_at_once_in_order_and_survive_a_failure(rig: Rig) -> None:
    seen_mid_step: list[tuple[dict[str, object], ...]] = []

    def checks(ctx: StepContext) -> str:
        ctx.append([{"check": 1, "rule": "error_rate"}, {"check": 1, "rule": "judge"}])
        seen_mid_step.append(rig.journal.get(ctx.op_id).entries)  # written before the step ends
        ctx.append([{"check": 2, "rule": "error_rate"}])
        raise StepFailed("rolled back at check 2", ())

    operation = op([Step("monitor", "Watch", checks)])
    assert rig.runner.run(operation, rig.emit, no_confirm).outcome is Outcome.FAILED
    assert seen_mid_step == [({"check": 1, "rule": "error_rate"}, {"check": 1, "rule": "judge"})]
    record = rig.journal.get(operation.id)
    assert [(e["check"], e["rule"]) for e in record.entries] == [(1, "error_rate"), (1, "judge"), (2, "error_rate")]
    assert record.state == {}  # the entries are not copied into the state


def test_failing_step(rig: Rig) -> None:
    calls: list[str] = []

    def broken(ctx: StepContext) -> str:
        raise StepFailed("disk full on the builder", ("free space and retry", "abandon"))

    operation = op([ok("a", calls), Step("b", "Step b", broken), ok("c", calls), ok("d", calls)])
    result = rig.runner.run(operation, rig.emit, no_confirm)

    assert result.outcome is Outcome.FAILED
    assert result.failed_step == "b"
    assert calls == ["a"]
    assert structure(rig.events) == [
        ("started",), ("step", "a"), ("done", "a", "done"), ("step", "b"), ("done", "b", "failed"),
        ("finished", "failed"),
    ]
    finished = rig.events[-1]
    assert isinstance(finished, Finished)
    assert finished.next_options == ("free space and retry", "abandon")
    assert finished.detail == "disk full on the builder"

    record = rig.journal.get(operation.id)
    assert record.status == "failed"
    assert [s.status for s in record.steps] == [StepStatus.DONE, StepStatus.FAILED, StepStatus.PENDING,
                                                StepStatus.PENDING]
    assert record.steps[1].detail == "disk full on the builder"
    assert record.resume_index == 1
    assert rig.outcomes() == ["started", "failed: disk full on the builder"]
    assert rig.locks.holder("staging") is None


def test_unexpected_exception_becomes_failure_with_secret_masked(rig: Rig) -> None:
    def broken(ctx: StepContext) -> str:
        raise ConnectionError("cannot reach postgresql://app:hunter2@db:5432/food")

    result = rig.runner.run(op([Step("x", "X", broken)]), rig.emit, no_confirm)
    assert result.outcome is Outcome.FAILED
    finished = rig.events[-1]
    assert isinstance(finished, Finished)
    assert finished.next_options == ("retry this step", "abandon")
    assert "hunter2" not in finished.detail and "db:5432" in finished.detail
    assert "hunter2" not in rig.audit.path.read_text()
    assert "hunter2" not in rig.journal.get(result.op_id).steps[0].detail


def test_declined_confirmation(rig: Rig) -> None:
    calls: list[str] = []
    asked: list[ConfirmationNeeded] = []

    def gate(ctx: StepContext) -> str:
        ctx.confirm("Deploy to staging?")
        return "confirmed"

    def decline(question: ConfirmationNeeded) -> str | None:
        asked.append(question)
        return None

    result = rig.runner.run(op([Step("confirm", "Confirm", gate), ok("deploy", calls)]), rig.emit, decline)
    assert result.outcome is Outcome.DECLINED
    assert calls == []
    assert asked[0].prompt == "Deploy to staging?" and asked[0].expected is None
    assert rig.journal.get(result.op_id).steps[1].status is StepStatus.PENDING
    assert rig.outcomes()[-1].startswith("declined")


def test_an_operation_whose_step_ids_repeat_is_refused_before_anything_runs(rig: Rig) -> None:
    calls: list[str] = []
    with pytest.raises(ValueError, match="step ids repeat: confirm"):
        rig.runner.run(op([ok("confirm", calls), ok("apply", calls), ok("confirm", calls)]), rig.emit, lambda q: "yes")
    assert calls == [] and rig.journal.recent(5) == []


def test_a_resume_whose_rebuilt_steps_differ_from_the_journaled_ones_is_refused(rig: Rig) -> None:
    """A setting that removed a step before the resume point would make the journaled index name the
    next step: here the apply would be skipped. Refused, audited, nothing run, the record kept."""
    calls: list[str] = []

    def fails(ctx: StepContext) -> str:
        raise StepFailed("disk full")

    first = op([ok("archiving", calls), ok("backup", calls), Step("apply", "Apply", fails), ok("check", calls)])
    assert rig.runner.run(first, rig.emit, no_confirm).failed_step == "apply"
    resume_at = rig.journal.get(first.id).resume_index
    assert resume_at == 2

    rebuilt = op([ok("backup", calls), ok("apply", calls), ok("check", calls)])
    rebuilt.id = first.id
    calls.clear()
    result = rig.runner.run(rebuilt, rig.emit, no_confirm, start_at=resume_at)

    assert result.outcome is Outcome.FAILED and calls == []
    assert result.detail.startswith("not resumed: its steps changed since it was journaled (no longer built: "
                                    "archiving)"), result.detail
    finished = rig.events[-1]
    assert isinstance(finished, Finished) and finished.next_options[0].startswith(
        f"release-console journal abandon {first.id}")
    assert rig.outcomes()[-1] == f"refused: {result.detail}"
    assert rig.journal.get(first.id).resume_index == 2 and rig.journal.get(first.id).status == "failed"

    same = op([ok("archiving", calls), ok("backup", calls), ok("apply", calls), ok("check", calls)])
    same.id = first.id
    assert rig.runner.run(same, rig.emit, no_confirm, start_at=resume_at).outcome is Outcome.SUCCEEDED
    assert calls == ["apply", "check"]


@pytest.mark.parametrize(("typed", "outcome"), [
    ("prod", Outcome.DECLINED),
    ("Production", Outcome.DECLINED),
    ("yes", Outcome.DECLINED),
    ("production", Outcome.SUCCEEDED),
    ("  production \n", Outcome.SUCCEEDED),
])
def test_typed_confirmation_must_match(rig: Rig, typed: str, outcome: Outcome) -> None:
    calls: list[str] = []
    waiting: list[StepStatus] = []

    def gate(ctx: StepContext) -> str:
        ctx.confirm("Type 'production' to confirm.", expected="production")
        return "confirmed"

    def answer(question: ConfirmationNeeded) -> str | None:
        assert question.expected == "production"
        waiting.append(rig.journal.get(question.op_id).steps[0].status)
        return typed

    result = rig.runner.run(op([Step("confirm", "Confirm", gate), ok("go", calls)], env="production"), rig.emit,
                            answer)
    assert result.outcome is outcome
    assert calls == (["go"] if outcome is Outcome.SUCCEEDED else [])
    assert waiting == [StepStatus.WAITING]  # the journal shows the step waiting for the operator


def test_cancel_wakes_a_sleeping_step(rig: Rig) -> None:
    cancel = threading.Event()
    calls: list[str] = []

    def slow(ctx: StepContext) -> str:
        ctx.sleep(60)
        return "slept"

    def emit(event: Event) -> None:
        rig.emit(event)
        if isinstance(event, StepStarted) and event.step_id == "slow":
            threading.Timer(0.05, cancel.set).start()

    result = rig.runner.run(op([ok("a", calls), Step("slow", "Slow", slow), ok("c", calls)]), emit, no_confirm,
                            cancel)
    assert result.outcome is Outcome.CANCELLED
    # Woken inside its sleep: the step itself was cancelled, it did not sleep its 60 s and return.
    [slow_done] = [e for e in rig.events if isinstance(e, StepFinished) and e.step_id == "slow"]
    assert slow_done.status is StepStatus.FAILED and slow_done.detail == "Slow: cancelled by the operator"
    assert calls == ["a"]
    finished = rig.events[-1]
    assert isinstance(finished, Finished) and "resume from this step" in finished.next_options
    record = rig.journal.get(result.op_id)
    assert record.status == "cancelled"
    assert [s.status for s in record.steps] == [StepStatus.DONE, StepStatus.FAILED, StepStatus.PENDING]
    assert record.resume_index == 1
    assert rig.locks.holder("staging") is None


def test_cancel_wakes_an_adapters_pause_but_not_a_shielded_change(rig: Rig) -> None:
    """An adapter's wait (a target's health poll) gets no StepContext: pause() finds the step's cancel
    event itself. A shielded change (nginx's switch) finishes whole; the next wait after it stops."""
    cancel = threading.Event()
    seen: list[str] = []

    def wait(ctx: StepContext) -> str:
        with shielded():
            cancel.set()  # ctrl+x while the switch runs
            pause(0)
            seen.append("switched")
        pause(60)
        seen.append("waited")
        return "waited"

    result = rig.runner.run(op([Step("wait", "Wait", wait)]), rig.emit, no_confirm, cancel)
    assert result.outcome is Outcome.CANCELLED and result.failed_step == "wait"
    assert seen == ["switched"]
    assert rig.journal.get(result.op_id).resume_index == 0
    assert current_cancel() is None
    pause(0)  # outside an operation: a plain sleep, nothing to cancel it


def test_cancel_before_start_runs_nothing(rig: Rig) -> None:
    cancel = threading.Event()
    cancel.set()
    calls: list[str] = []
    result = rig.runner.run(op([ok("a", calls)]), rig.emit, no_confirm, cancel)
    assert result.outcome is Outcome.CANCELLED
    assert calls == []


@pytest.fixture
def other_holder(rig: Rig) -> Iterator[subprocess.Popen[str]]:
    """Another live process holding the staging lock through its own FileLocks."""
    code = (
        "import sys; from pathlib import Path; from services.core.locks import FileLocks; "
        "FileLocks(Path(sys.argv[1])).acquire('staging', 'release 1.4.9 by the other on-call'); "
        "print('held', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(rig.locks.directory)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)


def test_lock_held_by_another_process_refuses(rig: Rig, other_holder: subprocess.Popen[str]) -> None:
    calls: list[str] = []
    operation = op([ok("a", calls)])
    result = rig.runner.run(operation, rig.emit, no_confirm)

    assert result.outcome is Outcome.FAILED
    assert calls == []
    assert structure(rig.events) == [("finished", "failed")]
    finished = rig.events[-1]
    assert isinstance(finished, Finished)
    assert f"pid {other_holder.pid}" in finished.detail
    assert f"@{socket.gethostname()}" in finished.detail
    assert "release 1.4.9 by the other on-call" in finished.detail
    assert finished.next_options  # tells the operator what they can do
    # The other holder still holds it: a refused run never releases someone else's lock.
    held = rig.locks.holder("staging")
    assert held is not None and held.pid == other_holder.pid
    records = list(rig.audit.records())
    assert len(records) == 1
    assert records[0]["outcome"].startswith("refused:")
    assert f"pid {other_holder.pid}" in records[0]["outcome"]
    with pytest.raises(KeyError):
        rig.journal.get(operation.id)


def test_lock_held_on_another_host_refuses(rig: Rig) -> None:
    lock = {"env": "staging", "holder": "alice@bastion-2", "ssh_client": "10.0.0.5 40000 22", "pid": 4242,
            "since": time.time() - 125, "reason": "migrate by alice"}
    (rig.locks.directory / "staging.lock").write_text(json.dumps(lock))
    result = rig.runner.run(op([ok("a", [])]), rig.emit, no_confirm)
    assert result.outcome is Outcome.FAILED
    assert "alice@bastion-2 (pid 4242) for 2m05s: migrate by alice" in result.detail
    assert rig.locks.holder("staging").holder == "alice@bastion-2"  # type: ignore[union-attr]
    assert rig.outcomes()[0].startswith("refused:")


def dead_holders_lock(pid: int, boot_id: str, start_ticks: int = 12345) -> dict[str, object]:
    return {"env": "staging", "holder": f"root@{socket.gethostname()}", "ssh_client": "", "pid": pid,
            "since": time.time() - 60, "reason": "crashed", "host": socket.gethostname(), "boot_id": boot_id,
            "start_ticks": start_ticks}


def test_stale_lock_of_a_dead_process_on_this_host_is_taken_over_and_audited(rig: Rig) -> None:
    """A crashed console's lock (same host and boot, pid gone) must not block a resume forever."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = dead_holders_lock(dead.pid, identity.boot_id())
    (rig.locks.directory / "staging.lock").write_text(json.dumps(lock))
    result = rig.runner.run(op([ok("a", [])]), rig.emit, no_confirm)
    assert result.outcome is Outcome.SUCCEEDED
    assert rig.locks.holder("staging") is None
    takeover = next(r for r in rig.audit.records() if r["action"] == "lock-takeover")
    assert takeover["params"]["from"] == lock
    assert f"process {dead.pid} is gone" in takeover["outcome"]
    actions = [r["action"] for r in rig.audit.records()]
    assert actions.index("lock-takeover") < actions.index("test")  # audited before the operation ran


def test_a_reused_pid_is_a_dead_holder(rig: Rig) -> None:
    """Our own pid, alive, but started at another time than the holder: the holder is gone."""
    lock = dead_holders_lock(os.getpid(), identity.boot_id(), start_ticks=1)
    (rig.locks.directory / "staging.lock").write_text(json.dumps(lock))
    assert rig.runner.run(op([ok("a", [])]), rig.emit, no_confirm).outcome is Outcome.SUCCEEDED


@pytest.mark.parametrize("boot_id", ["another-boot-of-a-clone", ""], ids=["other boot", "no boot id recorded"])
def test_same_host_name_on_another_boot_is_never_taken_over(rig: Rig, boot_id: str) -> None:
    """A clone of this machine (same host name, another boot id) may be alive elsewhere."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (rig.locks.directory / "staging.lock").write_text(json.dumps(dead_holders_lock(dead.pid, boot_id)))
    result = rig.runner.run(op([ok("a", [])]), rig.emit, no_confirm)
    assert result.outcome is Outcome.FAILED and "locked by" in result.detail
    assert rig.locks.holder("staging").pid == dead.pid  # type: ignore[union-attr]
    assert "lock-takeover" not in [r["action"] for r in rig.audit.records()]


def test_operation_without_lock_ignores_holder(rig: Rig, other_holder: subprocess.Popen[str]) -> None:
    operation = op([ok("a", [])])
    operation.takes_lock = False
    assert rig.runner.run(operation, rig.emit, no_confirm).outcome is Outcome.SUCCEEDED
    assert rig.locks.holder("staging").pid == other_holder.pid  # type: ignore[union-attr]


@pytest.mark.parametrize(("age", "shown"), [(5, "0m05s"), (125, "2m05s"), (3600 * 3 + 420, "3h07m"),
                                            (86400 * 12 + 3600 * 4 + 59, "12d04h")])
def test_a_lock_names_its_age_in_units_a_person_reads(age: int, shown: str) -> None:
    held = LockInfo("staging", "alice@bastion-2", "", 4242, time.time() - age, "deploy")
    assert held.describe() == f"alice@bastion-2 (pid 4242) for {shown}: deploy"
