"""The keyed audit chain, a torn tail and its repair, a removed log, and the runner refusing to act unaudited."""

from __future__ import annotations

import hashlib
import json
import stat
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.core.audit import KEYED, UNKEYED, UNKEYED_NOTE, AuditLog, AuditUnavailable
from services.core.events import Finished, Outcome
from services.core.journal import Journal
from services.core.locks import FileLocks
from services.core.operations import Operation, Runner, Step

KEY = SecretStr("a-key-from-the-vault-0123456789")


def write(audit: AuditLog, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        audit.append("production", f"action-{i}", {"n": i}, "succeeded")


def rechain(audit: AuditLog, edit_line: int) -> None:
    """What an attacker without the key does: edit one record, recompute every hash after it as SHA-256."""
    lines = audit.path.read_text().splitlines()
    prev = "0" * 64
    out = []
    for number, line in enumerate(lines, start=1):
        record = json.loads(line)
        if number == edit_line:
            record["outcome"] = "failed: nothing happened here"
        record["prev"] = prev
        body = {k: v for k, v in record.items() if k != "hash"}
        # Without the key a keyed record's HMAC cannot be made: they hash it as they can.
        record["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        prev = record["hash"]
        out.append(json.dumps(record, sort_keys=True) + "\n")
    audit.path.write_text("".join(out))
    head = audit.path.with_suffix(".jsonl.head")
    head.write_text(f"{prev} {len(out)}\n")


def test_unkeyed_chain_says_it_cannot_catch_a_rechain(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    write(audit, 3)
    rechain(audit, 2)
    result = audit.verify()
    assert result.ok and not result.keyed  # what an unkeyed chain cannot see ...
    assert result.note == UNKEYED_NOTE  # ... it says plainly
    assert all(r["mode"] == UNKEYED for r in audit.records())


def test_keyed_chain_catches_a_rewritten_and_rechained_record(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", key=KEY)
    write(audit, 4)
    assert audit.verify().ok and audit.verify().keyed and audit.verify().note == ""
    rechain(audit, 2)
    result = audit.verify()
    assert not result.ok
    assert result.line == 1  # the first record's seal is already not the key's
    assert "HMAC does not match" in result.problem


def test_a_rechain_downgraded_to_unkeyed_records_is_caught(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", key=KEY)
    write(audit, 3)
    lines = [json.loads(line) for line in audit.path.read_text().splitlines()]
    for record in lines:
        record["mode"] = UNKEYED
    audit.path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    rechain(audit, 2)
    # All records unkeyed now: with the key set, verify says none is sealed by it.
    result = audit.verify()
    assert result.ok and not result.keyed
    assert "no record is sealed with the key" in result.note


def test_a_key_switched_on_later_seals_the_records_before_it(tmp_path: Path) -> None:
    write(AuditLog(tmp_path / "audit.jsonl"), 2)
    keyed = AuditLog(tmp_path / "audit.jsonl", key=KEY)
    write(keyed, 2, start=2)
    result = keyed.verify()
    assert result.ok and result.keyed
    assert result.note.startswith("keyed from line 3 on")
    assert [r["mode"] for r in keyed.records()] == [UNKEYED, UNKEYED, KEYED, KEYED]
    # An edit of an unkeyed record before the first keyed one is still caught: the keyed one sealed its hash.
    rechain(keyed, 1)
    broken = keyed.verify()
    assert not broken.ok and broken.line == 3
    # And the unkeyed console (no key) cannot check the keyed records: it says so.
    unkeyed = AuditLog(tmp_path / "other.jsonl")
    write(unkeyed, 1)
    lines = (tmp_path / "audit.jsonl").read_text()
    (tmp_path / "other.jsonl").write_text(lines)
    (tmp_path / "other.jsonl.head").unlink()
    assert "no [audit] key is set" in AuditLog(tmp_path / "other.jsonl").verify().problem


def test_an_unkeyed_record_after_keyed_ones_is_caught(tmp_path: Path) -> None:
    write(AuditLog(tmp_path / "audit.jsonl", key=KEY), 2)
    write(AuditLog(tmp_path / "audit.jsonl"), 1, start=2)  # a console without the key appended
    result = AuditLog(tmp_path / "audit.jsonl", key=KEY).verify()
    assert not result.ok and result.line == 3
    assert "unkeyed record after keyed ones" in result.problem


def test_another_key_is_caught(tmp_path: Path) -> None:
    write(AuditLog(tmp_path / "audit.jsonl", key=KEY), 2)
    result = AuditLog(tmp_path / "audit.jsonl", key=SecretStr("another-key-0123456789abcdef")).verify()
    assert not result.ok and result.line == 1


def test_head_is_written_atomically_and_private(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "state" / "audit.jsonl", key=KEY)
    write(audit, 2)
    head = tmp_path / "state" / "audit.jsonl.head"
    last = list(audit.records())[-1]["hash"]
    assert head.read_text() == f"{last} 2\n"
    for path in (head, audit.path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert [p.name for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")] == []


def test_a_removed_log_with_its_head_left_is_an_error(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", key=KEY)
    write(audit, 3)
    audit.path.unlink()
    result = AuditLog(tmp_path / "audit.jsonl", key=KEY).verify()
    assert not result.ok
    assert "the log was removed or emptied: its head says 3 records" in result.problem
    audit.path.write_text("")
    assert "removed or emptied" in audit.verify().problem


def test_a_head_one_record_behind_is_a_crash_between_the_writes_not_a_cut(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", key=KEY)
    write(audit, 2)
    head = tmp_path / "audit.jsonl.head"
    before = head.read_text()
    write(audit, 1, start=2)
    head.write_text(before)  # as if the process died after the log's fsync, before the head's rename
    assert audit.verify().ok
    write(audit, 1, start=3)  # the next append chains onto the file's last record
    assert audit.verify().ok and audit.verify().records == 4


def test_a_torn_tail_is_reported_refused_then_repaired_and_the_repair_audited(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", key=KEY)
    write(audit, 3)
    torn = b'{"action": "deploy", "env": "produ'
    with audit.path.open("ab") as handle:
        handle.write(torn)  # a crash mid-write: no newline

    result = audit.verify()
    assert not result.ok and result.line == 4
    assert "torn last line (line 4" in result.problem and "release-console audit repair" in result.problem
    with pytest.raises(AuditUnavailable, match="audit repair"):
        audit.append("production", "deploy", {}, "started")
    assert audit.path.read_bytes().endswith(torn)  # nothing appended after the torn bytes

    repair = audit.repair()
    assert repair is not None and (repair.line, repair.size) == (4, len(torn))
    assert repair.evidence.read_bytes() == torn
    assert stat.S_IMODE(repair.evidence.stat().st_mode) == 0o600
    records = list(audit.records())
    assert len(records) == 4
    assert records[-1]["action"] == "audit-repair"
    assert records[-1]["params"] == {"line": 4, "bytes": len(torn), "evidence": str(repair.evidence)}
    assert audit.verify().ok
    assert audit.repair() is None  # nothing torn now


def test_an_invalid_last_line_with_its_newline_is_torn_too(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    write(audit, 2)
    with audit.path.open("ab") as handle:
        handle.write(b"\x00\x00\x00\n")  # a power loss can leave zeros where the line should be
    assert "torn last line (line 3" in audit.verify().problem
    assert audit.repair() is not None and audit.verify().ok


def test_the_runner_refuses_to_start_what_it_cannot_audit(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    write(audit, 1)
    with audit.path.open("ab") as handle:
        handle.write(b'{"half')
    ran: list[str] = []
    events: list[object] = []
    op = Operation("deploy", "staging", "deploy", [Step("a", "A", lambda ctx: ran.append("a") or "")])
    locks = FileLocks(tmp_path / "locks")
    result = Runner(Journal(tmp_path / "journal.sqlite3"), audit, locks).run(op, events.append, lambda q: None,
                                                                              threading.Event())
    assert result.outcome is Outcome.FAILED and ran == []
    assert "torn last line" in result.detail
    finished = events[-1]
    assert isinstance(finished, Finished) and any("audit repair" in o for o in finished.next_options)
    assert locks.holder("staging") is None  # not even the lock was taken
