"""The operation log: the runner saves every operation's full text, whoever started it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.core.audit import AuditLog
from services.core.events import Event, LogLine, Outcome
from services.core.journal import Journal
from services.core.locks import FileLocks
from services.core.masking import register
from services.core.operations import Operation, Runner, Step, StepContext

ROOT = Path(__file__).resolve().parents[2]
SECRET = "oplog-secret-8c1f2e"


def runner(tmp_path: Path, logs: Path) -> Runner:
    journal, audit = Journal(tmp_path / "journal.sqlite3"), AuditLog(tmp_path / "audit.jsonl")
    return Runner(journal, audit, FileLocks(tmp_path / "locks"), lambda op_id: logs / f"{op_id}.log")


def chatty(lines: int) -> Operation:
    def run(ctx: StepContext) -> str:
        for n in range(lines):
            ctx.log(f"line {n:06d}")
        ctx.log(f"connecting with password={SECRET}")
        return "done"

    return Operation("test", "staging", "Chatty", [Step("talk", "Talk", run)], {})


def test_every_line_is_saved_masked_and_private(tmp_path: Path) -> None:
    register(SECRET)
    events: list[Event] = []
    operation = chatty(50_000)
    result = runner(tmp_path, tmp_path / "logs").run(operation, events.append, lambda q: None)
    assert result.outcome is Outcome.SUCCEEDED
    path = tmp_path / "logs" / f"{operation.id}.log"
    saved = path.read_text().splitlines()
    assert sum(1 for line in saved if line.endswith(tuple(f"| line {n:06d}" for n in (0, 49_999)))) == 2
    assert sum(1 for line in saved if "| line " in line) == 50_000  # more than any pane keeps
    assert "[1/1] Talk ..." in saved[0] and saved[-1].split(" ", 1)[1].startswith("SUCCEEDED")
    assert SECRET not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700


def test_a_log_that_cannot_be_written_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the log directory should be")
    events: list[Event] = []
    result = runner(tmp_path, blocked).run(chatty(3), events.append, lambda q: None)
    assert result.outcome is Outcome.SUCCEEDED
    warnings = [e.text for e in events if isinstance(e, LogLine) and e.level == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("log not saved:")


def test_the_headless_cli_saves_the_full_log_too(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    done = subprocess.run([sys.executable, "-m", "console.cli", "--sandbox", "--time-scale", "3000", "backup", "create",
                           "--env", "staging"], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    told = [line for line in done.stderr.splitlines() if line.startswith("full log: ")]
    assert len(told) == 1
    path = Path(told[0].removeprefix("full log: "))
    assert path.is_relative_to(tmp_path / "state" / "release-console") and path.stat().st_mode & 0o777 == 0o600
    saved = path.read_text()
    printed = [line for line in done.stdout.splitlines() if line.strip()]
    assert printed and saved.splitlines() == printed  # the file keeps what the terminal showed
