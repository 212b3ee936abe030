"""Files the console writes are private: 0700 directories, 0600 files, whatever the umask.

The console keeps production data on a shared bastion (journal, audit trail, logs, traces,
whole database dumps, restore working copies), so nothing it writes may be readable by the
other users there. Every directory and file it creates goes through these functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, owned: bool = False) -> Path:
    """Create path (and missing parents) as 0700. `owned`: the console's own directory (state,
    backups), so an existing one, made by an older version, is tightened to 0700 as well; a
    directory the operator named (an export's destination) is left as it is."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for created in (*missing, path) if owned else missing:  # mkdir's mode is cut by the umask
        os.chmod(created, DIR_MODE)
    return path


def open_private(path: Path, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """open(path, mode) for writing, the file created 0600 (an existing one is made 0600)."""
    flags = os.O_CREAT | os.O_WRONLY | (os.O_APPEND if "a" in mode else 0) | (os.O_TRUNC if "w" in mode else 0)
    if "x" in mode:
        flags |= os.O_EXCL
    if "+" in mode:
        flags = (flags & ~os.O_WRONLY) | os.O_RDWR
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode.replace("x", "w"), **kwargs)
    except BaseException:
        os.close(fd)
        raise


def touch_private(path: Path) -> Path:
    """Create path empty as 0600 if it is missing; make an existing one 0600."""
    open_private(path, "a").close()
    return path


def write_private(path: Path, data: str | bytes) -> Path:
    """Write data to path, a 0600 file."""
    if isinstance(data, bytes):
        with open_private(path, "wb") as handle:
            handle.write(data)
    else:
        with open_private(path, "w", encoding="utf-8") as handle:
            handle.write(data)
    return path


def replace_private(path: Path, text: str) -> Path:
    """Write text to path atomically, a 0600 file: a temp file beside it, fsync, rename, fsync the
    directory. A crash leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open_private(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path
