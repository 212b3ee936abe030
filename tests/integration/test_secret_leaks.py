"""The leak test: one distinctive secret planted in every form a secret takes in release.toml, run
through every command as a user runs it (a subprocess of the CLI), with the services up and then
down. Nothing the console writes or prints may hold it: stdout, stderr, the state dir (journal,
audit log and head), build and operation logs, exported traces, the backup stores (local dir and
S3), the shared audit table when there is one, and what the webhook received.

The forms: a database URL with user:password@, a keyword DSN, `?password=`, an empty user, Redis
URLs (`redis://:pw@`, `rediss://`), and `${VAR}` values in plain-string fields (build args, the
target's env, prometheus_url) and in the notify webhook. Commands that fail because a service is
down are fine; each must still exit with a documented code (0-5) and print no traceback.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Nginx
from psycopg import sql
from rig.helpers import docker_staging_toml, free_port

from services.adapters.docker_target import APP

ROOT = Path(__file__).resolve().parents[2]
SECRET = f"S3cr3t-{uuid.uuid4().hex[:12]}"
NEEDLES = {SECRET.encode(), urllib.parse.quote(SECRET, safe="").encode()}
# The environments beside staging, one per form of database URL (all reach the same database).
FORMS = {
    "kwdsn": "host=127.0.0.1 port={port} dbname={db} user={user} password='{pw}' connect_timeout=3",
    "query": "postgresql://{user}@127.0.0.1:{port}/{db}?password={pw}&connect_timeout=3",
    "emptyuser": "postgresql://:{pw}@127.0.0.1:{port}/{db}?user={user}&connect_timeout=3",
}
MIGRATION = 'CREATE TABLE "Leak" ("id" INTEGER PRIMARY KEY, "note" TEXT);\n'


@dataclass
class Hook:
    """A webhook receiver that keeps every body it was sent."""

    port: int
    bodies: list[bytes] = field(default_factory=list)


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    received = Hook(free_port())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            received.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", received.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield received
    server.shutdown()


@dataclass
class Database:
    """A database owned by a role whose password is the secret: the URLs that carry it must work."""

    name: str
    user: str
    port: int

    def url(self, form: str, port: int | None = None) -> str:
        values = {"user": self.user, "pw": SECRET, "port": port or self.port, "db": self.name}
        if form == "url":
            return "postgresql://{user}:{pw}@127.0.0.1:{port}/{db}?connect_timeout=3".format(**values)
        return FORMS[form].format(**values)


@pytest.fixture
def database(pg_dsn: str) -> Iterator[Database]:
    suffix = uuid.uuid4().hex[:10]
    db = Database(f"rc_leak_{suffix}", f"rc_leak_{suffix}", urllib.parse.urlsplit(pg_dsn).port or 5432)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            sql.Identifier(db.user), sql.Literal(SECRET)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db.name), sql.Identifier(db.user)))
    yield db
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name in [r[0] for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{db.name}%",))]:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db.user)))


@dataclass
class Rig:
    root: Path
    config: Path
    env: dict[str, str]
    database: Database
    bucket: str
    s3: Any
    hook: Hook
    ran: list[tuple[str, int]] = field(default_factory=list)  # (command, exit code)
    problems: list[str] = field(default_factory=list)
    output: list[tuple[str, bytes]] = field(default_factory=list)

    def cli(self, *argv: str, timeout: float = 120) -> int:
        """Run the CLI as a user would; keep what it printed, check its exit and its stderr."""
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "console.cli", "--config", str(self.config), *argv],
                              cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False)
        what = " ".join(argv)
        self.ran.append((what, done.returncode))
        print(f"[{self.root.name}] {what} -> exit {done.returncode} ({time.monotonic() - started:.1f}s)")
        self.output += [(f"stdout of `{what}`", done.stdout), (f"stderr of `{what}`", done.stderr)]
        if done.returncode not in range(6):
            self.problems.append(f"`{what}` exited {done.returncode}")
        if b"Traceback (most recent call last)" in done.stderr:
            self.problems.append(f"`{what}` printed a traceback:\n{done.stderr.decode(errors='replace')[-1500:]}")
        return done.returncode

    def cli_all(self, commands: list[tuple[str, ...]]) -> None:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda argv: self.cli(*argv), commands))

    def places(self) -> Iterator[tuple[str, bytes]]:
        """Everything the console wrote or printed, by where it was found."""
        yield from self.output
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and "prisma" not in path.parts and path.name != "release.toml":
                yield str(path.relative_to(self.root)), path.read_bytes()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                yield f"s3://{self.bucket}/{obj['Key']}", self.s3.get_object(
                    Bucket=self.bucket, Key=obj["Key"])["Body"].read()
        for number, body in enumerate(self.hook.bodies):
            yield f"webhook payload {number}", body
        yield "release_console_audit", self.shared_audit()

    def shared_audit(self) -> bytes:
        try:
            with psycopg.connect(self.database.url("url"), connect_timeout=5) as conn:
                if conn.execute("SELECT to_regclass('release_console_audit')").fetchone() == (None,):
                    return b""
                rows = conn.execute("SELECT * FROM release_console_audit").fetchall()
        except psycopg.OperationalError:
            return b""
        return json.dumps(rows, default=str).encode()

    def leaks(self) -> list[str]:
        found = []
        for where, data in self.places():
            for needle in NEEDLES:
                if needle in data:
                    at = data.index(needle)
                    found.append(f"{where}: ...{data[max(0, at - 120):at + 40].decode(errors='replace')}...")
        return found


def release_toml(root: Path, nginx: Nginx, repository: str, db: Database, s3_endpoint: str, bucket: str,
                 docker_url: str, prometheus: str, hook_url: str, db_port: int | None = None
                 ) -> tuple[Path, dict[str, str]]:
    """The config and the environment it resolves against; `db_port` points every database URL there."""
    (root / "prisma" / "migrations" / "20240105093000_leak").mkdir(parents=True)
    (root / "prisma" / "migrations" / "migration_lock.toml").write_text('provider = "postgresql"\n')
    (root / "prisma" / "migrations" / "20240105093000_leak" / "migration.sql").write_text(MIGRATION)
    prom = urllib.parse.urlsplit(prometheus)
    env = {
        "TEST_DB": db.url("url", db_port),
        "LEAK_REDIS": f"redis://:{SECRET}@127.0.0.1:{free_port()}/0",
        "LEAK_BUILD_ARG": f"npm-token-{SECRET}",
        "LEAK_TARGET_ENV": SECRET,
        "LEAK_PROMETHEUS": f"{prom.scheme}://metrics:{SECRET}@{prom.netloc}",
        "LEAK_WEBHOOK": f"{hook_url}/services/T0/B0/{SECRET}",
        "LEAK_S3_SECRET": SECRET,
    }
    low = 21000 + (uuid.uuid4().int % 400) * 20
    text = docker_staging_toml(f"rc-leak-{uuid.uuid4().hex[:8]}", repository, nginx, docker_url, low, f"""
[environments.staging.metrics]
prometheus_url = "${{LEAK_PROMETHEUS}}"

[canary]
check_interval_s = 1
duration_s = 3
ask_timeout_s = 1

[metrics]
min_samples = 3
misses_before_asking = 1
timeout_s = 2

[backup]
local_dir = "backups"
compression = "gzip"

[backup.s3]
bucket = "{bucket}"
endpoint_url = "{s3_endpoint}"
access_key_id = "leak-access"
secret_access_key = "${{LEAK_S3_SECRET}}"

[migrations]
dir = "prisma/migrations"
integrity_tables = []
reindex_tables = []

[notify]
webhook_url = "${{LEAK_WEBHOOK}}"
""")
    text = text.replace('env = { SYNTHETIC_RPS', 'env = { NPM_AUTH = "${LEAK_TARGET_ENV}", SYNTHETIC_RPS')
    text = text.replace('image = "', 'build_args = { NPM_TOKEN = "${LEAK_BUILD_ARG}" }\nimage = "', 1)
    text = text.replace('redis_url = "redis://127.0.0.1:6379/0"', 'redis_url = "${LEAK_REDIS}"')
    for form in FORMS:  # written into the file itself: a SecretStr field, no ${VAR}
        text += f"""
[environments.{form}]
api_url = "{nginx.url}/api"
database_url = "{db.url(form, db_port)}"
redis_url = "rediss://:{SECRET}@127.0.0.1:{free_port()}/0"
"""
    assert text.count("${") == 7 and "build_args" in text and "NPM_AUTH" in text
    path = root / "release.toml"
    path.write_text(text)
    return path, env


SERVICES = ("database", "s3", "docker", "prometheus", "webhook")


@pytest.fixture
def rig(tmp_path: Path, nginx: Nginx, repository: str, database: Database, s3_endpoint: str, s3_client: Any,
        bucket_name: str, prometheus_url: str, hook: Hook, docker_client: Any) -> Iterator[Any]:
    s3_client.create_bucket(Bucket=bucket_name)

    def make(name: str, down: set[str]) -> Rig:
        """A config whose services in `down` point at a port where nothing listens."""
        root = tmp_path / name
        root.mkdir()
        closed = f"127.0.0.1:{free_port()}"

        def where(service: str, up: str, gone: str) -> str:
            return gone if service in down else up

        config, resolved = release_toml(
            root, nginx, repository, database, where("s3", s3_endpoint, f"http://{closed}"), bucket_name,
            where("docker", os.environ["RC_DOCKER_URL"], f"tcp://{closed}"),
            where("prometheus", prometheus_url, f"http://{closed}"),
            where("webhook", f"http://127.0.0.1:{hook.port}", f"http://{closed}"),
            db_port=int(closed.rsplit(":", 1)[1]) if "database" in down else None)
        env = {**os.environ, **resolved, "XDG_STATE_HOME": str(root / "state"), "XDG_CONFIG_HOME": str(root / "xdg"),
               "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
        env.pop("DATABASE_URL", None)
        return Rig(root, config, env, database, bucket_name, s3_client, hook)

    yield make
    for container in docker_client.containers.list(all=True, filters={"label": APP}):
        if container.labels.get(APP, "").startswith("rc-leak-"):
            container.remove(force=True)


STAGING = ("--env", "staging", "--yes")
# Commands that change nothing: run side by side (each is a Python process; the rig is slow enough).
READERS = [("status",), ("--json", "status"), ("config", "check"), ("--json", "config", "check"),
           ("--json", "migrate", "status", "--env", "staging"), ("--json", "backup", "list"),
           ("--json", "journal", "list"), ("audit", "tail"), ("--json", "audit", "tail")]


def every_command(rig: Rig, side_by_side: bool = False) -> None:
    """Each command of the console that can meet a secret, as a user types it; with everything down
    they change nothing, so they may run side by side."""
    writers = [*(("backup", "create", "--env", env, "--yes") for env in FORMS),
               ("deploy", *STAGING, "--version", "1.0.0"), ("migrate", "deploy", *STAGING),
               ("backup", "create", *STAGING), ("drill", *STAGING),
               ("restore", *STAGING, "--walkthrough", "--confirm-env", "staging"),
               ("canary", "start", *STAGING, "--version", "2.0.0", "--weight", "20"), ("canary", "abort", *STAGING),
               ("--json", "canary", "run", *STAGING, "--version", "2.0.0"),
               ("canary", "trace", "--out", str(rig.root / "traces"))]
    if side_by_side:
        rig.cli_all([*writers, *READERS])
    else:
        for argv in writers:
            rig.cli(*argv)
        rig.cli_all(READERS)


def one_down(rig: Rig, service: str) -> None:
    """What meets `service`, with only it down (the rest up, so each command gets that far)."""
    if service == "database":
        rig.cli_all([("migrate", "deploy", *STAGING), ("backup", "create", "--env", "kwdsn", "--yes"),
                     ("drill", *STAGING), ("--json", "status")])
    elif service == "s3":
        rig.cli_all([("backup", "create", *STAGING), ("--json", "backup", "list")])
        rig.cli("restore", *STAGING, "--walkthrough", "--confirm-env", "staging")
    elif service == "docker":
        rig.cli_all([("deploy", *STAGING, "--version", "1.0.0"), ("--json", "status")])
    else:  # prometheus and the webhook: a canary that measures and notifies
        rig.cli("deploy", *STAGING, "--version", "1.0.0")
        rig.cli("--json", "canary", "run", *STAGING, "--version", "2.0.0")
    rig.cli_all([("audit", "tail"), ("--json", "journal", "list")])


def check(run: Rig) -> None:
    assert run.ran, "nothing ran"
    leaks = run.leaks()
    assert not leaks, f"{len(leaks)} leak(s) of the secret:\n" + "\n".join(leaks[:20])
    assert not run.problems, "\n".join(run.problems)


def test_no_secret_leaves_its_place_services_up_then_all_down(rig: Any) -> None:
    up: Rig = rig("up", set())
    every_command(up)
    # The forms reached the services for real: the test is not vacuous.
    for command in ("deploy --env staging --yes --version 1.0.0", "backup create --env kwdsn --yes",
                    "backup create --env query --yes", "backup create --env emptyuser --yes",
                    "restore --env staging --yes --walkthrough --confirm-env staging"):
        assert (command, 0) in up.ran, up.ran
    assert any(key.startswith("s3://") and key.endswith(".json") for key, _ in up.places()), "no manifest in S3"
    check(up)
    down: Rig = rig("down", set(SERVICES))
    every_command(down, side_by_side=True)
    assert all(code != 0 for what, code in down.ran if what.startswith(("deploy --env", "backup create"))), down.ran
    check(down)


@pytest.mark.parametrize("down", ["database", "s3", "docker", "prometheus webhook"])
def test_no_secret_leaves_its_place_with_one_service_down(rig: Any, down: str) -> None:
    run: Rig = rig(down.replace(" ", "-"), set(down.split()))
    one_down(run, down.split()[0])
    check(run)
