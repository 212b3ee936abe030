"""Subprocesses are bounded: a timeout or a cancel stops the whole process group and says what ran."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from rig.helpers import wait_until

from services.adapters.commands import SubprocessCommands
from services.core import processes
from services.core.events import Finished, Outcome
from services.core.operations import Cancelled, Operation, Step, StepContext, StepFailed
from services.core.ports import CommandNotFound


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_check_past_its_timeout_is_stopped_with_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pids}; echo started; wait"
    lines: list[str] = []
    with pytest.raises(processes.TimedOut) as stopped:
        SubprocessCommands(tmp_path, timeout_s=0.5).run(["sh", "-c", script], lines.append)
    assert "did not finish within 0.5s" in str(stopped.value) and "sh -c" in str(stopped.value)
    assert "check_timeout_s" in " ".join(stopped.value.next_options)
    assert lines == ["started"]
    child = int(pids.read_text())
    wait_until(lambda: not _alive(child), timeout=10, interval=0.05, what="the check's child to be gone")


def test_a_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    with pytest.raises(processes.TimedOut):
        processes.run(["sh", "-c", "trap '' TERM; echo ready; sleep 30"], 0.3)


def test_captures_stdout_and_stderr_and_feeds_stdin() -> None:
    done = processes.run(["sh", "-c", "cat; echo oops >&2; exit 3"], 5, stdin_text="hello\n")
    assert (done.code, done.stdout, done.stderr) == (3, "hello\n", "oops\n")


def test_cancel_stops_a_running_check_and_the_operation_says_what_ran(tmp_path: Path) -> None:
    from services.core.audit import AuditLog
    from services.core.journal import Journal
    from services.core.locks import FileLocks
    from services.core.operations import Runner

    runner = Runner(Journal(tmp_path / "j.sqlite3"), AuditLog(tmp_path / "a.jsonl"), FileLocks(tmp_path / "locks"))
    cancel = threading.Event()
    commands = SubprocessCommands(tmp_path, timeout_s=60)

    def check(ctx: StepContext) -> str:
        threading.Timer(0.3, cancel.set).start()
        commands.run(["sleep", "30"], ctx.log)
        return "passed"

    events: list[object] = []
    result = runner.run(Operation("build", "staging", "checks", [Step("check-test", "Run test", check)]),
                        events.append, lambda q: None, cancel)
    assert result.outcome is Outcome.CANCELLED  # a check that had run its 30 s would have passed
    last = events[-1]
    assert isinstance(last, Finished)
    assert last.detail.startswith("Run test: cancelled by the operator while the check `sleep 30` ran for")


def test_cancelled_is_what_a_cancel_raises() -> None:
    event = threading.Event()
    event.set()
    from services.core import operations

    operations._running.cancel = event
    try:
        with pytest.raises(Cancelled):
            processes.run(["sleep", "5"], 10)
    finally:
        operations._running.cancel = None


def test_a_check_that_cannot_start_says_why_and_a_failing_one_gives_its_code(tmp_path: Path) -> None:
    commands = SubprocessCommands(tmp_path, timeout_s=30)
    lines: list[str] = []
    assert commands.run(["sh", "-c", "echo 3 failed; exit 3"], lines.append) == 3 and lines == ["3 failed"]
    with pytest.raises(CommandNotFound, match="^`no-such-binary-xyz` was not found on this host's PATH$") as missing:
        commands.run(["no-such-binary-xyz", "--fix"], lines.append)
    assert missing.value.program == "no-such-binary-xyz"
    with pytest.raises(CommandNotFound, match="^`/opt/nowhere/eslint` does not exist$"):
        commands.run(["/opt/nowhere/eslint"], lines.append)
    (tmp_path / "lint").write_text("#!/bin/sh\n")  # not executable
    with pytest.raises(CommandNotFound, match="permission denied: is it executable"):
        commands.run([str(tmp_path / "lint")], lines.append)
    with pytest.raises(StepFailed, match="does not exist, so its checks cannot run there"):
        SubprocessCommands(tmp_path / "gone").run(["true"], lines.append)
