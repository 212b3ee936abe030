"""File modes as a user gets them, under umask 022: the console run as a process against the rig's
PostgreSQL takes a backup into a local dir, then drills a restore from it (working copy, scratch
app files) that stops at an unhealthy app and keeps its working copy; every directory it made is
0700 and every file 0600."""

from __future__ import annotations

import http.server
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from rig import config_builder as toml

ROOT = Path(__file__).resolve().parents[2]


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_response(503)  # the drill fails at its health step and keeps its working copy
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/health"
    server.shutdown()


def console(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    return subprocess.run([sys.executable, "-m", "console.cli", "--config", str(tmp_path / "release.toml"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, umask=0o022)


def wrong_modes(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every entry below root (root included) that is not 0700 (dir) or 0600 (file)."""
    wrong = {}
    for path in [root, *root.rglob("*")]:
        if skip is not None and (path == skip or skip in path.parents):
            continue
        want = 0o700 if path.is_dir() else 0o600
        if stat.S_IMODE(path.lstat().st_mode) != want:
            wrong[str(path.relative_to(root.parent))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return wrong


def test_backup_drill_and_trace_write_only_private_files_under_umask_022(
        tmp_path: Path, pg_database: str, health_url: str) -> None:
    app = tmp_path / "app"
    (app / "prisma" / "migrations").mkdir(parents=True)
    (app / "package.json").write_text('{"name": "food-management"}\n')
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Ingredient" (id int PRIMARY KEY, name text NOT NULL)')
        conn.execute("""INSERT INTO "Ingredient" SELECT g, 'n' || g FROM generate_series(1, 50) g""")
    toml.release(
        {"staging": toml.environment(database_url=pg_database, app_dir=app)}, backup=toml.backup(tmp_path / "backups"),
        migrations={"dir": app / "prisma" / "migrations", "integrity_tables": ["Ingredient"]},
        recovery={"health_tries": 1, "health_interval_s": 0.1},
    ).write(tmp_path / "release.toml")

    backup = console(tmp_path, "backup", "create", "--env", "staging", "--yes")
    assert backup.returncode == 0, backup.stderr + backup.stdout
    drill = console(tmp_path, "drill", "--env", "staging", "--yes", "--param", f"health_url={health_url}")
    assert drill.returncode == 1 and "not healthy after 1 tries" in drill.stdout, drill.stderr + drill.stdout

    state = tmp_path / "state" / "release-console"
    assert (state / "journal.sqlite3").is_file() and (state / "audit.jsonl").is_file()
    assert any((tmp_path / "backups").rglob("manifest.json"))
    kept = sorted(p.name for p in (state / "recovery").rglob("*") if p.is_file())
    assert any(name.startswith("db.") for name in kept), f"the drill's working copy, kept for a retry: {kept}"
    # The drill's scratch copy of the app's own files keeps the app's modes, inside a 0700 dir.
    assert wrong_modes(tmp_path / "state", skip=next((state / "recovery").rglob("scratch-app"), None)) == {}
    assert wrong_modes(tmp_path / "backups") == {}
