"""Prisma's migrations, read and recorded exactly as Prisma does, with no Node.js.

- The folder: `<dir>/<timestamp>_<name>/migration.sql` plus `migration_lock.toml`.
- The table: `_prisma_migrations`, with the same columns, values and row life cycle as
  prisma-engines' schema engine, so either tool can continue the other's history.
- The lock: Prisma's advisory lock, so the two never apply at the same time.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from services.core.ports import MigrationRecord, MigrationsDirError

ADVISORY_LOCK_ID = 72707369  # prisma-engines' postgres flavour
TABLE_DDL = """CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)"""


@dataclass(frozen=True)
class MigrationFile:
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return checksum(self.sql)


@dataclass(frozen=True)
class MigrationRow:
    """One row of `_prisma_migrations`."""

    id: str
    checksum: str
    finished_at: datetime | None
    migration_name: str
    logs: str | None
    rolled_back_at: datetime | None
    started_at: datetime
    applied_steps_count: int

    @property
    def failed(self) -> bool:
        return self.finished_at is None and self.rolled_back_at is None


def checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


def _checksums(sql: str) -> set[str]:
    # Prisma accepts a file whose line endings changed (a Windows checkout) as unedited.
    unix = sql.replace("\r\n", "\n")
    return {checksum(sql), checksum(unix), checksum(unix.replace("\n", "\r\n"))}


def read_dir(directory: Path) -> list[MigrationFile]:
    """The migrations in order; a wrong provider or a folder without migration.sql is an error."""
    if not directory.is_dir():
        raise MigrationsDirError(f"{directory}: no migrations folder here; set [migrations] dir in release.toml")
    lock = directory / "migration_lock.toml"
    if lock.is_file():
        try:
            provider = tomllib.loads(lock.read_text()).get("provider")
        except tomllib.TOMLDecodeError as err:
            raise MigrationsDirError(f"{lock}: not valid TOML: {err}") from None
        if provider != "postgresql":
            raise MigrationsDirError(
                f"{lock}: provider is {provider!r}, but release-console applies PostgreSQL migrations only")
    files = []
    # os.scandir and open: a deploy reads the folder several times, and pathlib's stat per folder and
    # per file made each read of 168 migrations cost twice as much.
    with os.scandir(directory) as entries:
        names = sorted(entry.name for entry in entries if entry.is_dir())
    for name in names:
        script = directory / name / "migration.sql"
        try:
            with open(script, encoding="utf-8") as text:  # universal newlines, as Path.read_text
                files.append(MigrationFile(name, script, text.read()))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise MigrationsDirError(
                f"{directory / name}: no migration.sql in this migration folder; add it, or remove the folder",
            ) from None
    return files


def merge_status(files: Iterable[MigrationFile], rows: Iterable[MigrationRow]) -> list[MigrationRecord]:
    """Folder and table side by side: applied, pending, failed, rolled back, edited, missing folder.

    Rows are in the order they were started; a migration rolled back and applied again shows
    once, as its latest row.
    """
    by_name = {row.migration_name: row for row in sorted(rows, key=lambda r: r.started_at)}
    records = []
    folder_names = set()
    for file in files:
        folder_names.add(file.name)
        row = by_name.get(file.name)
        if row is None:
            records.append(MigrationRecord(file.name, file.checksum, "pending"))
            continue
        state = _state(row)
        if state == "applied" and row.checksum not in _checksums(file.sql):
            state = "edited"  # Prisma's deploy does not notice this; we refuse to go on past it
        records.append(_record(row, state))
    for name, row in by_name.items():
        if name not in folder_names:
            records.append(_record(row, "missing_folder"))
    return records


def _state(row: MigrationRow) -> str:
    if row.rolled_back_at is not None:
        return "rolled_back"
    if row.finished_at is None:
        return "failed"
    return "applied"


def _record(row: MigrationRow, state: str) -> MigrationRecord:
    return MigrationRecord(
        row.migration_name,
        row.checksum,
        state,
        row.started_at.timestamp(),
        row.finished_at.timestamp() if row.finished_at else None,
        (row.logs or "").strip(),
    )
