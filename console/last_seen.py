"""The environments list as last seen, drawn at start-up while the live poll runs, marked stale.

Start-up's cost is pydantic, the services and the first poll (about 0.3 s on this machine kind);
the operator who opens the console at 3 a.m. wants the versions at once. The main screen keeps
its latest list in a private file, one per config (the sandbox's seed, or the config file's path),
and the loading screen draws it before anything else loads. It is read as data, never trusted:
each field must be short, printable text, or the file is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from services.core.ages import short_age
from services.core.paths import state_home

MAX_ROWS = 32
MAX_FIELD = 64
FIELDS = ("env", "version", "ready")


@dataclass(frozen=True)
class SeenRow:
    env: str
    version: str
    ready: str
    production: bool


@dataclass(frozen=True)
class LastSeen:
    at: float  # when the live poll answered with these rows
    rows: tuple[SeenRow, ...]

    def age(self, now: float | None = None) -> str:
        seconds = max(0, int((time.time() if now is None else now) - self.at))
        return short_age(seconds) or f"{seconds}s"


class ShownRow(Protocol):  # services.environments.overview.EnvironmentRow, without importing it
    @property
    def env(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def ready(self) -> str: ...
    @property
    def production(self) -> bool: ...


def seen_rows(rows: Iterable[ShownRow]) -> list[SeenRow]:
    return [SeenRow(r.env, r.version, r.ready, r.production) for r in rows]


def last_seen_path(config: str | None, sandbox: bool, seed: int,
                   env: Mapping[str, str] | None = None, cwd: str | None = None) -> Path:
    """One file per config the console was opened with, as the command line named it."""
    if sandbox:
        which = f"sandbox seed {seed}"
    else:
        which = os.path.abspath(config) if config else f"default config from {cwd or os.getcwd()}"
    return state_home(env) / "last-seen" / f"{hashlib.sha256(which.encode()).hexdigest()[:16]}.json"


def read_last_seen(path: Path) -> LastSeen | None:
    """The kept list, or None when there is none or it is not what this module writes."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = tuple(_row(item) for item in data["rows"][:MAX_ROWS])
        at = float(data["at"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return LastSeen(at, rows) if rows and at > 0 else None


def _row(item: Any) -> SeenRow:
    fields = [item[name] for name in FIELDS]
    if not all(isinstance(f, str) and len(f) <= MAX_FIELD and f.isprintable() for f in fields) or not fields[0]:
        raise ValueError("not a kept row")
    env, version, ready = fields
    return SeenRow(env, version, ready, production=item["production"] is True)


def keep_last_seen(path: Path, rows: Iterable[SeenRow], at: float | None = None) -> None:
    """Write the list atomically (0600 in a 0700 dir), masked: it outlives the session."""
    from services.core.masking import mask_text
    from services.core.private import private_dir, replace_private

    kept = [{name: mask_text(value)[:MAX_FIELD] if isinstance(value, str) else value
             for name, value in asdict(row).items()} for row in rows]
    private_dir(path.parent, owned=True)
    replace_private(path, json.dumps({"at": time.time() if at is None else at, "rows": kept[:MAX_ROWS]}))


class SeenKeeper:
    """Keeps each new list for the next start-up: written when it changed, else once a minute (its
    age, shown then, is right to the minute). A failure is said once; the console goes on without."""

    REFRESH_S = 60.0

    def __init__(self, path: Path) -> None:
        self.path: Path | None = path
        self.rows: tuple[SeenRow, ...] = ()
        self.at = 0.0

    def keep(self, rows: Iterable[SeenRow]) -> str | None:
        """None, or what went wrong (the first time only)."""
        seen = tuple(rows)
        if self.path is None or (seen == self.rows and time.time() - self.at < self.REFRESH_S):
            return None
        try:
            keep_last_seen(self.path, seen)
        except OSError as err:
            self.path = None
            return f"last-seen list not kept: {err.strerror or err}"
        self.rows, self.at = seen, time.time()
        return None
