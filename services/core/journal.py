"""Every step's state, written as it changes, so an interrupted operation can resume.

Everything written passes `services.masking` first: no secret is stored here.

SQLite in the XDG state dir. An operation left `running` by a process that is gone
(an SSH drop, a crash, Ctrl-C) is offered for resume or abandon on the next start.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.core.events import StepStatus
from services.core.masking import mask, mask_text
from services.core.paths import state_home
from services.core.private import private_dir, touch_private

_SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, env TEXT NOT NULL, title TEXT NOT NULL,
    params TEXT NOT NULL, state TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '', host TEXT NOT NULL, pid INTEGER NOT NULL,
    started REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    op_id TEXT NOT NULL REFERENCES operations(id), idx INTEGER NOT NULL, step_id TEXT NOT NULL,
    title TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '', updated REAL NOT NULL,
    PRIMARY KEY (op_id, idx)
);
CREATE TABLE IF NOT EXISTS entries (
    op_id TEXT NOT NULL REFERENCES operations(id), seq INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (op_id, seq)
);
"""

ACTIVE = "running"


@dataclass(frozen=True)
class StepRecord:
    index: int
    step_id: str
    title: str
    status: StepStatus
    detail: str


@dataclass(frozen=True)
class OperationRecord:
    id: str
    kind: str
    env: str
    title: str
    params: dict[str, Any]
    state: dict[str, Any]
    status: str
    detail: str
    host: str
    pid: int
    started: float
    updated: float
    steps: tuple[StepRecord, ...]
    entries: tuple[dict[str, Any], ...] = ()  # append-only, in order (a canary's decision trace)

    @property
    def resume_index(self) -> int:
        """The first step that did not finish; resume starts there."""
        for step in self.steps:
            if step.status not in (StepStatus.DONE, StepStatus.SKIPPED):
                return step.index
        return len(self.steps)


def state_dir(env: dict[str, str] | None = None) -> Path:
    return private_dir(state_home(env), owned=True)


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        private_dir(path.parent, owned=True)
        touch_private(path)  # sqlite gives its -journal/-wal files the database file's mode
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()

    def begin(
        self, op_id: str, kind: str, env: str, title: str, params: dict[str, Any], steps: list[tuple[str, str]]
    ) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO operations (id, kind, env, title, params, status, host, pid, started, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET status=excluded.status, host=excluded.host,"
                " pid=excluded.pid, updated=excluded.updated",
                (op_id, kind, env, mask_text(title), json.dumps(mask(params)), ACTIVE, socket.gethostname(),
                 os.getpid(), now, now),
            )
            db.executemany(
                "INSERT OR IGNORE INTO steps (op_id, idx, step_id, title, status, updated) VALUES (?, ?, ?, ?, ?, ?)",
                [(op_id, i, sid, mask_text(title), StepStatus.PENDING, now) for i, (sid, title) in enumerate(steps)],
            )

    def step(self, op_id: str, index: int, status: StepStatus, detail: str = "") -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE steps SET status = ?, detail = ?, updated = ? WHERE op_id = ? AND idx = ?",
                (status, mask_text(detail), time.time(), op_id, index),
            )
            db.execute("UPDATE operations SET updated = ? WHERE id = ?", (time.time(), op_id))

    def save_state(self, op_id: str, state: dict[str, Any]) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE operations SET state = ?, updated = ? WHERE id = ?",
                (json.dumps(mask(state)), time.time(), op_id),
            )

    def append(self, op_id: str, items: Sequence[dict[str, Any]]) -> None:
        """Add to the operation's append-only entries (a canary's trace): written once each,
        where the state is rewritten whole at every checkpoint."""
        with self._connect() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM entries WHERE op_id = ?", (op_id,)).fetchone()
            db.executemany("INSERT INTO entries (op_id, seq, data) VALUES (?, ?, ?)",
                           [(op_id, count + i, json.dumps(mask(item))) for i, item in enumerate(items)])

    def finish(self, op_id: str, status: str, detail: str = "") -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE operations SET status = ?, detail = ?, updated = ? WHERE id = ?",
                (status, mask_text(detail), time.time(), op_id),
            )

    def get(self, op_id: str) -> OperationRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM operations WHERE id = ?", (op_id,)).fetchone()
            if row is None:
                raise KeyError(f"no operation {op_id!r} in the journal at {self.path}")
            steps = db.execute(
                "SELECT idx, step_id, title, status, detail FROM steps WHERE op_id = ? ORDER BY idx", (op_id,)
            ).fetchall()
            entries = db.execute("SELECT data FROM entries WHERE op_id = ? ORDER BY seq", (op_id,)).fetchall()
        return _record(row, steps, entries)

    def recent(self, limit: int = 20) -> list[OperationRecord]:
        with self._connect() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM operations ORDER BY started DESC LIMIT ?", (limit,))]
        return [self.get(i) for i in ids]

    def interrupted(self) -> list[OperationRecord]:
        """Operations still marked running whose process on this host is gone."""
        with self._connect() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM operations WHERE status = ? ORDER BY started", (ACTIVE,))]
        records = [self.get(i) for i in ids]
        return [r for r in records if not _alive(r.host, r.pid)]

    def abandon(self, op_id: str, reason: str) -> None:
        record = self.get(op_id)
        for step in record.steps:
            if step.status in (StepStatus.RUNNING, StepStatus.WAITING, StepStatus.PENDING):
                self.step(op_id, step.index, StepStatus.SKIPPED, f"abandoned: {reason}")
        self.finish(op_id, "abandoned", reason)


def _record(row: tuple[Any, ...], steps: list[tuple[Any, ...]], entries: list[tuple[str]]) -> OperationRecord:
    op_id, kind, env, title, params, state, status, detail, host, pid, started, updated = row
    return OperationRecord(
        op_id, kind, env, title, json.loads(params), json.loads(state), status, detail, host, pid, started, updated,
        tuple(StepRecord(i, sid, t, StepStatus(s), d) for i, sid, t, s, d in steps),
        tuple(json.loads(data) for (data,) in entries),
    )


def _alive(host: str, pid: int) -> bool:
    if host != socket.gethostname():
        return True  # another bastion's process: we cannot tell, so never steal it
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
