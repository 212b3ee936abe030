"""The audit log: one chained JSON line per action, so editing or removing one shows.

Each record carries the hash of the one before it and its own hash: HMAC-SHA256 with the
`[audit] key` (kept outside the state dir), or plain SHA-256 without one, which `verify` says is
no defence against a rewrite-and-rechain. Each record names its mode, so a key switched on later
seals everything before it. Parameters pass through `mask` first, so no secret is ever written.

Every record is also appended to the shared trail (a table in the environment's database, see
services.adapters.postgres_audit), so every operator on every bastion sees it. A record the shared
trail cannot take now is kept in a pending file and sent on the next append or verify.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import time
from collections.abc import Container, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from pydantic import SecretStr

from services.core import identity
from services.core.masking import MASK, mask, mask_text
from services.core.private import private_dir, replace_private, touch_private

__all__ = ["MASK", "AuditLog", "VerifyResult", "mask", "who"]  # mask, MASK: re-exported for older imports

GENESIS = "0" * 64
KEYED, UNKEYED = "hmac-sha256", "sha256"
UNKEYED_NOTE = "unkeyed: a rewrite-and-rechain is not detectable; set [audit] key"
REPAIR_HINT = "run `release-console audit repair`"


def who() -> dict[str, Any]:
    return identity.who()  # the OS's answer, never $USER


class AuditUnavailable(Exception):
    """The trail cannot take a record now (a torn tail): the action must not run unaudited."""


class SharedUnavailable(Exception):
    """The shared trail cannot be reached or read; the message names where, never a password."""


class SharedTrail(Protocol):
    """Where each environment's records are shared (services.adapters.postgres_audit)."""

    def where(self, env: str) -> str | None:
        """A printable name of env's shared trail ("host/dbname"), None when it has none."""
        ...

    def append(self, env: str, body: dict[str, Any], seal: Seal) -> dict[str, Any]: ...
    def tail(self, env: str, limit: int) -> list[dict[str, Any]]: ...
    def rows(self, env: str) -> Iterable[tuple[int, dict[str, Any]]]:
        """Every record of the table env's records go to, oldest first, with its row id."""
        ...


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    problem: str = ""
    line: int | None = None
    keyed: bool = False
    note: str = ""  # what an OK does not cover: an unkeyed chain, or keyed from some record on
    trail: str = ""  # the file, or "shared trail for ENV (host/db)"
    pending: int = 0  # records kept locally that the shared trail has not taken yet


@dataclass(frozen=True)
class AuditView:
    trail: str  # "shared ENV" (every bastion's records) or "local" (this bastion's log)
    records: list[dict[str, Any]]
    verified: VerifyResult


@dataclass(frozen=True)
class Repair:
    line: int
    size: int
    evidence: Path


class Seal:
    """Chains a record onto `prev` and seals it: HMAC-SHA256 with the key, else plain SHA-256."""

    def __init__(self, key: SecretStr | None) -> None:
        self._key = key.get_secret_value().encode() if key else None

    @property
    def keyed(self) -> bool:
        return self._key is not None

    def __call__(self, body: Mapping[str, Any], prev: str) -> dict[str, Any]:
        record = {**body, "mode": KEYED if self._key else UNKEYED, "prev": prev}
        record["hash"] = self.digest(record, str(record["mode"]))
        return record

    def digest(self, record: Mapping[str, Any], mode: str) -> str:
        data = json.dumps({k: v for k, v in record.items() if k != "hash"}, sort_keys=True).encode()
        if mode == KEYED and self._key is not None:
            return hmac.new(self._key, data, hashlib.sha256).hexdigest()
        return hashlib.sha256(data).hexdigest()


class Chain:
    """Checks records in order: links, seals, and that no unkeyed record follows a keyed one."""

    def __init__(self, seal: Seal) -> None:
        self.seal = seal
        self.prev = GENESIS
        self.before = GENESIS  # the hash before `prev`: a head one record behind is a crash, not a cut
        self.count = 0
        self.first_keyed: int | None = None

    def check(self, record: Mapping[str, Any], where: int) -> str | None:
        mode = record.get("mode", UNKEYED)  # records before modes were recorded were plain SHA-256
        if record.get("prev") != self.prev:
            return "chain broken: a record before it was removed or edited"
        if mode == KEYED:
            if not self.seal.keyed:
                return "a keyed record, but no [audit] key is set: cannot check it; set [audit] key"
            if not hmac.compare_digest(self.seal.digest(record, KEYED), str(record.get("hash"))):
                return "record was edited: its HMAC does not match (or another key sealed it)"
            if self.first_keyed is None:
                self.first_keyed = where
        elif mode == UNKEYED:
            if self.first_keyed is not None:
                return "an unkeyed record after keyed ones: rewritten by someone without the key"
            if self.seal.digest(record, UNKEYED) != record.get("hash"):
                return "record was edited: its hash does not match"
        else:
            return f"unknown chain mode {mode!r}"
        self.before, self.prev = self.prev, str(record["hash"])
        self.count += 1
        return None

    def note(self, unit: str) -> str:
        if not self.seal.keyed:
            return UNKEYED_NOTE
        if self.first_keyed is None:
            return "keyed, but no record is sealed with the key yet: the chain so far is unkeyed" if self.count else ""
        if self.first_keyed > 1:
            return (f"keyed from {unit} {self.first_keyed} on; the records before it were written without a key"
                    " and are sealed by that first keyed record")
        return ""

    def result(self, problem: str | None, where: int | None, trail: str, unit: str) -> VerifyResult:
        keyed = self.first_keyed is not None
        if problem:
            return VerifyResult(False, self.count, problem, where, keyed, "", trail)
        return VerifyResult(True, self.count, "", None, keyed, self.note(unit), trail)


class AuditLog:
    def __init__(self, path: Path, key: SecretStr | None = None, shared: SharedTrail | None = None) -> None:
        self.path = path
        self.seal = Seal(key)
        self.shared = shared
        self.shared_problem: str | None = None  # set by the last append when the shared trail missed it
        # Which log wrote a shared record: with it, `verify` sees a local log that was removed whole.
        self.log_id = f"{identity.hostname()}:{path.resolve()}"
        private_dir(path.parent, owned=True)
        touch_private(path)
        self._head = path.with_suffix(path.suffix + ".head")
        self._pending = path.with_suffix(path.suffix + ".pending")

    @contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        with self.path.open("r+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # two consoles on one bastion must not fork the chain
            yield handle

    def _read_head(self) -> tuple[str, int]:
        try:
            parts = self._head.read_text(encoding="ascii").split()
        except FileNotFoundError:
            return "", 0
        return (parts[0], int(parts[1])) if len(parts) > 1 else (parts[0] if parts else "", 0)

    def _torn_message(self, torn: _Torn) -> str:
        return (f"the audit log {self.path} has a torn last line (line {torn.line}, {torn.size} bytes: not a whole"
                f" JSON line, a write cut short, e.g. by a crash); nothing more can be recorded until it is"
                f" repaired: {REPAIR_HINT}")

    def ensure_writable(self) -> None:
        """Raise AuditUnavailable now, before an operation starts, if a record could not be appended."""
        with self.path.open("rb") as handle:
            torn = _scan(handle.read()).torn
        if torn:
            raise AuditUnavailable(self._torn_message(torn))

    def append(
        self,
        env: str,
        action: str,
        params: Mapping[str, Any],
        outcome: str,
        override_reason: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "who": who(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "env": env,
            "action": action,
            "params": mask(dict(params)),
            "outcome": mask_text(outcome),
            "override_reason": mask_text(override_reason) if override_reason else override_reason,
            "log": self.log_id,
        }
        with self._locked() as handle:
            scan = _scan(handle.read())
            if scan.torn:
                raise AuditUnavailable(self._torn_message(scan.torn))
            hashes = [GENESIS, GENESIS] + [str(r.get("hash")) for _, r in scan.records]
            anchored, _ = self._read_head()
            # Chain onto the recorded head, not the file's last line, when they disagree: otherwise
            # removing the tail and then appending would relink the chain and hide the removal.
            # A head one record behind is a crash between the two writes: the file is right.
            prev = hashes[-1] if anchored in ("", hashes[-1], hashes[-2]) else anchored
            record = self.seal(body, prev)
            handle.seek(0, os.SEEK_END)
            handle.write((json.dumps(record, sort_keys=True) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())
            # The head anchor catches a truncated tail, which the chain alone cannot.
            replace_private(self._head, f"{record['hash']} {len(scan.records) + 1}\n")
            self._share([{"env": env, "body": {**body, "local_hash": record["hash"]}}])
        return record

    def _share(self, new: list[dict[str, Any]]) -> None:
        """Send pending records, then `new`, to the shared trail; keep what it cannot take. Under the flock."""
        self.shared_problem = None
        if self.shared is None:
            return
        shared = self.shared
        # An environment with no shared trail (none configured for it any more) keeps its records locally only.
        queue = [item for item in self._read_pending() + new if shared.where(item["env"])]
        sent = 0
        for item in queue:
            try:
                shared.append(item["env"], item["body"], self.seal)
            except SharedUnavailable as err:
                self.shared_problem = (f"the shared audit trail did not take the record ({err}); kept locally"
                                       f" with {len(queue) - sent - 1} other(s) pending in {self._pending},"
                                       " sent on the next append or verify")
                break
            sent += 1
        if queue[sent:] or self._pending.exists():
            replace_private(self._pending, "".join(json.dumps(item, sort_keys=True) + "\n" for item in queue[sent:]))

    def _read_pending(self) -> list[dict[str, Any]]:
        try:
            text = self._pending.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def flush(self) -> int:
        """Send pending records to the shared trail; how many are still pending."""
        with self._locked():
            self._share([])
            return len(self._read_pending())

    def resend(self, env: str) -> int:
        """Send env's shared trail again what this log sent it that it no longer holds, oldest first: a
        point-in-time restore rolls the trail back with the rest of the database. The resend is itself
        audited. How many were sent; SharedUnavailable when the trail does not answer."""
        shared = self.shared
        if shared is None or shared.where(env) is None:
            raise SharedUnavailable(f"{env} has no shared audit trail (the sandbox has none)")
        with self._locked():
            self._share([])
            mine = [r for _, r in shared.rows(env) if r.get("log") == self.log_id]
            missing = self._lacking(self._written_here(), mine, {env})
            self._share([{"env": env, "body": {**_body(r), "local_hash": r["hash"]}} for r in missing])
            if self.shared_problem:
                raise SharedUnavailable(self.shared_problem)
        if missing:
            self.append(env, "audit-resend", {"records": len(missing)},
                        f"re-sent {len(missing)} record(s) the shared trail no longer held (the oldest:"
                        f" {missing[0].get('when')} {missing[0].get('action')})")
        return len(missing)

    def _written_here(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("log") == self.log_id]

    def _lacking(self, local: list[dict[str, Any]], mine: list[dict[str, Any]],
                 envs: Container[str]) -> list[dict[str, Any]]:
        """This log's records for `envs` that a shared trail (`mine`: its rows this log wrote) does not
        hold, those still pending aside."""
        copied = {r.get("local_hash") for r in mine}
        pending = {item["body"].get("local_hash") for item in self._read_pending()}
        return [r for r in local if r.get("env") in envs and r["hash"] not in copied | pending]

    def records(self) -> Iterator[dict[str, Any]]:
        with self.path.open("rb") as handle:
            yield from (record for _, record in _scan(handle.read()).records)

    def tail(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.records())[-limit:]

    def verify(self, envs: Iterable[str] = ()) -> VerifyResult:
        """Check this log's chain and head; with `envs`, also that every record this log sent to their
        shared trails is still here (deleting the log and its head together leaves no other trace)."""
        result = self._verify_local()
        if not result.ok or self.shared is None:
            return result
        return self._cross_check(result, envs)

    def _cross_check(self, result: VerifyResult, envs: Iterable[str]) -> VerifyResult:
        """Each side holds the other's evidence: a shared record names the local record it copies
        (`local_hash`), and a local record names the log that wrote it. Records still pending are
        local only; records written before records named their log are not compared."""
        shared = self.shared
        assert shared is not None
        local = self._written_here()
        here = {str(record.get("hash")) for record in self.records()}
        trails: dict[str, list[str]] = {}
        for env in envs:
            if where := shared.where(env):
                trails.setdefault(where, []).append(env)
        for where, names in trails.items():
            try:
                mine = [r for _, r in shared.rows(names[0]) if r.get("log") == self.log_id]
            except SharedUnavailable as err:
                note = f"not cross-checked with the shared trail {where}: {err}"
                return VerifyResult(**{**result.__dict__, "note": "; ".join(filter(None, (result.note, note)))})
            problem = ""
            if gone := [r for r in mine if r.get("local_hash") not in here]:
                problem = (f"the shared trail {where} holds {len(gone)} record(s) this log wrote that are not in it"
                           f" (the newest: {gone[-1].get('when')} {gone[-1].get('action')}): the log, or records"
                           " of it, were removed")
            if lost := self._lacking(local, mine, names):
                problem = (f"the shared trail {where} lacks {len(lost)} record(s) this log sent it (the newest:"
                           f" {lost[-1].get('when')} {lost[-1].get('action')}): rows were removed from the shared"
                           " trail")
            if problem:
                return VerifyResult(**{**result.__dict__, "ok": False, "problem": problem})
        return result

    def _verify_local(self) -> VerifyResult:
        pending = self.flush() if self.shared else 0
        trail = str(self.path)
        with self.path.open("rb") as handle:
            scan = _scan(handle.read())
        chain = Chain(self.seal)
        for number, record in scan.records:
            if scan.bad and number > scan.bad[0]:
                break
            if problem := chain.check(record, number):
                return _with(chain.result(problem, number, trail, "line"), pending)
        if scan.bad:
            return _with(chain.result(scan.bad[1], scan.bad[0], trail, "line"), pending)
        if scan.torn:
            return _with(chain.result(self._torn_message(scan.torn), scan.torn.line, trail, "line"), pending)
        anchored, count = self._read_head()
        if anchored and anchored != GENESIS and not scan.records:
            said = f"{count} records" if count else "records"
            return _with(chain.result(f"the log was removed or emptied: its head says {said}, ending {anchored[:12]}…",
                                      None, trail, "line"), pending)
        if anchored and anchored not in (chain.prev, chain.before):
            return _with(chain.result("the last records were removed: the chain ends before its recorded head",
                                      None, trail, "line"), pending)
        return _with(chain.result(None, None, trail, "line"), pending)

    def verify_shared(self, env: str) -> VerifyResult:
        """Check the shared trail env's records go to (all its environments: one chain per table)."""
        where = self.shared.where(env) if self.shared else None
        if self.shared is None or where is None:
            raise SharedUnavailable(f"{env} has no shared audit trail (the sandbox has none)")
        pending = self.flush()
        trail = f"shared trail for {env} ({where})"
        chain = Chain(self.seal)
        for row_id, record in self.shared.rows(env):
            if problem := chain.check(record, row_id):
                return _with(chain.result(problem, row_id, trail, "row"), pending)
        return _with(chain.result(None, None, trail, "row"), pending)

    def tail_shared(self, env: str, limit: int = 50) -> list[dict[str, Any]]:
        if self.shared is None or self.shared.where(env) is None:
            raise SharedUnavailable(f"{env} has no shared audit trail (the sandbox has none)")
        self.flush()
        return self.shared.tail(env, limit)

    def view(self, env: str, limit: int = 100) -> AuditView:
        """What the audit pane shows: env's shared trail when it has one and it answers, else this log."""
        if self.shared is not None and (where := self.shared.where(env)):
            try:
                return AuditView(f"shared {env}", self.tail_shared(env, limit), self.verify_shared(env))
            except SharedUnavailable as err:
                local = self.verify()
                problem = local.problem or f"shared trail of {env} ({where}) unreachable: {err}"
                return AuditView("local", self.tail(limit), VerifyResult(**{**local.__dict__, "ok": False,
                                                                                     "problem": problem}))
        return AuditView("local", self.tail(limit), self.verify())

    def repair(self) -> Repair | None:
        """Cut a torn tail, keeping its bytes as evidence (0600), then record the repair. None: nothing torn."""
        with self._locked() as handle:
            scan = _scan(handle.read())
            if scan.torn is None:
                return None
            torn = scan.torn
            evidence = self.path.with_name(f"{self.path.name}.torn-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
            handle.seek(torn.offset)
            replace_private(evidence, handle.read().decode("utf-8", errors="replace"))
            handle.truncate(torn.offset)
            handle.flush()
            os.fsync(handle.fileno())
        repair = Repair(torn.line, torn.size, evidence)
        self.append("-", "audit-repair", {"line": torn.line, "bytes": torn.size, "evidence": str(evidence)},
                    f"repaired: the torn line {torn.line} ({torn.size} bytes) was cut and kept in {evidence}")
        return repair


def _body(record: Mapping[str, Any]) -> dict[str, Any]:
    """A sealed record without its seal: what was sealed, to be chained again elsewhere."""
    return {k: v for k, v in record.items() if k not in ("mode", "prev", "hash")}


def _with(result: VerifyResult, pending: int) -> VerifyResult:
    return VerifyResult(**{**result.__dict__, "pending": pending})


@dataclass(frozen=True)
class _Torn:
    line: int
    offset: int
    size: int


@dataclass
class _Scan:
    records: list[tuple[int, dict[str, Any]]]
    torn: _Torn | None = None
    bad: tuple[int, str] | None = None  # the first invalid line that is not the tail


def _scan(data: bytes) -> _Scan:
    """Records by line number; the tail is torn when it has no newline or is not JSON."""
    scan = _Scan([])
    offset = 0
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines) or (number == len(lines) - 1 and lines[-1] == b"")
        start, offset = offset, offset + len(raw) + 1
        if number == len(lines):  # the bytes after the final newline: empty unless cut short
            if raw.strip():
                scan.torn = _Torn(number, start, len(raw))
            break
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            if last:
                scan.torn = _Torn(number, start, len(raw) + 1)
                break
            scan.bad = scan.bad or (number, "not valid JSON")
            continue
        scan.records.append((number, record))
    return scan


