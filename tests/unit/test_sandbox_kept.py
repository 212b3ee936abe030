"""The sandbox's world is kept between processes: a CLI session behaves like one world, the TUI
takes in what a CLI call changed, `--sandbox --reset` seeds it anew, and a damaged file is refused."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rig.opkit import run

from services.core.events import Outcome
from services.factory import EXAMPLE_CONFIG, SandboxServices, build, load_config
from services.sandbox.saved import world_path

ROOT = Path(__file__).resolve().parents[2]


def cli(state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """One release-console process in the sandbox, on the given state dir, with no terminal (as cron)."""
    env = {**os.environ, "XDG_STATE_HOME": str(state), "XDG_CONFIG_HOME": str(state / "config")}
    return subprocess.run([sys.executable, "-m", "console.cli", "--sandbox", "--time-scale", "3000", *argv],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_cli_session_is_one_world_until_reset(tmp_path: Path) -> None:
    seeded = as_json(cli(tmp_path, "history", "--env", "staging", "--json"))
    backups_before = as_json(cli(tmp_path, "backup", "list", "--env", "staging", "--json"))

    deployed = cli(tmp_path, "deploy", "--env", "staging", "--version", "1.4.0", "--yes")
    assert deployed.returncode == 0, deployed.stderr
    assert cli(tmp_path, "backup", "create", "--env", "staging", "--yes").returncode == 0

    history = as_json(cli(tmp_path, "history", "--env", "staging", "--json"))
    assert len(history) == len(seeded) + 1
    assert history[-1]["image"].endswith(":1.4.0")  # the previous process's deploy, the newest
    status = {row["env"]: row for row in as_json(cli(tmp_path, "status", "--json"))}
    assert status["staging"]["version"] == "1.4.0"
    backups = as_json(cli(tmp_path, "backup", "list", "--env", "staging", "--json"))
    assert len(backups) > len(backups_before)  # a drill from the CLI can build on it

    reset = as_json(cli(tmp_path, "--reset", "history", "--env", "staging", "--json"))
    assert [(r["number"], r["image"]) for r in reset] == [(r["number"], r["image"]) for r in seeded]
    trail = cli(tmp_path, "audit", "tail", "--json")
    assert any(record["action"] == "sandbox-reset" for record in as_json(trail))


def test_an_unattended_production_backup_prunes_only_with_confirm_env(tmp_path: Path) -> None:
    """Cron: without --confirm-env the retention's question is declined at once (no terminal), the
    backup is kept and nothing deleted (exit 3); with it, the old backup goes (exit 0)."""
    before = {b["id"] for b in as_json(cli(tmp_path, "backup", "list", "--env", "production", "--json"))}

    unconfirmed = cli(tmp_path, "backup", "create", "--env", "production")

    assert unconfirmed.returncode == 3, unconfirmed.stderr
    assert "(no terminal; pass --confirm-env production)" in unconfirmed.stderr
    kept = {b["id"] for b in as_json(cli(tmp_path, "backup", "list", "--env", "production", "--json"))}
    [new] = kept - before
    assert before < kept
    assert f"backup {new} is complete and kept; nothing deleted" in unconfirmed.stdout

    confirmed = cli(tmp_path, "backup", "create", "--env", "production", "--confirm-env", "production")

    assert confirmed.returncode == 0, confirmed.stderr
    after = {b["id"] for b in as_json(cli(tmp_path, "backup", "list", "--env", "production", "--json"))}
    [newer] = after - kept
    assert len(kept - after) == 1 and new in after  # the 41-day-old one went; the first new one stayed


def test_the_world_file_is_private_json_and_a_damaged_one_is_refused_by_name(tmp_path: Path) -> None:
    assert cli(tmp_path, "status").returncode == 0
    path = world_path(tmp_path / "release-console", 7)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["seed"] == 7

    path.write_text('{"format": 1, "seed": 7, "envs": "__import__(\'os\')"}')
    refused = cli(tmp_path, "status")
    assert refused.returncode == 2
    assert str(path) in refused.stderr and "--sandbox --reset" in refused.stderr
    assert cli(tmp_path, "--reset", "status").returncode == 0


def services_on(state: Path) -> SandboxServices:
    made = build(load_config(str(EXAMPLE_CONFIG), True, {}), sandbox_mode=True, state=state, time_scale=3000)
    assert isinstance(made, SandboxServices)
    return made


def test_an_open_console_takes_in_what_another_process_did(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    console, other = services_on(tmp_path), services_on(tmp_path)
    target = console.target("staging")  # made before the change, as the TUI's poll makes it
    assert target.status().version == "1.4.2"

    result, _, _ = run(other, "deploy", "staging", {"version": "1.4.0"}, typed="staging")
    assert result.outcome is Outcome.SUCCEEDED
    console.refresh()
    assert target.status().version == "1.4.0"
    assert console.revisions("staging").list()[-1].image.endswith(":1.4.0")

    console.close()  # it changed nothing since: the other's save stays
    assert services_on(tmp_path).target("staging").status().version == "1.4.0"


def test_expand_tables_and_the_clock_go_on_in_the_next_process(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    first = services_on(tmp_path)
    params = {"table": "Ingredient", "column": "expiresAt", "type": "timestamp(3)", "backfill": "now()",
              "phase": "expand"}
    result, _, _ = run(first, "expand-add-column", "development", params, typed="development")
    assert result.outcome is Outcome.SUCCEEDED
    ended = first.clock.now()
    first.close()

    second = services_on(tmp_path)
    assert second.clock.now() >= ended
    table = second.schema("development").table("Ingredient")
    assert table is not None and "expiresAt" in table.columns


def test_a_canary_started_by_one_command_is_watched_by_the_next(tmp_path: Path) -> None:
    started = cli(tmp_path, "canary", "start", "--env", "staging", "--version", "1.5.0", "--yes")
    assert started.returncode == 0, started.stderr
    watched = cli(tmp_path, "canary", "watch", "--env", "staging", "--dry-run")
    assert watched.returncode == 0, watched.stderr
    assert "the rules would roll back at check" in watched.stdout
