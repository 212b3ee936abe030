"""The leak test: one distinctive secret planted in every form a secret takes in release.toml, run
through every command as a user runs it (a subprocess of the CLI), with the services up and then
down. Nothing the console writes or prints may hold it: stdout, stderr, the state dir (journal,
audit log and head), build and operation output, exported traces, the backup stores (local dir and
S3), the shared audit table (release_console_audit) in the environments' database and in the
`[state] database_url` one, and what the webhook received. (Build log files are the TUI's only:
the CLI prints the build's lines, which are searched.)

The forms: a database URL with user:password@, a keyword DSN, `?password=`, an empty user, Redis
URLs (`redis://:pw@`, `rediss://`), `[state] database_url`, and `${VAR}` values in plain-string
fields (build args, the target's env, prometheus_url with user:password@) and in the notify
webhook. Commands that fail because a service is down are fine; each must still exit with a
documented code (0-5) and print no traceback.

With the services up the canary really runs: the rig's Prometheus scrapes the app's containers
(file_sd, as docker_sd would), the sample app makes its own traffic, so one canary is judged and
promoted and one (5 % errors) is rolled back, each notifying the webhook, and the trace is exported.
One app (its containers on one set of ports behind one nginx), one database and one bucket serve
the whole module: the setups are the slow part. Each test's configs are new (their own state dirs).
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

import httpx
import psycopg
import pytest
from conftest import Nginx
from psycopg import sql
from psycopg.conninfo import make_conninfo
from rig import config_builder as toml
from rig.helpers import Discovery, free_port, unique_bucket_name, wait_until
from rig.sample_app import prepare_context

from services.adapters.docker_fleet import APP, PORT

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
    """A database owned by a role whose password is the secret: the URLs that carry it must work.
    `<name>_state` beside it is the `[state] database_url` of the rigs that set one."""

    name: str
    user: str
    port: int
    admin: str  # the rig's superuser DSN: the test reads the audit tables with it

    def url(self, form: str, port: int | None = None, name: str | None = None) -> str:
        values = {"user": self.user, "pw": SECRET, "port": port or self.port, "db": name or self.name}
        if form == "url":
            return "postgresql://{user}:{pw}@127.0.0.1:{port}/{db}?connect_timeout=3".format(**values)
        return FORMS[form].format(**values)

    def audit_rows(self, name: str) -> list[tuple[Any, ...]] | None:
        """Every row of release_console_audit in database `name`; None when there is no such table."""
        with psycopg.connect(make_conninfo(self.admin, dbname=name), connect_timeout=5) as conn:
            if conn.execute("SELECT to_regclass('release_console_audit')").fetchone() == (None,):
                return None
            return conn.execute("SELECT * FROM release_console_audit").fetchall()


@pytest.fixture(scope="module")
def database(pg_dsn: str) -> Iterator[Database]:
    suffix = uuid.uuid4().hex[:10]
    db = Database(f"rc_leak_{suffix}", f"rc_leak_{suffix}", urllib.parse.urlsplit(pg_dsn).port or 5432, pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            sql.Identifier(db.user), sql.Literal(SECRET)))
        for name in (db.name, f"{db.name}_state"):
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(db.user)))
    yield db
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name in [r[0] for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{db.name}%",))]:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db.user)))


@dataclass
class World:
    """What every config of the module shares: one app on one set of ports (its containers serve
    every rig in turn), its build context, the database, the bucket and the webhook receiver."""

    root: Path
    app: str
    image: str  # the repository: tags 1.0.0, 2.0.0 and `bad` (5 % errors) are in the registry
    nginx: Nginx
    low_port: int
    database: Database
    bucket: str
    s3: Any
    hook: Hook
    docker: Any

    def running(self) -> bool:
        return bool(self.docker.containers.list(filters={"label": f"{APP}={self.app}", "status": "running"}))

    def stable_in_prometheus(self, prometheus: str) -> bool:
        """Prometheus has a request rate for every stable container running now: what the canary's
        baseline reads (the stable a promotion just made comes through file_sd, then two scrapes)."""
        containers = self.docker.containers.list(filters={"label": f"{APP}={self.app}", "status": "running"})
        running = {c.labels[PORT] for c in containers if c.name.endswith(f"-stable-{c.labels[PORT]}")}
        query = f'rate(http_requests_total{{track="stable",rc_app="{self.app}"}}[5s]) > 0'
        found = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
        return bool(running) and running <= {r["metric"]["instance"].rsplit(":", 1)[1] for r in found}


BUILT = "0.0.1-leak"  # the tag `build` gives the image it builds (never pushed; removed afterwards)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, database: Database, s3_client: Any, hook: Hook,
          docker_client: Any, repository: str, prom_targets_dir: Path, module_nginx: Nginx) -> Iterator[World]:
    bucket_name = unique_bucket_name("rc-leak")
    s3_client.create_bucket(Bucket=bucket_name)
    app = f"rc-secrets-{uuid.uuid4().hex[:8]}"
    shared = World(tmp_path_factory.mktemp("leaks"), app, repository, module_nginx,
                   21000 + (uuid.uuid4().int % 400) * 20, database, bucket_name, s3_client, hook, docker_client)
    prepare_context(shared.root / "app")
    # The rig's Prometheus scrapes the app's containers while the module runs; `rc_app` keeps them
    # apart from other modules' targets in the selectors.
    with Discovery(docker_client, app, prom_targets_dir, {"rc_app": app}):
        yield shared
    for container in docker_client.containers.list(all=True, filters={"label": f"{APP}={app}"}):
        container.remove(force=True)
    try:
        docker_client.images.remove(f"{repository}:{BUILT}", force=True)
    except Exception:  # noqa: BLE001 - not built when docker was down throughout
        pass


@dataclass
class Rig:
    root: Path
    config: Path
    env: dict[str, str]
    world: World
    trail: str | None  # the database the console's shared audit trail goes to; None when it is down
    ran: list[tuple[str, int]] = field(default_factory=list)  # (command, exit code)
    problems: list[str] = field(default_factory=list)
    output: list[tuple[str, bytes]] = field(default_factory=list)
    rows_before: int = 0

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

    def canary(self, argv: tuple[str, ...], tries: int = 3) -> int:
        """A canary run, once Prometheus has data for the stable it is measured against. Right after a
        deploy, a restore or the previous canary's promotion, the new stable may not be in Prometheus
        yet: the console then rightly stops before the canary takes traffic (exit 1: its queries
        match no series, or "no baseline: stable has no data" at 1 s checks). Tried again if it did."""
        configured = urllib.parse.urlsplit(self.env["LEAK_PROMETHEUS"])
        prometheus = f"{configured.scheme}://{configured.hostname}:{configured.port}"  # without the user:password
        for _ in range(tries):
            wait_until(lambda: self.world.stable_in_prometheus(prometheus), timeout=60, interval=0.5,
                       what="Prometheus to have a rate for every running stable container")
            code = self.cli(*argv)
            if code != 1:
                return code
            print("   " + self.output[-2][1].decode(errors="replace").strip().replace("\n", "\n   ")[-600:])
        return code

    def cli_all(self, commands: list[tuple[str, ...]]) -> None:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda argv: self.cli(*argv), commands))

    def code(self, *argv: str) -> int | None:
        """The exit code of argv's last run (a canary may be tried again)."""
        return next((code for what, code in reversed(self.ran) if what == " ".join(argv)), None)

    def stdout(self, *argv: str) -> bytes:
        return next(data for where, data in self.output if where == f"stdout of `{' '.join(argv)}`")

    def audit_rows(self) -> list[tuple[str, list[tuple[Any, ...]] | None]]:
        """The shared trail's rows in every database a config of the module may write it to."""
        db = self.world.database
        return [(name, db.audit_rows(name)) for name in (db.name, f"{db.name}_state")]

    def trail_rows(self) -> int:
        """How many rows the trail this config writes holds now (0 when its database is down)."""
        return len(dict(self.audit_rows()).get(self.trail or "") or [])

    def places(self) -> Iterator[tuple[str, bytes]]:
        """Everything the console wrote or printed, by where it was found."""
        yield from self.output
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and path.name != "release.toml":
                yield str(path.relative_to(self.root)), path.read_bytes()
        s3, bucket = self.world.s3, self.world.bucket
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                yield f"s3://{bucket}/{obj['Key']}", s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        for number, body in enumerate(self.world.hook.bodies):
            yield f"webhook payload {number}", body
        for name, rows in self.audit_rows():
            yield f"release_console_audit in {name}", json.dumps(rows, default=str).encode()

    def leaks(self) -> list[str]:
        found = []
        for where, data in self.places():
            for needle in NEEDLES:
                if needle in data:
                    at = data.index(needle)
                    found.append(f"{where}: ...{data[max(0, at - 120):at + 40].decode(errors='replace')}...")
        return found


def release_toml(root: Path, world: World, s3_endpoint: str, docker_url: str, prometheus: str, hook_url: str,
                 db_port: int | None = None, state_db: bool = False) -> tuple[Path, dict[str, str]]:
    """The config and the environment it resolves against; `db_port` points every database URL there."""
    (root / "prisma" / "migrations" / "20240105093000_leak").mkdir(parents=True)
    (root / "prisma" / "migrations" / "migration_lock.toml").write_text('provider = "postgresql"\n')
    (root / "prisma" / "migrations" / "20240105093000_leak" / "migration.sql").write_text(MIGRATION)
    db, prom = world.database, urllib.parse.urlsplit(prometheus)
    env = {
        "TEST_DB": db.url("url", db_port),
        "LEAK_REDIS": f"redis://:{SECRET}@127.0.0.1:{free_port()}/0",
        "LEAK_BUILD_ARG": f"npm-token-{SECRET}",
        "LEAK_TARGET_ENV": SECRET,
        "LEAK_PROMETHEUS": f"{prom.scheme}://metrics:{SECRET}@{prom.netloc}",
        "LEAK_WEBHOOK": f"{hook_url}/services/T0/B0/{SECRET}",
        "LEAK_S3_SECRET": SECRET,
    }
    selectors = {track: f'track="{track}",rc_app="{world.app}"' for track in ("stable", "canary")}
    # The sample app makes its own traffic (SYNTHETIC_RPS per container): no load generator needed.
    containers = {"NPM_AUTH": toml.secret("LEAK_TARGET_ENV"), "SYNTHETIC_RPS": "50", "LATENCY_MS": "0"}
    staging = toml.rig_staging(world.nginx, docker_url, world.low_port, env=containers,
                               redis_url=toml.secret("LEAK_REDIS"),
                               metrics=toml.prometheus(toml.secret("LEAK_PROMETHEUS"), selectors=selectors))
    written = {form: toml.environment(  # written into the file itself: a SecretStr field, no ${VAR}
        api_url=f"{world.nginx.url}/api", database_url=db.url(form, db_port),
        redis_url=f"rediss://:{SECRET}@127.0.0.1:{free_port()}/0") for form in FORMS}
    store = toml.s3_store(world.bucket, endpoint_url=s3_endpoint, access_key_id="leak-access",
                          secret_access_key=toml.secret("LEAK_S3_SECRET"))
    build = {"context": world.root / "app", "target": "runner",
             "build_args": {"NPM_TOKEN": toml.secret("LEAK_BUILD_ARG")}}
    text = toml.release(
        {"staging": staging, **written}, name=world.app, image=world.image, app=build,
        # The canary's first seconds have no data yet (file_sd, scrapes, a rate over 5 s): unanswered,
        # the stale question keeps watching, and the judge observes; so the healthy one is promoted.
        canary={"check_interval_s": 1, "duration_s": 12, "ask_timeout_s": 1, "automation": {"judge": "observe"},
                "ask_default": "skip"},
        metrics={"window": "5s", "min_samples": 3, "misses_before_asking": 3, "timeout_s": 2},
        build={"engine_url": docker_url},
        backup=toml.backup(compression="gzip", s3=store),
        migrations={"dir": "prisma/migrations", "integrity_tables": [], "reindex_tables": []},
        notify={"webhook_url": toml.secret("LEAK_WEBHOOK")},
        state={"database_url": db.url("query", db_port, f"{db.name}_state")} if state_db else None,
    ).text()
    assert text.count("${") == 7 and "build_args" in text and "NPM_AUTH" in text
    path = root / "release.toml"
    path.write_text(text)
    return path, env


SERVICES = ("database", "s3", "docker", "prometheus", "webhook")


@pytest.fixture
def rig(tmp_path: Path, world: World, s3_endpoint: str, prometheus_url: str) -> Any:
    def make(name: str, down: set[str], state_db: bool = False) -> Rig:
        """A config whose services in `down` point at a port where nothing listens; `state_db`:
        with a `[state] database_url` (the shared audit trail goes there)."""
        root = tmp_path / name
        root.mkdir()
        closed = f"127.0.0.1:{free_port()}"

        def where(service: str, up: str, gone: str) -> str:
            return gone if service in down else up

        config, resolved = release_toml(
            root, world, where("s3", s3_endpoint, f"http://{closed}"),
            where("docker", os.environ["RC_DOCKER_URL"], f"tcp://{closed}"),
            where("prometheus", prometheus_url, f"http://{closed}"),
            where("webhook", f"http://127.0.0.1:{world.hook.port}", f"http://{closed}"),
            db_port=int(closed.rsplit(":", 1)[1]) if "database" in down else None, state_db=state_db)
        env = {**os.environ, **resolved, "XDG_STATE_HOME": str(root / "state"), "XDG_CONFIG_HOME": str(root / "xdg"),
               "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
        env.pop("DATABASE_URL", None)
        trail = None if "database" in down else world.database.name + ("_state" if state_db else "")
        made = Rig(root, config, env, world, trail)
        made.rows_before = made.trail_rows()
        return made

    return make


STAGING = ("--env", "staging", "--yes")
CANARY_OK = ("--json", "canary", "run", *STAGING, "--version", "2.0.0")  # judged and promoted
CANARY_BAD = ("canary", "run", *STAGING, "--version", "bad")  # 5 % errors: rolled back
BUILD = ("build", *STAGING, "--version", BUILT)
# Commands that change nothing: run side by side (each is a Python process; the rig is slow enough).
READERS = [("status",), ("--json", "status"), ("config", "check"), ("--json", "config", "check"),
           ("--json", "migrate", "status", "--env", "staging"), ("--json", "backup", "list"),
           ("--json", "journal", "list"), ("audit", "tail"), ("--json", "audit", "tail"),
           ("audit", "tail", "--env", "staging"), ("logs", "--env", "staging", "--since", "all"),
           ("--json", "top", "--env", "staging")]


def traces(rig: Rig) -> list[tuple[str, ...]]:
    return [("canary", "trace", "--out", str(rig.root / "traces")), ("canary", "trace", "--format", "json")]


def every_command(rig: Rig, side_by_side: bool = False) -> None:
    """Each command of the console that can meet a secret, as a user types it; with everything down
    they change nothing, so they may run side by side."""
    # Apart: the build (Docker) and the backups of the three other forms (each its own environment).
    apart = [BUILD, *(("backup", "create", "--env", env, "--yes") for env in FORMS)]
    in_turn = [("deploy", *STAGING, "--version", "1.0.0"), ("migrate", "deploy", *STAGING),
               ("backup", "create", *STAGING), ("drill", *STAGING),
               ("restore", *STAGING, "--confirm-env", "staging"),
               ("canary", "start", *STAGING, "--version", "2.0.0", "--weight", "20"), ("canary", "abort", *STAGING),
               CANARY_OK, CANARY_BAD]
    if side_by_side:
        rig.cli_all([*apart, *in_turn, *traces(rig), *READERS])
        return
    rig.cli_all(apart)
    for argv in in_turn:
        if argv in (CANARY_OK, CANARY_BAD):
            rig.canary(argv)
        else:
            rig.cli(*argv)
    rig.cli_all([*traces(rig), *READERS])


def one_down(rig: Rig, service: str) -> None:
    """What meets `service`, with only it down (the rest up, so each command gets that far)."""
    if service == "database":
        rig.cli_all([("migrate", "deploy", *STAGING), ("backup", "create", "--env", "kwdsn", "--yes"),
                     ("drill", *STAGING), ("--json", "status")])
    elif service == "s3":
        rig.cli_all([("backup", "create", *STAGING), ("--json", "backup", "list")])
        rig.cli("restore", *STAGING, "--confirm-env", "staging")
    elif service == "docker":
        rig.cli_all([("deploy", *STAGING, "--version", "1.0.0"), BUILD, ("--json", "status"),
                     ("logs", "--env", "staging")])
    elif service == "prometheus":  # the canary stops at its query check, before it takes traffic
        rig.cli(*CANARY_OK)
    else:  # the webhook: a canary rolled back, whose notice cannot go out
        if not rig.world.running():  # this test alone: nothing deployed yet
            rig.cli("deploy", *STAGING, "--version", "1.0.0")
        rig.cli(*CANARY_BAD)
    rig.cli_all([("audit", "tail"), ("--json", "journal", "list"), *traces(rig)])


def check(run: Rig) -> None:
    assert run.ran, "nothing ran"
    # The shared trail was searched, and it holds this run's records: the search is not vacuous.
    if run.trail is not None:
        assert run.trail_rows() > run.rows_before, f"no new audit rows in {run.trail}"
    leaks = run.leaks()
    assert not leaks, f"{len(leaks)} leak(s) of the secret:\n" + "\n".join(leaks[:20])
    assert not run.problems, "\n".join(run.problems)


def notices(world: World) -> list[str]:
    return [json.loads(body)["text"] for body in world.hook.bodies]


def test_no_secret_leaves_its_place_services_up_then_all_down(rig: Any, world: World, prometheus_url: str) -> None:
    # Prometheus ignores basic auth: the URL with user:password@ the config gives is a working one.
    prom = urllib.parse.urlsplit(prometheus_url)
    assert httpx.get(f"{prom.scheme}://metrics:{SECRET}@{prom.netloc}/api/v1/query", params={"query": "up"},
                     timeout=10).status_code == 200
    up: Rig = rig("up", set())
    every_command(up)
    # The forms reached the services for real: the test is not vacuous.
    for argv in [("deploy", *STAGING, "--version", "1.0.0"), ("backup", "create", "--env", "kwdsn", "--yes"),
                 ("backup", "create", "--env", "query", "--yes"), ("backup", "create", "--env", "emptyuser", "--yes"),
                 ("restore", *STAGING, "--confirm-env", "staging"), BUILD, CANARY_OK,
                 *traces(up)]:
        assert up.code(*argv) == 0, up.ran
    assert any(key.startswith("s3://") and key.endswith(".json") for key, _ in up.places()), "no manifest in S3"
    assert sorted(path.suffix for path in (up.root / "traces").iterdir()) == [".json", ".md"]
    trace = json.loads(up.stdout(*traces(up)[1]))  # the latest canary's: the one rolled back, with its measures
    assert trace["decision"]["action"] == "rollback", trace["decision"]
    assert any(check["rule"] == "error_rate" and check["value"] for check in trace["checks"]), trace["checks"][-6:]
    said = notices(world)
    assert any("canary promoted" in text for text in said), said
    assert any("automatic rollback: error_rate" in text for text in said), said
    check(up)
    down: Rig = rig("down", set(SERVICES))
    every_command(down, side_by_side=True)
    assert all(code != 0 for what, code in down.ran if what.startswith(("deploy --env", "backup create", "build"))
               ), down.ran
    check(down)


@pytest.mark.parametrize("down", SERVICES)
def test_no_secret_leaves_its_place_with_one_service_down(rig: Any, world: World, down: str) -> None:
    # Two of them keep the shared audit trail in `[state] database_url` instead of the environment's.
    run: Rig = rig(down, {down}, state_db=down in ("s3", "webhook"))
    sent = len(world.hook.bodies)
    one_down(run, down)
    if down == "webhook":
        assert len(world.hook.bodies) == sent and run.code(*CANARY_BAD) not in (0, None), run.ran
        # Sent in the background and given up after its retries: the audit trail says so, without the URL.
        assert any(b"failed: webhook ConnectError" in data for _, data in run.places()), "the notice did not fail"
    check(run)
