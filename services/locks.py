"""One release lock per environment, visible to every operator, naming who holds it and since when.

The real lock is a row in the app database (services.adapters.postgres_locks), so every
bastion sees it. The file lock here is for the sandbox only.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from services.audit import who
from services.private import open_private, private_dir


@dataclass(frozen=True)
class LockInfo:
    env: str
    holder: str  # user@host
    ssh_client: str
    pid: int
    since: float
    reason: str

    def describe(self) -> str:
        age = int(time.time() - self.since)
        return f"{self.holder} (pid {self.pid}) for {age // 60}m{age % 60:02d}s: {self.reason}"


class LockHeld(Exception):
    def __init__(self, info: LockInfo) -> None:
        super().__init__(f"{info.env} is locked by {info.describe()}")
        self.info = info


class ReleaseLocks(Protocol):
    def acquire(self, env: str, reason: str) -> LockInfo: ...
    def release(self, env: str) -> None: ...
    def holder(self, env: str) -> LockInfo | None: ...
    def force_release(self, env: str) -> LockInfo | None: ...


def new_lock(env: str, reason: str) -> LockInfo:
    me = who()
    return LockInfo(env, f"{me['user']}@{socket.gethostname()}", me["ssh_client"], os.getpid(), time.time(), reason)


def is_stale(info: LockInfo) -> bool:
    """Held by a process on this host that is gone (a crash, an SSH drop): safe to take over,
    so that resuming the interrupted operation is not refused by its own dead lock."""
    if info.holder.rpartition("@")[2] != socket.gethostname() or info.pid == os.getpid():
        return False  # another bastion's process, or ours: we cannot tell, so never steal it
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class FileLocks:
    """Sandbox locks: one JSON file per environment, created atomically with O_EXCL."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        private_dir(directory, owned=True)

    def _path(self, env: str) -> Path:
        return self.directory / f"{env}.lock"

    def acquire(self, env: str, reason: str) -> LockInfo:
        info = new_lock(env, reason)
        try:
            fd = os.open(self._path(env), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            held = self.holder(env)
            if held is None:  # released between our open and read: try once more
                return self.acquire(env, reason)
            if is_stale(held):
                with open_private(self.directory / ".takeover") as guard:
                    fcntl.flock(guard, fcntl.LOCK_EX)  # only one taker removes the dead holder's file
                    if self.holder(env) == held:
                        self._path(env).unlink(missing_ok=True)
                return self.acquire(env, reason)
            raise LockHeld(held) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(info), handle)
        return info

    def release(self, env: str) -> None:
        held = self.holder(env)
        if held and held.pid == os.getpid():
            self._path(env).unlink(missing_ok=True)

    def force_release(self, env: str) -> LockInfo | None:
        held = self.holder(env)
        self._path(env).unlink(missing_ok=True)
        return held

    def holder(self, env: str) -> LockInfo | None:
        try:
            return LockInfo(**json.loads(self._path(env).read_text()))
        except FileNotFoundError:
            return None
