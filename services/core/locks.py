"""One release lock per environment, visible to every operator, naming who holds it and since when.

The real lock is a row in the app database (services.adapters.postgres_locks), so every
bastion sees it. The file lock here is for the sandbox only.

A holder is a process named by host + boot id + pid + start time. Its lock is taken over only
when that process is provably gone: same host AND same boot, and the pid is gone or now belongs
to a process that started at another time. A machine with our host name but another boot id may
be a clone running elsewhere: never taken over; `lock break` is the way, and it is audited.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from services.core.identity import Process, current_process, os_user
from services.core.private import open_private, private_dir


@dataclass(frozen=True)
class LockInfo:
    env: str
    holder: str  # user@host
    ssh_client: str
    pid: int
    since: float
    reason: str
    host: str = ""  # empty in rows written before the boot id was recorded: never taken over
    boot_id: str = ""
    start_ticks: int = 0

    def describe(self) -> str:
        return f"{self.holder} (pid {self.pid}) for {_age(int(time.time() - self.since))}: {self.reason}"

    @property
    def process(self) -> Process:
        return Process(self.host, self.boot_id, self.pid, self.start_ticks)

    def fields(self) -> dict[str, object]:
        """For the audit record: who held it, down to the process."""
        return asdict(self)


def _age(seconds: int) -> str:
    """2m05s; 3h07m; 12d04h: a stale lock can be days old."""
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


class LockHeld(Exception):
    def __init__(self, info: LockInfo) -> None:
        super().__init__(f"{info.env} is locked by {info.describe()}")
        self.info = info


class LockUnknown(Exception):
    """Where the lock lives cannot be read: the lock is unknown, never free."""


# Called with a dead holder's lock before it is removed, so the takeover is audited first.
OnTakeover = Callable[[LockInfo], None]


class ReleaseLocks(Protocol):
    def acquire(self, env: str, reason: str, on_takeover: OnTakeover | None = None) -> LockInfo: ...
    def release(self, env: str) -> None: ...

    def holder(self, env: str) -> LockInfo | None:
        """The holder, None when free; raises LockUnknown when it cannot tell."""
        ...

    def force_release(self, env: str, held: LockInfo) -> bool:
        """Remove exactly this holder's lock (compare-and-delete); False if it is no longer the holder."""
        ...


def new_lock(env: str, reason: str) -> LockInfo:
    me, ssh = current_process(), os.environ.get("SSH_CLIENT", "")
    return LockInfo(env, f"{os_user()}@{me.host}", ssh, me.pid, time.time(), reason, me.host, me.boot_id,
                    me.start_ticks)


def is_mine(info: LockInfo) -> bool:
    return info.process == current_process()


def is_stale(info: LockInfo) -> bool:
    """Held by a process on this host and this boot that is gone (a crash, an SSH drop): safe to
    take over, so that resuming the interrupted operation is not refused by its own dead lock."""
    process = info.process
    return process.local() and not is_mine(info) and not process.alive()


class FileLocks:
    """Sandbox locks: one JSON file per environment, created atomically with O_EXCL."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        private_dir(directory, owned=True)

    def _path(self, env: str) -> Path:
        return self.directory / f"{env}.lock"

    def acquire(self, env: str, reason: str, on_takeover: OnTakeover | None = None) -> LockInfo:
        info = new_lock(env, reason)
        try:
            fd = os.open(self._path(env), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            held = self.holder(env)
            if held is None:  # released between our open and read: try once more
                return self.acquire(env, reason, on_takeover)
            if is_stale(held):
                with open_private(self.directory / ".takeover") as guard:
                    fcntl.flock(guard, fcntl.LOCK_EX)  # only one taker removes the dead holder's file
                    if self.holder(env) == held:
                        if on_takeover:
                            on_takeover(held)
                        self._path(env).unlink(missing_ok=True)
                return self.acquire(env, reason, on_takeover)
            raise LockHeld(held) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(info), handle)
        return info

    def release(self, env: str) -> None:
        held = self.holder(env)
        if held and held.pid == os.getpid():
            self._path(env).unlink(missing_ok=True)

    def force_release(self, env: str, held: LockInfo) -> bool:
        with (self.directory / ".takeover").open("w") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            if self.holder(env) != held:
                return False
            self._path(env).unlink(missing_ok=True)
            return True

    def holder(self, env: str) -> LockInfo | None:
        try:
            return LockInfo(**json.loads(self._path(env).read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as err:
            raise LockUnknown(f"cannot read {self._path(env)}: {err}") from None
