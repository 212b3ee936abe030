"""Small helpers shared by the rig fixtures and tests."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def unique_name(prefix: str = "rc-test", length: int = 10) -> str:
    """A lowercase DNS-label-style unique name, e.g. for namespaces or databases."""
    return f"{prefix}-{uuid.uuid4().hex[:length]}"


def scratch_databases(server_dsn: str, of: str) -> list[str]:
    """The trial databases left on the server by restores of the database at DSN `of`.

    Only that database's: other tests run trial restores on the same server at the same time.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    source = str(conninfo_to_dict(of)["dbname"]).replace("_", "\\_")
    with psycopg.connect(server_dsn) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"rc\\_trial\\_{source}\\_%",))
        return [r[0] for r in rows]


def unique_bucket_name(prefix: str = "rc-test") -> str:
    """A valid, unique S3 bucket name (3-63 chars of [a-z0-9-], starts/ends alnum)."""
    name = f"{prefix.lower()}-{uuid.uuid4().hex[:16]}"
    if not (3 <= len(name) <= 63) or not name[0].isalnum():
        raise ValueError(f"bad bucket prefix {prefix!r}")
    return name


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    interval: float = 0.25,
    what: str = "condition",
) -> T:
    """Poll `check` until it returns a truthy value (returned) or time runs out.

    Exceptions raised by `check` count as "not yet"; the last one is chained
    to the TimeoutError.
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s") from last_exc
        time.sleep(interval)


def tail(path: Path, lines: int = 30, max_bytes: int = 64 * 1024, width: int = 400) -> str:
    """The last `lines` lines of a text file, each cut to `width` characters."""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        data = f.read()
    return "\n".join(line[:width] for line in data.decode("utf-8", "replace").splitlines()[-lines:])


def write_prom_targets(targets_dir: Path, name: str, targets: list[str], labels: dict[str, str]) -> Path:
    """Atomically write the file_sd file `name`.json; delete it to drop the targets."""
    path = targets_dir / f"{name}.json"
    tmp = targets_dir / f".{name}.json.tmp"
    tmp.write_text(json.dumps([{"targets": targets, "labels": labels}]))
    tmp.rename(path)
    return path


class Background:
    """A loop on a daemon thread for as long as a `with` block lasts: `_run` until `_stop` is set; the
    block's end sets it and waits for the thread up to JOIN_S."""

    JOIN_S = 10.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.JOIN_S)


class Discovery(Background):
    """What docker_sd_configs plus relabelling do in production (docs/operations.md): every running
    container of the Docker host target's `app` becomes a file_sd target in `targets` (one file per
    track, `<app>-<track>.json`), its track read from its name (the role it serves now), with
    `labels` beside `track`. A context manager: polls the Docker engine until it exits."""

    JOIN_S = 5.0

    def __init__(self, docker_client: Any, app: str, targets: Path, labels: dict[str, str] | None = None) -> None:
        super().__init__()
        self.docker, self.app, self.targets, self.labels = docker_client, app, targets, labels or {}

    def _run(self) -> None:
        from services.adapters.docker_fleet import APP, PORT

        while not self._stop.wait(0.2):
            running = self.docker.containers.list(filters={"label": f"{APP}={self.app}", "status": "running"})
            for track in ("stable", "canary"):
                ports = [f"127.0.0.1:{c.labels[PORT]}" for c in running
                         if c.name.endswith(f"-{track}-{c.labels[PORT]}")]
                write_prom_targets(self.targets, f"{self.app}-{track}", ports, {**self.labels, "track": track})

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        for track in ("stable", "canary"):
            (self.targets / f"{self.app}-{track}.json").unlink(missing_ok=True)


@dataclass
class SampleApp:
    """A running sample-app container (see the `run_sample_app` fixture)."""

    container: Any  # docker.models.containers.Container
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        """host:port, as Prometheus targets want it."""
        return f"127.0.0.1:{self.port}"


@dataclass
class KubeAPI:
    """What the `kube_api` fixture yields."""

    host: str
    api_client: Any  # kubernetes.client.ApiClient
    emulator: Any  # rig.kube_emulator.KubeEmulator, or None against a real cluster
    token: str | None = None  # the emulator's bearer token; None against a real cluster (the kubeconfig's)


def write_migration(migrations: Path, name: str, sql: str) -> Path:
    """A Prisma migration folder `name` under `migrations` with its migration.sql (replaced if there)."""
    folder = migrations / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "migration.sql").write_text(sql)
    return folder


def prisma_migrations(app: Path, **migrations: str) -> Path:
    """`app`/prisma/migrations, PostgreSQL's migration_lock.toml in it, and each migration given
    (name=sql, in order); the folder."""
    root = app / "prisma" / "migrations"
    root.mkdir(parents=True)
    (root / "migration_lock.toml").write_text('provider = "postgresql"\n')
    for name, sql in migrations.items():
        write_migration(root, name, sql)
    return root
