"""Sandbox adapters: the ports implemented over the in-process World."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any, BinaryIO

from services.core.operations import Cancelled, StepFailed, pause
from services.core.ports import (
    Abort,
    BuildRequest,
    BuiltImage,
    Change,
    Deploy,
    DumpTool,
    HealthResult,
    MetricSnapshot,
    MigrationRecord,
    Notification,
    OnLine,
    OnProgress,
    Plan,
    PlannedChange,
    Promote,
    Readable,
    Revision,
    Running,
    Scale,
    SetWeight,
    StartCanary,
    StoredObject,
    TableSize,
    TargetStatus,
    Writable,
)
from services.core.references import parts_of, version_of
from services.sandbox.world import APPLIED, IMAGE, PENDING, World, _checksum

# What the sandbox's pending migrations say: one risky as Prisma would generate it, so that
# lint has something to flag, and one written the safe way.
SCRIPTS = {
    # Applied: drops a column that 1.3.9 still reads, so rolling back that far warns.
    "20240618160000_recipe_tags": (
        'ALTER TABLE "Recipe" ADD COLUMN "tags" TEXT[];\nALTER TABLE "Recipe" DROP COLUMN "legacyTags";\n'),
    "20240801120000_add_expiry_date": (
        '-- AlterTable\nALTER TABLE "Ingredient" ADD COLUMN "expiresAt" TIMESTAMP(3) NOT NULL;\n'),
    "20240815093000_rename_qty_to_quantity": (
        "SET lock_timeout = '500ms';\n"
        '-- AlterTable\nALTER TABLE "Ingredient" RENAME COLUMN "qty" TO "quantity";\n'),
}
# The canary's error rate grows this much per check, so the 1.5x rule fires around check 6.
CANARY_ERROR_GROWTH = 0.1
BAD_RELEASE = "1.5.0"
# What the sandbox offers for actions' parameters, where a real environment makes you say (the
# TUI's forms and the CLI use it in sandbox mode only, through factory.suggested_params).
SUGGESTED_PARAMS = {"canary": {"version": BAD_RELEASE}}
BASELINE = {"error_rate": 0.008, "p95_ms": 180.0, "cpu_percent": 42.0, "memory_percent": 61.0}


class SandboxCommands:
    def __init__(self, world: World) -> None:
        self.world = world

    def run(self, argv: list[str], on_line: OnLine) -> int:
        name = " ".join(argv)
        for i in range(1, 6):
            time.sleep(self.world.clock.real_seconds(3))
            on_line(f"[{name}] {i * 20}% ok")
        on_line(f"[{name}] passed")
        return 0


class SandboxBuilder:
    def __init__(self, world: World) -> None:
        self.world = world
        # The image's user: "root" makes the policy's non-root check fail (tests, demos).
        self.user = "nextjs"

    def build(self, request: BuildRequest, on_line: OnLine) -> BuiltImage:
        stages = [("deps", 4), ("builder", 6), (request.target, 5)]
        total = sum(n for _, n in stages)
        step = 0
        for stage, count in stages:
            for i in range(count):
                step += 1
                cached = stage == "deps"
                on_line(f"#{step} [{stage} {i + 1}/{count}] {'CACHED' if cached else 'RUN'} step {step}/{total}")
                for j in range(0 if cached else 12):
                    on_line(f"#{step} {0.1 * j:.1f} compiling module {self.world.random.randint(100, 999)}")
                time.sleep(self.world.clock.real_seconds(2))
        image_id = "sha256:" + hashlib.sha256(repr(request.tags).encode()).hexdigest()
        with self.world.lock:
            for tag in request.tags:
                self.world.images.setdefault(tag, "")
        on_line(f"writing image {image_id[:19]} done")
        return BuiltImage(image_id, 148_000_000, 9, request.tags)

    def inspect(self, image_id: str) -> dict[str, Any]:
        """A Next.js standalone image that passes the image policy (but for an init, when required)."""
        history = [
            'CMD ["node" "server.js"]',
            "HEALTHCHECK &{[\"CMD\" \"wget\" \"-q\" \"-O\" \"/dev/null\" \"http://127.0.0.1:3000/api/health\"]}",
            f"USER {self.user}",
            "COPY --chown=nextjs:nodejs /app/.next/static ./.next/static # buildkit",
            "COPY --chown=nextjs:nodejs /app/.next/standalone ./ # buildkit",
            "COPY /app/public ./public # buildkit",
            "RUN /bin/sh -c addgroup --system --gid 1001 nodejs && adduser --system --uid 1001 nextjs # buildkit",
            "ENV NODE_ENV=production NEXT_TELEMETRY_DISABLED=1",
            "WORKDIR /app",
            '/bin/sh -c #(nop)  CMD ["node"]',
            "/bin/sh -c #(nop) ADD file:5b1e63a3cb041177ba2e8d3f3c8b3e1b4f1d5b7a in / ",
        ]
        return {
            "Id": image_id,
            "Config": {
                "User": self.user,
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NODE_ENV=production",
                        "NEXT_TELEMETRY_DISABLED=1", "PORT=3000"],
                "Entrypoint": None,
                "Cmd": ["node", "server.js"],
                "Healthcheck": {"Test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3000/api/health"]},
                "ExposedPorts": {"3000/tcp": {}},
            },
            "Size": 148_000_000,
            "History": [{"CreatedBy": line, "Size": 0} for line in history],
        }


class SandboxRegistry:
    def __init__(self, world: World) -> None:
        self.world = world

    def push(self, image: BuiltImage, on_progress: OnProgress, on_line: OnLine) -> str:
        digest = "sha256:" + hashlib.sha256(image.id.encode()).hexdigest()
        for layer in range(1, image.layers + 1):
            time.sleep(self.world.clock.real_seconds(1.5))
            on_progress(layer, image.layers)
        with self.world.lock:
            for tag in image.tags:
                self.world.images[tag] = digest
                # As a registry keeps a manifest when its tag moves on: a pinned reference still finds it.
                self.world.images[f"{parts_of(tag)[0]}@{digest}"] = digest
                on_line(f"pushed {tag} {digest[:19]}")
        return digest

    def has(self, reference: str) -> bool:
        return self.digest(reference) is not None

    def digest(self, reference: str) -> str | None:
        """A tag's digest; for a reference pinning a digest, that digest while the registry holds it."""
        name, _tag, digest = parts_of(reference)
        with self.world.lock:
            if digest:
                return digest if f"{name}@{digest}" in self.world.images else None
            return self.world.images.get(reference) or None


class SandboxTarget:
    """Nine simulated replicas behind a weighted split; each replica takes a few seconds to roll."""

    def __init__(self, world: World, env: str) -> None:
        self.world = world
        self.state = world.envs[env]

    def describe(self) -> str:
        return f"sandbox {self.state.name} (simulated replicas)"

    def status(self) -> TargetStatus:
        s = self.state
        with self.world.lock:
            image = f"{IMAGE}:{s.version}"
            return TargetStatus(s.version if s.running else f"{s.version} (stopped)", s.ready, s.desired,
                                s.canary_version, s.canary_weight, 0, tuple(s.events[-5:]),
                                image,
                                s.canary_image or (f"{IMAGE}:{s.canary_version}" if s.canary_version else None),
                                1 if s.canary_version else 0, running=(Running(image, self.world.images.get(image)),),
                                applied_replicas=s.desired if s.applied_replicas is None else s.applied_replicas,
                                applied_weight=s.applied_weight)

    def plan(self, change: Change) -> Plan:
        s = self.state
        with self.world.lock:
            current = {"image": f"{IMAGE}:{s.version}", "replicas": s.desired,
                       "canary": s.canary_image or (f"{IMAGE}:{s.canary_version}" if s.canary_version else None),
                       "weight": s.canary_weight}
        wanted = dict(current)
        match change:
            case Deploy(image):
                wanted["image"] = image
            case StartCanary(image, weight):
                wanted["canary"], wanted["weight"] = image, weight
            case SetWeight(weight):
                wanted["weight"] = weight
            case Promote():
                wanted["image"], wanted["canary"], wanted["weight"] = current["canary"], None, 0
            case Abort():
                wanted["canary"], wanted["weight"] = None, 0
            case Scale(replicas):
                wanted["replicas"] = replicas
        return Plan(self.describe(), tuple(
            PlannedChange("replicas", key, "unchanged" if current[key] == wanted[key] else "update",
                          "" if current[key] == wanted[key] else f"-{key}: {current[key]}\n+{key}: {wanted[key]}")
            for key in current))

    def _roll(self, version: str, on_line: OnLine) -> None:
        s = self.state
        try:
            for i in range(s.desired):
                pause(self.world.clock.real_seconds(4))  # ctrl+x wakes it, as the real targets' waits
                on_line(f"replica {i + 1}/{s.desired} running {version}, healthy")
                with self.world.lock:
                    s.ready = i + 1
                    s.events.append(f"pod {s.name}-{i} ready ({version})")
        except Cancelled:  # put back as a real target does: the old version serves on every replica
            with self.world.lock:
                s.ready = s.desired
                s.events.append(f"rollout of {version} cancelled; {s.version} serves")
            on_line(f"rollout of {version} cancelled; put back: {s.version} serves on {s.desired} replica(s)")
            raise

    def deploy(self, image: str, on_line: OnLine) -> None:
        version = version_of(image)
        self._roll(version, on_line)
        with self.world.lock:
            self.state.version = version
            self.state.stable_samples = 0

    def start_canary(self, image: str, weight: int, on_line: OnLine) -> None:
        with self.world.lock:
            self.state.canary_version, self.state.canary_image = version_of(image), image
            self.state.canary_weight = self.state.applied_weight = weight
            self.state.canary_samples = 0
            self.state.events.append(f"canary {self.state.canary_version} at {weight}%")
        on_line(f"canary {image} started with {weight}% of traffic")

    def set_weight(self, weight: int, on_line: OnLine) -> None:
        with self.world.lock:
            self.state.canary_weight = self.state.applied_weight = weight
            self.state.events.append(f"canary weight {weight}%")
        on_line(f"canary weight set to {weight}%")

    def promote(self, on_line: OnLine) -> None:
        version = self.state.canary_version
        if version is None:
            raise StepFailed(f"{self.state.name} has no canary to promote", ("start a canary first",))
        self.deploy(self.state.canary_image or f"{IMAGE}:{version}", on_line)  # the canary's pinned image
        self.abort(on_line)

    def abort(self, on_line: OnLine) -> None:
        with self.world.lock:
            self.state.canary_weight = self.state.applied_weight = 0
            self.state.canary_version = self.state.canary_image = None
            self.state.events.append("canary weight 0, canary scaled to 0")
        on_line("canary weight set to 0 and canary scaled to 0")

    def scale(self, replicas: int, on_line: OnLine) -> None:
        with self.world.lock:
            self.state.desired = self.state.ready = self.state.applied_replicas = replicas
            self.state.events.append(f"scaled to {replicas}")
        on_line(f"stable scaled to {replicas} replicas")

    def stop(self, on_line: OnLine) -> None:
        with self.world.lock:
            self.state.running, self.state.ready = False, 0
        on_line(f"{self.state.name}: services stopped")

    def start(self, on_line: OnLine) -> None:
        with self.world.lock:
            self.state.running, self.state.ready = True, self.state.desired
        on_line(f"{self.state.name}: services started")


class SandboxRevisions:
    def __init__(self, world: World, env: str) -> None:
        self.world = world
        self.state = world.envs[env]

    def list(self) -> list[Revision]:
        with self.world.lock:
            return list(self.state.revisions)

    def record(self, image: str, digest: str, who: str, migration_head: str | None, backup_id: str | None,
               action: str) -> Revision:
        with self.world.lock:
            revision = Revision(len(self.state.revisions) + 1, image, digest, who, self.world.clock.now(),
                                migration_head, backup_id, action)
            self.state.revisions.append(revision)
        return revision


class SandboxMetrics:
    """Stable stays near the baseline. 1.5.0 (the sandbox's bad release) gets worse each sample, as
    the canary or, once deployed, as stable (what the post-deploy monitor sees); any other version
    stays as healthy as the baseline."""

    def __init__(self, world: World, env: str) -> None:
        self.world = world
        self.state = world.envs[env]

    def describe(self) -> str:
        return "sandbox metrics (simulated)"

    def validate(self) -> list[str]:
        return []

    def query_for(self, series: str, metric: str) -> str:
        return f"sandbox {metric}{{track=\"{series}\"}}"

    def sample(self) -> MetricSnapshot:
        with self.world.lock:
            n, m = self.state.canary_samples, self.state.stable_samples
            self.state.canary_samples += 1
            self.state.stable_samples += 1
            stable = {k: v * (1 + self.world.noise(0.05)) for k, v in BASELINE.items()}
            canary = {k: v * (1 + self.world.noise(0.05)) for k, v in BASELINE.items()}
            weight, bad = self.state.canary_weight, self.state.canary_version == BAD_RELEASE
            bad_stable = self.state.version == BAD_RELEASE
        if bad:
            _degrade(canary, n)
        if bad_stable:
            _degrade(stable, m)
        total = 400 * (1 + self.world.noise(0.02))
        canary["requests_per_s"], stable["requests_per_s"] = total * weight / 100, total * (100 - weight) / 100
        return MetricSnapshot(self.world.clock.now(), {"stable": stable, "canary": canary})


def _degrade(values: dict[str, float], n: int) -> None:
    """The bad release at its n-th sample: errors, latency and CPU climbing."""
    values["error_rate"] = BASELINE["error_rate"] * (1 + CANARY_ERROR_GROWTH * n)
    values["p95_ms"] = BASELINE["p95_ms"] * (1 + 0.03 * n)
    values["cpu_percent"] = BASELINE["cpu_percent"] + 2.5 * n


class SandboxMigrations:
    def __init__(self, world: World, env: str) -> None:
        self.world = world
        self.state = world.envs[env]

    def status(self) -> list[MigrationRecord]:
        with self.world.lock:
            pending = [MigrationRecord(n, _checksum(n), "pending") for n in self.state.pending]
            return list(self.state.migrations) + pending

    def scripts(self) -> list[tuple[str, str]]:
        return [(name, SCRIPTS.get(name, f"-- {name}\n")) for name in APPLIED + PENDING]

    def lock(self, on_line: OnLine) -> nullcontext[None]:
        return nullcontext()  # one process owns the sandbox world: no one to wait for

    def resolve(self, name: str, applied: bool) -> str:
        with self.world.lock:
            failed = [m for m in self.state.migrations if m.name == name and m.state == "failed"]
            if not failed:
                raise ValueError(f"{name} is not a failed migration")
            self.state.migrations = [m for m in self.state.migrations if m not in failed]
            if applied:
                now = self.world.clock.now()
                self.state.migrations.append(MigrationRecord(name, _checksum(name), "applied", now, now))
                return f"{name} marked as applied"
            self.state.pending.insert(0, name)
            return f"{name} marked as rolled back; deploy will apply it again"

    def apply(self, name: str, on_line: OnLine) -> MigrationRecord:
        started = self.world.clock.now()
        on_line(f"applying {name}")
        time.sleep(self.world.clock.real_seconds(6))
        with self.world.lock:
            self.state.pending.remove(name)
            record = MigrationRecord(name, _checksum(name), "applied", started, self.world.clock.now())
            self.state.migrations.append(record)
        on_line(f"applied {name} in {record.finished_at - started:.1f}s" if record.finished_at else name)
        return record

    def row_counts(self, tables: Iterable[str]) -> dict[str, int]:
        with self.world.lock:
            return {t: self.state.rows.get(t, 0) for t in tables}

    def table_sizes(self, tables: Iterable[str]) -> dict[str, TableSize]:
        # The simulated tables: about 160 bytes a row with their indexes, 120 without.
        with self.world.lock:
            return {t: TableSize(self.state.rows[t], self.state.rows[t] * 160 + 16384, self.state.rows[t] * 120 + 8192)
                    for t in tables if t in self.state.rows}

    def reindex(self, table: str) -> None:
        time.sleep(self.world.clock.real_seconds(2))

    def dump_tool(self) -> DumpTool:
        return DumpTool("15.18", "pg_dump (PostgreSQL) 15.18", 8 * 4096)

    @contextmanager
    def scratch(self) -> Iterator[SandboxScratch]:
        yield SandboxScratch(self.world, self.state.rows)

    def dump(self, sink: Writable, cancelled: Callable[[], bool] = lambda: False) -> str:
        for _ in range(8):
            sink.write(self.world.random.randbytes(4096))
            time.sleep(self.world.clock.real_seconds(1))
        return "15.18"

    def restore(self, source: Readable, on_line: OnLine, cancelled: Callable[[], bool] = lambda: False) -> None:
        size = len(source.read())
        time.sleep(self.world.clock.real_seconds(10))
        on_line(f"restored {size} bytes into {self.state.name}")

    restore_plain = restore  # the sandbox restores nothing for real: a checked plain dump is read the same


class SandboxScratch:
    """A trial restore's scratch database in the sandbox: restores take time, counts are the env's."""

    name = "rc_trial_sandbox"

    def __init__(self, world: World, rows: Mapping[str, int]) -> None:
        self.world, self.rows = world, dict(rows)

    def restore(self, source: Readable, on_line: OnLine, cancelled: Callable[[], bool] = lambda: False) -> None:
        size = len(source.read())
        time.sleep(self.world.clock.real_seconds(10))
        on_line(f"restored {size} bytes into {self.name}")

    restore_plain = restore

    def row_counts(self, tables: Iterable[str]) -> dict[str, int]:
        return {t: self.rows[t] for t in tables if t in self.rows}

    def sample(self, table: str) -> int:
        return 1 if self.rows.get(table) else 0


class SandboxStore:
    name = "sandbox"

    def __init__(self, world: World) -> None:
        self.world = world

    def list(self, prefix: str = "") -> list[StoredObject]:
        with self.world.lock:
            return [StoredObject(k, len(data), when, self.name, meta)
                    for k, (data, when, meta) in sorted(self.world.objects.items()) if k.startswith(prefix)]

    def put(self, key: str, chunks: Iterable[bytes], metadata: Mapping[str, str] | None = None) -> StoredObject:
        data = b"".join(chunks)
        with self.world.lock:
            self.world.objects[key] = (data, self.world.clock.now(), dict(metadata or {}))
        return StoredObject(key, len(data), self.world.clock.now(), self.name, dict(metadata or {}))

    def get(self, key: str, start: int = 0) -> Iterator[bytes]:
        with self.world.lock:
            try:
                data = self.world.objects[key][0]
            except KeyError:
                raise FileNotFoundError(f"no object {key!r} in the sandbox store") from None
        yield data[start:]

    def delete(self, key: str) -> None:
        with self.world.lock:
            self.world.objects.pop(key, None)

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        buffer = io.BytesIO()
        yield buffer
        self.put(key, [buffer.getvalue()])


class SandboxReceiver:
    """A notification route's end in the sandbox: its world keeps what was sent, one line each."""

    def __init__(self, world: World, name: str) -> None:
        self.world, self.name = world, name

    def send(self, message: Notification) -> None:
        with self.world.lock:
            version = f" {message.version}" if message.version else ""
            self.world.notifications.append(f"[{message.severity}] {message.env}{version}: {message.reason}"
                                            f" [{message.event}]")


class SandboxHealth:
    def __init__(self, world: World, env: str) -> None:
        self.world = world
        self.state = world.envs[env]
        # For tests and demos: what the next answers report in place of the deployed version, one each
        # (an old version: a deploy that has not switched yet, or never does; "": no version at all).
        self.reports: list[str] = []

    def check(self, url: str) -> HealthResult:
        if not self.state.running:
            return HealthResult(False, None, f"{url}: connection refused")
        version = self.reports.pop(0) if self.reports else self.state.version
        body = {"status": "ok", "version": version} if version else {"status": "ok"}
        return HealthResult(True, 200, json.dumps(body, separators=(",", ":")), version or None)


class SandboxAppFiles:
    configured = True

    def __init__(self, world: World) -> None:
        self.world = world

    def archive(self, sink: Writable, excludes: Iterable[str]) -> int:
        with tarfile.open(fileobj=sink, mode="w:gz") as tar:  # type: ignore[call-overload]  # write-only is enough
            for name in ("package.json", "prisma/schema.prisma", "public/logo.svg"):
                data = self.world.random.randbytes(512)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return 3

    def restore(self, source: Readable, on_line: OnLine) -> None:
        time.sleep(self.world.clock.real_seconds(5))
        on_line(f"restored app files ({len(source.read())} bytes)")

    def restored(self) -> bool:
        return True


class SandboxSource:
    """The sandbox reads no repository: its world is tagged by the version it releases."""

    VERSION = BAD_RELEASE  # the release the sandbox's story ships, and its canary catches

    def image_tags(self, image: str) -> list[str] | None:
        return None

    def read(self, name: str) -> str | None:
        return None  # its builds are simulated: no Dockerfile to check

    def default_version(self) -> str:
        return self.VERSION

    def provenance(self) -> tuple[str, str]:
        return "", ""
