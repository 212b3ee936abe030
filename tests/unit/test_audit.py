"""The audit log: hash chain, tamper detection with the line, masking, who."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.core.audit import MASK, AuditLog, mask


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditLog:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("SSH_CLIENT", raising=False)
    audit = AuditLog(tmp_path / "audit" / "audit.jsonl")
    for i in range(5):
        audit.append("staging", f"action-{i}", {"n": i}, "succeeded")
    return audit


def lines(audit: AuditLog) -> list[str]:
    return audit.path.read_text(encoding="utf-8").splitlines(keepends=True)


def rewrite(audit: AuditLog, new_lines: list[str]) -> None:
    audit.path.write_text("".join(new_lines), encoding="utf-8")


def test_appended_records_verify(log: AuditLog) -> None:
    result = log.verify()
    assert result.ok, result
    assert result.records == 5
    records = list(log.records())
    assert [r["action"] for r in records] == [f"action-{i}" for i in range(5)]
    assert records[0]["prev"] == "0" * 64
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(records))
    assert log.tail(2) == records[-2:]


def test_empty_log_verifies(tmp_path: Path) -> None:
    result = AuditLog(tmp_path / "empty.jsonl").verify()
    assert result.ok and result.records == 0


def test_edited_field_in_middle_record(log: AuditLog) -> None:
    text = lines(log)
    record = json.loads(text[2])
    record["outcome"] = "failed"
    text[2] = json.dumps(record, sort_keys=True) + "\n"
    rewrite(log, text)
    result = log.verify()
    assert not result.ok
    assert result.line == 3
    assert "edited" in result.problem


def test_edited_record_with_recomputed_hash_breaks_next_link(log: AuditLog) -> None:
    import hashlib

    text = lines(log)
    record = json.loads(text[2])
    record["env"] = "production"
    body = {k: v for k, v in record.items() if k != "hash"}
    record["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    text[2] = json.dumps(record, sort_keys=True) + "\n"
    rewrite(log, text)
    result = log.verify()
    assert not result.ok
    assert result.line == 4
    assert "chain broken" in result.problem


def test_deleted_middle_line(log: AuditLog) -> None:
    text = lines(log)
    del text[1]
    rewrite(log, text)
    result = log.verify()
    assert not result.ok
    assert result.line == 2
    assert result.records == 1
    assert "chain broken" in result.problem


def test_reordered_lines(log: AuditLog) -> None:
    text = lines(log)
    text[2], text[3] = text[3], text[2]
    rewrite(log, text)
    result = log.verify()
    assert not result.ok
    assert result.line == 3


def test_removed_last_record_caught_by_head_anchor(log: AuditLog) -> None:
    rewrite(log, lines(log)[:-1])
    result = log.verify()
    assert not result.ok
    assert result.records == 4
    assert "removed" in result.problem


def test_removed_last_record_still_caught_after_another_append(log: AuditLog) -> None:
    """Truncating the tail must not be laundered by the next legitimate append."""
    rewrite(log, lines(log)[:-1])
    log.append("staging", "after-tamper", {}, "succeeded")
    result = log.verify()
    assert not result.ok
    assert result.line == 5


def test_cut_last_record_is_invalid_json(log: AuditLog) -> None:
    text = lines(log)
    text[-1] = text[-1][: len(text[-1]) // 2] + "\n"
    rewrite(log, text)
    result = log.verify()
    assert not result.ok
    assert result.line == 5
    assert "JSON" in result.problem


def test_invalid_json_in_middle(log: AuditLog) -> None:
    text = lines(log)
    text[1] = "{not json\n"
    rewrite(log, text)
    result = log.verify()
    assert (result.ok, result.line, result.problem) == (False, 2, "not valid JSON")


def test_secrets_are_masked_in_the_file(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    url = "postgresql://u:hunter2@h/db"
    params = {
        "token": SecretStr("hunter2"),
        "password": "hunter2",
        "database_url": url,
        "dsn": url,
        "nested": {"targets": [url, {"redis_url": "redis://:hunter2@r:6379"}]},
        "version": "1.5.0",
    }
    record = audit.append("production", "migrate", params, "succeeded")
    stored = audit.path.read_text(encoding="utf-8")
    assert "hunter2" not in stored
    assert "hunter2" not in json.dumps(record)
    assert record["params"]["token"] == MASK
    assert record["params"]["password"] == MASK
    assert record["params"]["database_url"] == MASK
    assert record["params"]["dsn"] == f"postgresql://u:{MASK}@h/db"
    assert record["params"]["nested"]["targets"][0] == f"postgresql://u:{MASK}@h/db"
    assert record["params"]["version"] == "1.5.0"
    assert audit.verify().ok


def test_mask_leaves_plain_values() -> None:
    assert mask({"url": "https://example.com/api", "count": 3}) == {"url": "https://example.com/api", "count": 3}


def test_who_comes_from_the_os_not_from_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd
    import socket

    monkeypatch.setenv("SSH_CLIENT", "203.0.113.9 51234 22")
    monkeypatch.setenv("USER", "somebody-else")
    monkeypatch.setenv("LOGNAME", "somebody-else")
    record = AuditLog(tmp_path / "audit.jsonl").append("staging", "backup", {}, "succeeded", "hotfix window")
    assert record["who"] == {"user": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(),
                             "host": socket.gethostname(), "ssh_client": "203.0.113.9 51234 22"}
    assert record["override_reason"] == "hotfix window"
    assert record["env"] == "staging" and record["action"] == "backup" and record["outcome"] == "succeeded"
    assert record["when"].endswith("Z")
