"""The audit log: one hash-chained JSON line per action, so editing or removing one shows.

Each record carries the hash of the one before it; `verify` recomputes the chain.
Parameters pass through `mask` first, so no secret is ever written.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.masking import MASK, mask, mask_text

__all__ = ["MASK", "AuditLog", "VerifyResult", "mask", "who"]  # mask, MASK: re-exported for older imports

from services.private import private_dir, touch_private, write_private

GENESIS = "0" * 64


def who() -> dict[str, str]:
    return {"user": getpass.getuser(), "ssh_client": os.environ.get("SSH_CLIENT", "")}


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    problem: str = ""
    line: int | None = None


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        private_dir(path.parent, owned=True)
        touch_private(path)
        self._head = path.with_suffix(path.suffix + ".head")

    def append(
        self,
        env: str,
        action: str,
        params: Mapping[str, Any],
        outcome: str,
        override_reason: str | None = None,
    ) -> dict[str, Any]:
        with self.path.open("r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # two consoles on one bastion must not fork the chain
            last = None
            for line in handle:
                if line.strip():
                    last = line
            prev = json.loads(last)["hash"] if last else GENESIS
            # Chain onto the recorded head, not the file's last line: otherwise removing the
            # tail and then appending would relink the chain and hide the removal.
            anchored = self._head.read_text().strip() if self._head.exists() else ""
            prev = anchored or prev
            record: dict[str, Any] = {
                "who": who(),
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "env": env,
                "action": action,
                "params": mask(dict(params)),
                "outcome": mask_text(outcome),
                "override_reason": mask_text(override_reason) if override_reason else override_reason,
                "prev": prev,
            }
            record["hash"] = _digest(record)
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            # The head anchor catches a truncated tail, which the chain alone cannot.
            write_private(self._head, f"{record['hash']}\n")
        return record

    def records(self) -> Iterator[dict[str, Any]]:
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def tail(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.records())[-limit:]

    def verify(self) -> VerifyResult:
        prev = GENESIS
        count = 0
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return VerifyResult(False, count, "not valid JSON", number)
                if record.get("prev") != prev:
                    return VerifyResult(False, count, "chain broken: a record before it was removed or edited", number)
                body = {k: v for k, v in record.items() if k != "hash"}
                if _digest(body) != record.get("hash"):
                    return VerifyResult(False, count, "record was edited: its hash does not match", number)
                prev = record["hash"]
                count += 1
        anchored = self._head.read_text().strip() if self._head.exists() else GENESIS
        if anchored != prev:
            return VerifyResult(False, count, "the last records were removed: the chain ends before its recorded head")
        return VerifyResult(True, count)


def _digest(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
