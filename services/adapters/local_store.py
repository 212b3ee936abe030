"""Backups in a local directory: the default store. Writes go to a temporary name and are
renamed into place when complete, so a crash never leaves a half file under a real name."""

from __future__ import annotations

import builtins
import fcntl
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, cast

from services.core.ports import StoredObject
from services.core.private import open_private, private_dir

CHUNK = 1 << 16


class LocalStore:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"backup key {key!r} escapes the backup directory {self.root}")
        return path

    def list(self, prefix: str = "") -> list[StoredObject]:
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.endswith(".partial"):
                stat = path.stat()
                found.append(StoredObject(key, stat.st_size, stat.st_mtime, self.name))
        return found

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        private_dir(self.root, owned=True)  # whole database dumps: no one else on the bastion reads them
        private_dir(path.parent)
        partial = path.with_name(path.name + ".partial")
        try:
            with cast(BinaryIO, open_private(partial, "wb")) as handle:
                # Held while writing: clean_partials() can tell a live write from a dead one.
                fcntl.flock(handle, fcntl.LOCK_EX)
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)

    def clean_partials(self) -> builtins.list[str]:  # `list` here is the method above
        """Remove half-written files left by a killed backup; never one a live backup is writing."""
        removed = []
        for path in sorted(self.root.rglob("*.partial")) if self.root.is_dir() else []:
            with path.open("rb") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # another process is still writing it
                path.unlink(missing_ok=True)
                removed.append(path.relative_to(self.root).as_posix())
        return removed

    def put(self, key: str, chunks: Iterable[bytes], metadata: Mapping[str, str] | None = None) -> StoredObject:
        with self.open_write(key) as handle:
            for chunk in chunks:
                handle.write(chunk)
        stat = self._path(key).stat()
        return StoredObject(key, stat.st_size, stat.st_mtime, self.name, dict(metadata or {}))

    def get(self, key: str, start: int = 0) -> Iterator[bytes]:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no backup file {key!r} in {self.root}")
        with path.open("rb") as handle:
            handle.seek(start)
            yield from iter(lambda: handle.read(CHUNK), b"")

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        if path.parent != self.root.resolve():  # a backup's folder goes with its last file (pruned)
            with suppress(OSError):  # not empty yet, or gone already
                path.parent.rmdir()
