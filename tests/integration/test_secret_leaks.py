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
import urllib.parse
import uuid
from collections.abc import Iterator
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
    ran: list[tuple[str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    output: list[tuple[str, bytes]] = field(default_factory=list)

    def cli(self, *argv: str, timeout: float = 120) -> int:
        """Run the CLI as a user would; keep what it printed, check its exit and its stderr."""
        done = subprocess.run([sys.executable, "-m", "console.cli", "--config", str(self.config), *argv],
                              cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False)
        what = " ".join(argv)
        self.ran.append((what, done.returncode))
        self.output += [(f"stdout of `{what}`", done.stdout), (f"stderr of `{what}`", done.stderr)]
        if done.returncode not in range(6):
            self.problems.append(f"`{what}` exited {done.returncode}")
        if b"Traceback (most recent call last)" in done.stderr:
            self.problems.append(f"`{what}` printed a traceback:\n{done.stderr.decode(errors='replace')[-1500:]}")
        return done.returncode

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
                 docker_url: str, prometheus: str, hook_url: str, db_port: int | None = None) -> tuple[Path, dict[str, str]]:
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


@pytest.fixture
def rig(tmp_path: Path, nginx: Nginx, repository: str, database: Database, s3_endpoint: str, s3_client: Any,
        bucket_name: str, prometheus_url: str, hook: Hook, docker_client: Any) -> Iterator[Any]:
    s3_client.create_bucket(Bucket=bucket_name)
    made: list[Rig] = []

    def make(condition: str) -> Rig:
        root = tmp_path / condition
        root.mkdir()
        up = condition == "up"
        closed = f"127.0.0.1:{free_port()}"  # nothing listens there: every service "down" points at it
        config, resolved = release_toml(
            root, nginx, repository, database, s3_endpoint if up else f"http://{closed}", bucket_name,
            os.environ["RC_DOCKER_URL"] if up else f"tcp://{closed}", prometheus_url if up else f"http://{closed}",
            f"http://127.0.0.1:{hook.port}" if up else f"http://{closed}",
            db_port=None if up else int(closed.rsplit(":", 1)[1]))
        env = {**os.environ, **resolved, "XDG_STATE_HOME": str(root / "state"), "XDG_CONFIG_HOME": str(root / "xdg"),
               "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
        env.pop("DATABASE_URL", None)
        made.append(Rig(root, config, env, database, bucket_name, s3_client, hook))
        return made[-1]

    yield make
    for container in docker_client.containers.list(all=True, filters={"label": APP}):
        if container.labels.get(APP, "").startswith("rc-leak-"):
            container.remove(force=True)


def every_command(rig: Rig) -> None:
    """Each command of the console that can meet a secret, as a user types it."""
    for output in ([], ["--json"]):
        rig.cli(*output, "status")
        rig.cli(*output, "config", "check")
    for env in FORMS:
        rig.cli("migrate", "status", "--env", env)
        rig.cli("backup", "create", "--env", env, "--yes")
    staging = ("--env", "staging", "--yes")
    rig.cli("deploy", *staging, "--version", "1.0.0", "--dry-run")
    rig.cli("deploy", *staging, "--version", "1.0.0")
    rig.cli("migrate", "status", "--env", "staging")
    rig.cli("migrate", "deploy", *staging)
    rig.cli("--json", "migrate", "status", "--env", "staging")
    rig.cli("backup", "create", *staging)
    rig.cli("--json", "backup", "list")
    rig.cli("drill", *staging)
    rig.cli("restore", *staging, "--walkthrough", "--confirm-env", "staging")
    rig.cli("canary", "start", *staging, "--version", "2.0.0", "--weight", "20")
    rig.cli("canary", "abort", *staging)
    rig.cli("--json", "canary", "run", *staging, "--version", "2.0.0")
    rig.cli("canary", "trace", "--out", str(rig.root / "traces"))
    rig.cli("canary", "trace", "--format", "json")
    rig.cli("journal", "list")
    rig.cli("--json", "journal", "list")
    rig.cli("audit", "tail")
    rig.cli("--json", "audit", "tail")
    rig.cli("lock", "status")


@pytest.mark.parametrize("condition", ["up", "down"])
def test_no_secret_leaves_its_place(rig: Any, condition: str) -> None:
    run: Rig = rig(condition)
    every_command(run)
    assert run.ran, "nothing ran"
    if condition == "up":  # the forms reached the services for real: the test is not vacuous
        assert ("deploy --env staging --yes --version 1.0.0", 0) in run.ran, run.ran
        assert ("backup create --env kwdsn --yes", 0) in run.ran, run.ran
        assert any(key.endswith(".json") or "manifest" in key for key, _ in run.places()
                   if key.startswith("s3://")), "no backup metadata reached S3"
    else:
        assert all(code != 0 for what, code in run.ran if what.startswith(("deploy", "backup create"))), run.ran
    leaks = run.leaks()
    assert not leaks, f"{len(leaks)} leak(s) of the secret:\n" + "\n".join(leaks[:20])
    assert not run.problems, "\n".join(run.problems)
