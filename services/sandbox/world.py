"""The sandbox world's state: the food-management app, three environments, migrations,
backups, and a canary whose error rate climbs until the rollback rule fires.

Everything random comes from one seeded generator, and metric values are a function of
the sample number, so a run with the same seed shows the same story.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
import threading
import time
from dataclasses import dataclass, field

from services.core.ports import MigrationRecord, Revision

DAY = 86_400.0


@dataclass
class SandboxClock:
    """Simulated time running `scale` times faster than the wall clock."""

    scale: float = 30.0
    origin: float = field(default_factory=time.time)
    _started: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return self.origin + (time.monotonic() - self._started) * self.scale

    def real_seconds(self, simulated: float) -> float:
        return simulated / self.scale

    def go_on_from(self, simulated: float, always: bool) -> None:
        """Go on from a saved world's time: always at a start; later, only forwards."""
        if always or simulated > self.now():
            self.origin, self._started = simulated, time.monotonic()


@dataclass
class EnvState:
    name: str
    version: str
    desired: int
    ready: int
    revisions: list[Revision]
    migrations: list[MigrationRecord]
    pending: list[str]
    rows: dict[str, int]
    running: bool = True
    canary_version: str | None = None
    canary_image: str | None = None  # the reference it runs, pinned to a digest: what a promote deploys
    canary_weight: int = 0
    canary_samples: int = 0
    stable_samples: int = 0  # samples since the last deploy: a stable 1.5.0 degrades as its canary does
    events: list[str] = field(default_factory=list)
    # What its console last set (drift); changed only by the console. None: a world saved before it was kept.
    applied_replicas: int | None = None
    applied_weight: int = 0


def _checksum(name: str) -> str:
    return hashlib.sha256(f"-- {name}\n".encode()).hexdigest()


IMAGE = "ghcr.io/example/food-management"  # the example config's app image
APPLIED = [
    "20240105093000_init",
    "20240212141500_add_categories",
    "20240320110000_ingredient_units",
    "20240502081500_user_roles",
    "20240618160000_recipe_tags",
]
PENDING = ["20240801120000_add_expiry_date", "20240815093000_rename_qty_to_quantity"]
# Rows the app gains a day: what a seeded backup held, against the rows of today.
GROWTH_PER_DAY = {"Ingredient": 6.0, "Category": 0.1, "User": 1.5}


class World:
    def __init__(self, seed: int = 7, time_scale: float = 30.0, origin: float | None = None) -> None:
        """`origin` pins the simulated clock's start (default: now), for reproducible screens."""
        self.seed = seed
        self.random = random.Random(seed)
        self.clock = SandboxClock(time_scale) if origin is None else SandboxClock(time_scale, origin)
        self.lock = threading.RLock()  # adapters are called from worker threads
        # reference -> digest: what the registry holds, by tag and by digest (repo@sha256:..., the
        # manifests, which stay when a tag moves on)
        digests = {v: "sha256:" + hashlib.sha256(v.encode()).hexdigest()
                   for v in ("1.3.9", "1.4.0", "1.4.1", "1.4.2", "1.5.0-rc.1", "1.5.0")}
        self.images: dict[str, str] = {f"{IMAGE}:{v}": d for v, d in digests.items()}
        self.images.update({f"{IMAGE}@{d}": d for d in digests.values()})
        self.objects: dict[str, tuple[bytes, float, dict[str, str]]] = {}
        self.notifications: list[str] = []
        now = self.clock.origin
        self.envs = {
            "development": self._env("development", "1.5.0-rc.1", 1, now, pending=[]),
            "staging": self._env("staging", "1.4.2", 2, now, pending=PENDING[:1]),
            "production": self._env("production", "1.4.1", 9, now, pending=PENDING),
        }
        for age_days in (41, 22, 9, 3, 1):
            self._seed_backup("production", now - age_days * DAY)
        self._seed_backup("staging", now - 2 * DAY)

    def _env(self, name: str, version: str, replicas: int, now: float, pending: list[str]) -> EnvState:
        applied = [n for n in APPLIED + PENDING if n not in pending]
        migrations = [
            MigrationRecord(n, _checksum(n), "applied", now - (len(applied) - i) * 20 * DAY, None)
            for i, n in enumerate(applied)
        ]
        migrations = [
            MigrationRecord(m.name, m.checksum, m.state, m.started_at, (m.started_at or 0) + 1.2 + i * 0.3)
            for i, m in enumerate(migrations)
        ]
        heads = [migrations[-2].name, migrations[-1].name, migrations[-1].name]  # 1.3.9 predates the newest
        revisions = [
            Revision(i + 1, f"{IMAGE}:{v}", self.images[f"{IMAGE}:{v}"], "deploy-bot",
                     now - (3 - i) * 7 * DAY, heads[i], None, "deploy")
            for i, v in enumerate(["1.3.9", "1.4.0", version])
        ]
        rows = {"Ingredient": 1200 + self.random.randint(0, 400), "Category": 40,
                "User": 310 + self.random.randint(0, 90)}
        return EnvState(name, version, replicas, replicas, revisions, migrations, list(pending), rows,
                        applied_replicas=replicas)

    def _seed_backup(self, env: str, when: float) -> None:
        backup_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
        # Real gzip, so a restore or a verification reads them back as a real backup. The same draws
        # from the seeded generator as ever (the rest of the world stays as it was), and the same sizes.
        db = _sql_gz(self.random.randbytes(2048), size=2048)
        files = _tar_gz({"package.json": b'{"name": "food-management"}\n',
                         "public/logo.svg": self.random.randbytes(1024)})
        prefix = f"{env}/{backup_id}/"
        self.objects[prefix + "db.sql.gz"] = (db, when, {})
        self.objects[prefix + "app.tar.gz"] = (files, when, {})
        artifacts = {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                     for name, data in (("db.sql.gz", db), ("app.tar.gz", files))}
        # The integrity tables' rows when it was taken: today's less what the app gained since (no draw).
        age_days = (self.clock.origin - when) / DAY
        counts = {table: max(0, rows - round(GROWTH_PER_DAY.get(table, 0.0) * age_days))
                  for table, rows in self.envs[env].rows.items()}
        manifest = {"id": backup_id, "env": env, "artifacts": artifacts, "server_version": "15.18",
                    "version": self.envs[env].version, "migration_head": self.envs[env].migrations[-1].name,
                    "row_counts": counts}
        self.objects[prefix + "manifest.json"] = (json.dumps(manifest).encode(), when, {})

    def noise(self, spread: float) -> float:
        return self.random.uniform(-spread, spread)


def _sql_gz(noise: bytes, size: int) -> bytes:
    """A plain SQL dump, gzip-stored (not compressed) to exactly `size` bytes."""
    rows = [f"INSERT INTO \"Ingredient\" VALUES ({i}, '{noise[i:i + 16].hex()}');\n"
            for i in range(0, len(noise), 16)]
    text, room = "", size - 23  # gzip header and trailer, and one stored deflate block
    for row in rows:
        if len(text) + len(row) > room - 4:
            break
        text += row
    text += "--" + "-" * (room - len(text) - 3) + "\n"
    return gzip.compress(text.encode(), compresslevel=0, mtime=0)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed, tarfile.open(fileobj=packed, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
