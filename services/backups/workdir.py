"""Working directories the console creates, and the only ones it ever deletes.

A restore or drill downloads into a working directory and removes it at the end. The console
writes a marker file into each directory it creates; it deletes a directory only when that
marker is there, so a `work_dir` pointing at something else (a home directory, the app) is
refused before anything is written into it, and never deleted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from services.core.operations import StepFailed
from services.core.private import open_private, private_dir

MARKER = ".release-console-workdir"


def make_work_dir(path: Path) -> Path:
    """Create `path` (0700) with the marker, or reuse it if the console made it (a resumed restore)."""
    if path.is_symlink():
        raise StepFailed(f"work_dir {path} is a symbolic link: the console only uses a directory it created",
                         ("give a work_dir that does not exist yet",))
    if path.exists():
        if not (path / MARKER).is_file():
            raise StepFailed(f"work_dir {path} already exists and was not created by the console: it would be"
                             " deleted at the end, so it is refused; nothing was written to it",
                             ("give a work_dir that does not exist yet", "or leave work_dir out"))
        return path
    private_dir(path)
    with open_private(path / MARKER, "x", encoding="utf-8") as marker:
        marker.write("created by release-console; deleted by it when the restore or drill ends\n")
    return path


def remove_work_dir(path: Path) -> bool:
    """Delete `path` only if the console created it; returns whether it did."""
    if path.is_symlink() or not (path / MARKER).is_file():
        return False
    shutil.rmtree(path)
    return True
