"""Who is acting, and which process on which boot of which host: read from the OS, never from $USER.

A lock holder is named by host + boot id + pid + process start time: a pid alone is reused, and a
host name alone is shared by clones of a machine image.
"""

from __future__ import annotations

import os
import pwd
import socket
from dataclasses import dataclass

BOOT_ID = "/proc/sys/kernel/random/boot_id"


def os_user() -> str:
    """The login name of our uid: anyone can set $USER, nobody but root can change this."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no passwd entry (a container): the number is still the truth
        return f"uid{os.getuid()}"


def hostname() -> str:
    return socket.gethostname()


def boot_id() -> str:
    """This boot's id; empty where the kernel does not tell (then no lock is ever taken over)."""
    try:
        with open(BOOT_ID, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return -1  # there but unreadable: treat as alive, never as gone
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[19])  # field 22 overall; fields[0] here is field 3


@dataclass(frozen=True)
class Process:
    """One process on one boot of one host."""

    host: str
    boot_id: str
    pid: int
    start_ticks: int

    def alive(self) -> bool:
        """Still running, on this host and boot. Only meaningful when `local()`."""
        return process_start(self.pid) in (self.start_ticks, -1)

    def local(self) -> bool:
        """On this machine and this boot: the only case in which we can tell whether it is gone."""
        me = current_process()
        return bool(self.boot_id) and (self.host, self.boot_id) == (me.host, me.boot_id)


def current_process() -> Process:
    pid = os.getpid()
    return Process(hostname(), boot_id(), pid, process_start(pid) or 0)


def who() -> dict[str, str | int]:
    """The audit record's "who": the OS user and uid, the host, and SSH_CLIENT as the shell gave it."""
    return {"user": os_user(), "uid": os.getuid(), "host": hostname(), "ssh_client": os.environ.get("SSH_CLIENT", "")}
