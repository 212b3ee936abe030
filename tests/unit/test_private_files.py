"""Everything the console writes is private, under the usual umask 022: 0700 dirs, 0600 files."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.adapters.local_store import LocalStore
from services.canary import trace
from services.core.audit import AuditLog
from services.core.journal import Journal
from services.core.locks import FileLocks
from services.core.oplog import LogFile
from services.core.private import open_private, private_dir, touch_private, write_private


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes_below(root: Path) -> dict[str, int]:
    found = {".": mode(root)}
    for path in root.rglob("*"):
        found[path.relative_to(root).as_posix()] = mode(path)
    return found


def assert_private(root: Path) -> None:
    wrong = {name: oct(m) for name, m in modes_below(root).items()
             if m != (0o700 if (root / name).is_dir() else 0o600)}
    assert wrong == {}


def test_private_dir_makes_every_missing_level_0700_and_leaves_an_operators_dir_alone(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir(mode=0o755)
    private_dir(tmp_path / "mine" / "a" / "b")
    assert mode(tmp_path / "mine") == 0o755  # not ours: named by the operator
    assert mode(tmp_path / "mine" / "a") == mode(tmp_path / "mine" / "a" / "b") == 0o700


def test_an_owned_dir_made_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o755)
    private_dir(tmp_path / "state", owned=True)
    assert mode(tmp_path / "state") == 0o700


def test_files_are_0600_whether_new_appended_or_already_there(tmp_path: Path) -> None:
    old = tmp_path / "old.txt"
    old.write_text("x")
    old.chmod(0o644)
    with open_private(old, "a", encoding="utf-8") as handle:
        handle.write("y")
    assert old.read_text() == "xy" and mode(old) == 0o600
    assert mode(write_private(tmp_path / "new.bin", b"\x00")) == 0o600
    assert mode(touch_private(tmp_path / "empty")) == 0o600
    with pytest.raises(FileExistsError):
        open_private(old, "x")


def test_the_state_dir_journal_audit_locks_and_traces_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state" / "release-console"
    journal = Journal(state / "journal.sqlite3")
    journal.begin("op-1", "deploy", "staging", "Deploy", {"version": "1.4.2"}, [("plan", "Plan")])
    audit = AuditLog(state / "audit.jsonl")
    audit.append("staging", "deploy", {"version": "1.4.2"}, "succeeded")
    locks = FileLocks(state / "sandbox-locks")
    locks.acquire("staging", "deploy op-1")

    trace.export(journal.get("op-1"), state / "traces")

    assert_private(state)
    written = {"traces/op-1.md", "traces/op-1.json", "journal.sqlite3", "audit.jsonl", "audit.jsonl.head",
               "sandbox-locks/staging.lock"}
    assert written <= set(modes_below(state))


def test_build_logs_and_local_backups_are_private(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "logs" / "op-1.log")
    log.write(["step 1", "step 2"])
    log.close()
    store = LocalStore(tmp_path / "backups")
    store.put("staging/20261204T000000Z/db.dump.zst", [b"dump"])

    assert (tmp_path / "logs" / "op-1.log").read_text() == "step 1\nstep 2\n"
    assert_private(tmp_path / "logs")
    assert_private(tmp_path / "backups")
