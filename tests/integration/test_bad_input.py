"""The bad-input matrix: each bad input is refused with a clear message and its exit code, no
traceback, and nothing changed (the state dir's journal and audit, and the real database).

Every row runs `release-console` as a subprocess against a real PostgreSQL database. The table
is the source of docs/operations.md's "What the console refuses" (kept in sync by hand: a test
below checks that every row's message is listed there).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from rig import config_builder as toml
from rig.helpers import free_port, unique_name

from services import factory
from services.core import config as config_module

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "release-console")
OK, FAILED, USAGE = 0, 1, 2
SECRET = "s3cr3t-pw"  # in the unreachable database's URL: never printed


def valid_config() -> toml.ReleaseToml:
    """A config that passes `config check`; the config rows edit its text."""
    docked = toml.docker_target(toml.nginx_split("/tmp/rc-never-written.conf", upstream="food_management"),
                                service="app", ports=(3100, 3199))
    environments = {"staging": toml.environment(metrics=toml.prometheus("http://127.0.0.1:9/prom")),
                    "production": toml.environment(production=True), "docked": toml.environment(target=docked)}
    return toml.release(environments, app={"health_path": "/api/health"}, migrations={"dir": "migrations"})


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]
    message: str  # a substring of the output naming the problem
    code: int
    # (old, new) replacements in the text of valid_config(), for the config rows
    edit: tuple[tuple[str, str], ...] = field(default=())
    category: str = ""


def cfg(id: str, old: str, new: str, message: str, args: list[str] | None = None, code: int = USAGE) -> Case:
    return Case(id, args or ["config", "check"], message, code, ((old, new),), "config")


def run_case(id: str, args: list[str], message: str, category: str, code: int = USAGE) -> Case:
    return Case(id, args, message, code, (), category)


DEPLOY = ["deploy", "--env", "staging", "--version"]

MATRIX: list[Case] = [
    # --- config ------------------------------------------------------------------------------
    cfg("bad-toml", 'name = "food-management"', 'name = "food-management', "syntax"),
    cfg("unknown-key", 'health_path = "/api/health"', 'health_path = "/api/health"\ncolour = "red"', "app.colour"),
    cfg("unknown-section", "[migrations]", "[migration]", "migration: Extra inputs are not permitted"),
    cfg("missing-var", 'database_url = "${TEST_DB}"', 'database_url = "${RC_NOT_SET_ANYWHERE}"',
        "${RC_NOT_SET_ANYWHERE} is not set in the environment"),
    cfg("ports-reversed", "ports = [3100, 3199]", "ports = [3199, 3100]", "ports must be [low, high]"),
    cfg("ports-out-of-range", "ports = [3100, 3199]", "ports = [3100, 70000]", "ports must be [low, high]"),
    cfg("app-port-too-big", 'health_path = "/api/health"', 'health_path = "/api/health"\nport = 70000', "app.port"),
    cfg("health-path-relative", 'health_path = "/api/health"', 'health_path = "api/health"', "must start with '/'"),
    cfg("health-path-space", 'health_path = "/api/health"', 'health_path = "/api/health now"', "spaces or control"),
    cfg("app-name-newline", 'name = "food-management"', 'name = "food\\nserver evil;"', "may use only"),
    cfg("app-name-slash", 'name = "food-management"', 'name = "../food"', "may use only"),
    cfg("env-name-space", "[environments.production]", '[environments."prod uction"]',
        "environment name 'prod uction'"),
    cfg("env-name-newline", "[environments.production]", '[environments."prod\\n}"]', "environment name 'prod\\n}'"),
    cfg("service-name", 'service = "app"', 'service = "app;x"', "target.docker.service"),
    cfg("upstream-newline", 'upstream = "food_management"', 'upstream = "food\\n}"', "nginx.upstream"),
    cfg("image-upper", 'image = "127.0.0.1:5000/food-management"', 'image = "Food/App"',
        "not a valid image repository"),
    cfg("image-with-tag", 'image = "127.0.0.1:5000/food-management"', 'image = "127.0.0.1:5000/food:1.0"',
        "not a valid image repository"),
    cfg("image-newline", 'image = "127.0.0.1:5000/food-management"', 'image = "food\\nx"',
        "not a valid image repository"),
    cfg("no-environments", "[environments.production]", "[unused_production]", "unused_production"),
    cfg("target-kind", 'kind = "docker"', 'kind = "nomad"', "target"),
    cfg("prometheus-not-http", 'prometheus_url = "http://127.0.0.1:9/prom"', 'prometheus_url = "ftp://prom"',
        "must be an http:// or https:// URL"),
    cfg("prometheus-no-scheme", 'prometheus_url = "http://127.0.0.1:9/prom"', 'prometheus_url = "127.0.0.1:9090"',
        "must be an http:// or https:// URL"),
    cfg("statement-timeout-zero", "[migrations]", "[database]\nstatement_timeout_s = 0\n[migrations]",
        "database.statement_timeout_s"),
    cfg("check-timeout-negative", 'health_path = "/api/health"', 'health_path = "/api/health"\ncheck_timeout_s = -1',
        "app.check_timeout_s"),
    cfg("canary-weight", "[migrations]", "[canary]\nweight_percent = 150\n[migrations]", "canary.weight_percent"),
    cfg("automation-rule", "[migrations]", '[canary]\nautomation = { errors = "act" }\n[migrations]',
        "unknown automation rule"),
    cfg("bucket-name", "[migrations]", '[backup.s3]\nbucket = "Bad_Bucket"\n[migrations]', "backup.s3.bucket"),
    Case("config-missing", ["--config", "/nonexistent/release.toml", "status"], "no config file found", USAGE,
         category="config"),
    # --- flags -------------------------------------------------------------------------------
    run_case("unknown-flag", ["status", "--colour"], "unrecognized arguments: --colour", "flags"),
    run_case("unknown-command", ["deploi"], "invalid choice: 'deploi'", "flags"),
    run_case("missing-env", ["deploy", "--version", "1.4.2"], "the following arguments are required: --env", "flags"),
    run_case("unknown-env", ["status", "--env", "nope"], "unknown environment 'nope'", "flags"),
    run_case("env-newline", ["history", "--env", "staging\nx"], "unknown environment 'staging\\nx'", "flags"),
    run_case("bad-weights", ["canary", "step", "--env", "staging", "--weights", "10,abc"],
             "a weight is a whole percentage", "flags"),
    run_case("weight-over-100", ["canary", "step", "--env", "staging", "--weights", "10,150"],
             "a weight is a percentage 0-100", "flags"),
    run_case("bad-pause", ["canary", "step", "--env", "staging", "--pause-s", "soon"], "pause_s must be a number",
             "flags"),
    run_case("bad-replicas", ["scale", "--env", "staging", "--replicas", "many"], "replicas must be a whole number",
             "flags"),
    run_case("zero-replicas", ["scale", "--env", "staging", "--replicas", "0"], "replicas must be at least 1", "flags"),
    run_case("bad-trace-format", ["canary", "trace", "--format", "pdf"], "invalid choice: 'pdf'", "flags"),
    # --- params ------------------------------------------------------------------------------
    run_case("unknown-param", [*DEPLOY, "1.4.2", "--param", "colour=red"],
             "unknown parameter 'colour' for deploy; known: version, dry_run", "params"),
    run_case("unknown-param-none", ["backup", "create", "--env", "staging", "--param", "x=1"],
             "known: none", "params"),
    run_case("param-without-equals", [*DEPLOY, "1.4.2", "--param", "version"], "--param takes KEY=VALUE", "params"),
    run_case("param-bad-number", ["restore", "--env", "staging", "--health-tries", "many"],
             "health_tries must be a number", "params"),
    run_case("param-zero", ["restore", "--env", "staging", "--health-interval-s", "0"],
             "health_interval_s must be more than 0", "params"),
    run_case("resolve-both", ["migrate", "resolve", "--env", "staging", "--applied", "a", "--rolled-back", "b"],
             "exactly one of --applied", "params"),
    # --- versions ----------------------------------------------------------------------------
    run_case("version-newline", [*DEPLOY, "1.4.2\nserver evil;"], "is not a valid docker tag", "versions"),
    run_case("version-dotdot", [*DEPLOY, "../x"], "is not a valid image reference", "versions"),
    run_case("version-extra-colon", [*DEPLOY, "UPPER:tag:extra"], "is not a valid image reference", "versions"),
    run_case("version-129", [*DEPLOY, "a" * 129], "is longer than 128 characters", "versions"),
    run_case("version-leading-dash", ["canary", "start", "--env", "staging", "--version=-rc1"],
             "is not a valid docker tag", "versions"),
    run_case("version-space", ["push", "--env", "staging", "--version", "v 1"], "is not a valid docker tag",
             "versions"),
    run_case("version-bad-digest", [*DEPLOY, "app@sha256:abc"], "is not a valid image reference", "versions"),
    run_case("canary-version", ["canary", "run", "--env", "staging", "--version", "1.5.0;rm"],
             "is not a valid docker tag", "versions"),
    run_case("pipeline-version", ["pipeline", "run", "--env", "staging", "--version", "$(id)"],
             "is not a valid docker tag", "versions"),
    # --- ids and folders ---------------------------------------------------------------------
    run_case("journal-resume", ["journal", "resume", "nope"], "no operation 'nope' in the journal", "ids"),
    run_case("journal-abandon", ["journal", "abandon", "nope", "--reason", "x"], "no operation 'nope' in the journal",
             "ids"),
    run_case("trace-op", ["canary", "trace", "--op", "nope"], "no canary operation nope", "ids"),
    run_case("rollback-revision", ["rollback", "--env", "staging", "--revision", "abc"],
             "revision must be a revision number", "ids"),
    Case("migrate-status-no-folder", ["migrate", "status", "--env", "staging"], "no migrations folder here", USAGE,
         (('dir = "migrations"', 'dir = "nowhere"'),), "ids"),
    Case("migrate-lint-no-folder", ["migrate", "lint", "--env", "staging"], "no migrations folder here", USAGE,
         (('dir = "migrations"', 'dir = "nowhere"'),), "ids"),
    Case("migrate-deploy-no-folder", ["migrate", "deploy", "--env", "staging", "--yes"], "no migrations folder here",
         USAGE, (('dir = "migrations"', 'dir = "nowhere"'),), "ids"),
    # --- unreachable services ----------------------------------------------------------------
    Case("database-unreachable", ["history", "--env", "staging"], "cannot connect to", FAILED,
         (('database_url = "${TEST_DB}"', 'database_url = "${DEAD_DB}"'),), "urls"),
    Case("database-unreachable-migrate", ["migrate", "status", "--env", "staging"], "cannot connect to", FAILED,
         (('database_url = "${TEST_DB}"', 'database_url = "${DEAD_DB}"'),), "urls"),
    # --- URLs and backup ids ---------------------------------------------------------------
    Case("database-url-mysql", ["config", "check"], "must be a PostgreSQL URL", USAGE,
         (('database_url = "${TEST_DB}"', f'database_url = "mysql://app:{SECRET}@127.0.0.1/app"'),), "urls"),
    Case("database-url-sqlalchemy", ["config", "check"], "must be a PostgreSQL URL", USAGE,
         (('database_url = "${TEST_DB}"', f'database_url = "postgresql+psycopg2://app:{SECRET}@127.0.0.1/app"'),),
         "urls"),
    run_case("backup-id-traversal", ["backup", "verify", "--env", "staging", "--backup-id", "../../etc"],
             "backup id", "ids"),
    run_case("backup-pin-traversal", ["backup", "pin", "--env", "staging", "--backup-id", "../../etc"],
             "backup id", "ids"),
]


@pytest.fixture(scope="module")
def database(pg_dsn: str) -> Iterator[str]:
    """One database for the module, with a table and rows that must stay exactly as they are."""
    name = unique_name("rc_bad_input", 8).replace("-", "_")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = pg_dsn.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Ingredient" (id serial PRIMARY KEY, name text NOT NULL)')
        conn.execute("""INSERT INTO "Ingredient" (name) VALUES ('flour'), ('salt')""")
    yield dsn
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def workdir(tmp_path: Path, database: str) -> Path:
    """A valid config (checked), a migrations folder and a state dir that exists before each row."""
    migration = tmp_path / "migrations" / "20240105093000_init"
    migration.mkdir(parents=True)
    (tmp_path / "migrations" / "migration_lock.toml").write_text('provider = "postgresql"\n')
    (migration / "migration.sql").write_text('CREATE TABLE "Category" (id serial PRIMARY KEY);\n')
    valid_config().write(tmp_path / "release.toml")
    config = config_module.load(tmp_path / "release.toml", _environment(tmp_path, database))
    factory.build(config, state=tmp_path / "state" / "release-console")  # the journal and audit exist
    return tmp_path


def _environment(tmp_path: Path, database: str) -> dict[str, str]:
    dead = f"postgresql://app:{SECRET}@127.0.0.1:{free_port()}/app"
    return {**os.environ, "TEST_DB": database, "DEAD_DB": dead, "XDG_STATE_HOME": str(tmp_path / "state"),
            "PGCONNECT_TIMEOUT": "3"}


def _state(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "state"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _database(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                              " ORDER BY 1").fetchall()
        rows = conn.execute('SELECT id, name FROM "Ingredient" ORDER BY id').fetchall()
    return [*tables, *rows]


def refuse(case: Case, workdir: Path, database: str) -> None:
    text = (workdir / "release.toml").read_text()
    for old, new in case.edit:
        assert old in text, f"{case.id}: the edit's anchor {old!r} is not in the config"
        text = text.replace(old, new, 1)
    (workdir / "release.toml").write_text(text)
    state, data = _state(workdir), _database(database)
    done = subprocess.run([CLI, "--config", str(workdir / "release.toml"), *case.args]
                          if "--config" not in case.args else [CLI, *case.args],
                          capture_output=True, text=True, cwd=workdir, env=_environment(workdir, database),
                          stdin=subprocess.DEVNULL, timeout=60, check=False)
    said = done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert case.message in said, f"{case.id}: {case.message!r} not in:\n{said}"
    assert done.returncode == case.code, f"{case.id}: exit {done.returncode}, not {case.code}:\n{said}"
    assert SECRET not in said
    assert _state(workdir) == state, f"{case.id}: the journal or the audit changed"
    assert _database(database) == data, f"{case.id}: the database changed"


@pytest.mark.parametrize("case", MATRIX, ids=[c.id for c in MATRIX])
def test_bad_input_is_refused_clearly_and_changes_nothing(case: Case, workdir: Path, database: str) -> None:
    refuse(case, workdir, database)


def test_the_matrix_covers_every_category() -> None:
    assert len(MATRIX) >= 40
    assert {c.category for c in MATRIX} == {"config", "flags", "params", "versions", "ids", "urls"}
    assert len({c.id for c in MATRIX}) == len(MATRIX)


def test_the_operations_guide_lists_every_row() -> None:
    guide = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    section = guide.split("## What the console refuses", 1)[1].split("\n## ", 1)[0]
    missing = [c.id for c in MATRIX if f"`{c.id}`" not in section]
    assert not missing, f"rows missing from docs/operations.md: {missing}"


# --- BrokenPipe: output piped into a reader that is already gone ------------------------------

PIPED = [["status"], ["config", "check"], ["--json", "config", "check"], ["audit", "tail"], ["journal", "list"],
         ["history", "--env", "staging"], ["backup", "list"], ["migrate", "status", "--env", "staging"],
         ["lock", "status"], ["--json", "status"]]


@pytest.mark.parametrize("args", PIPED, ids=[" ".join(a) for a in PIPED])
def test_a_reader_gone_ends_the_command_quietly(args: list[str], workdir: Path, database: str) -> None:
    read, write = os.pipe()
    os.close(read)  # as `| head -1` once it has its line: every write now fails with EPIPE
    try:
        done = subprocess.run([CLI, "--config", str(workdir / "release.toml"), *args], stdout=write,
                              stderr=subprocess.PIPE, text=True, cwd=workdir, env=_environment(workdir, database),
                              timeout=60, check=False)
    finally:
        os.close(write)
    assert done.stderr == "", done.stderr
    assert done.returncode == OK
