"""Point-in-time recovery through pgBackRest, on the rig's PITR cluster (tests/rig/pitr_cluster.py):
`pitr check` for real (archiving works, the stanza, the newest backups, the recovery point), its exit 1
with pgBackRest's reason when the repository cannot be written, and `pitr backup` as an operation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rig import config_builder as toml

from services import factory
from services.backups import pitr
from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import Event, Finished, Outcome, Progress

ROOT = Path(__file__).resolve().parents[2]


def release_toml(tmp_path: Path, cluster: Any) -> Path:
    production = toml.environment(database_url=toml.secret("PITR_DB"), production=True)
    return toml.release({"production": production}, backup=toml.backup(pitr=cluster.pitr_section()),
                        migrations={"integrity_tables": ["Ingredient"]}).write(tmp_path / "release.toml")


def cli(tmp_path: Path, cluster: Any, *words: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "PITR_DB": cluster.dsn(),
           "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    return subprocess.run([sys.executable, "-m", "console.cli", "--config", str(release_toml(tmp_path, cluster)),
                           *words], capture_output=True, text=True, timeout=240, cwd=ROOT, env=env, check=False)


def test_check_reports_archiving_the_stanza_newest_backups_and_the_recovery_point(tmp_path: Path,
                                                                                  pitr_cluster: Any) -> None:
    done = cli(tmp_path, pitr_cluster, "pitr", "check", "--env", "production", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["problems"] == []
    assert report["stanza"]["stanza"] == pitr_cluster.stanza and report["stanza"]["ok"]
    system_id = int(pitr_cluster.execute("SELECT system_identifier FROM pg_control_system()")[0][0])
    assert report["stanza"]["system_id"] == system_id
    assert report["newest"]["full"]["label"].endswith("F")
    # `pgbackrest check` archived a segment just now: the recovery point is that segment's age.
    assert report["archiver"]["last_archived_wal"] and report["recovery_point_age_s"] is not None
    assert report["recovery_point_age_s"] < 120
    text = cli(tmp_path, pitr_cluster, "pitr", "check", "--env", "production")
    assert text.returncode == 0 and "recovery point: the last WAL segment" in text.stdout


def test_broken_archiving_is_reported_with_exit_1_and_the_reason(tmp_path: Path, pitr_cluster: Any) -> None:
    pitr_cluster.break_repo()
    try:
        done = cli(tmp_path, pitr_cluster, "pitr", "check", "--env", "production", "--json")
    finally:
        pitr_cluster.mend_repo()
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert not report["ok"]
    assert any("archiving does not work" in p for p in report["problems"]), report["problems"]
    # pgBackRest's own reason is said: the repository cannot be written (permission denied).
    assert any("permission denied" in p.lower() or "unable to" in p.lower() for p in report["problems"])
    healed = cli(tmp_path, pitr_cluster, "pitr", "check", "--env", "production", "--json")
    assert healed.returncode == 0, healed.stdout


@pytest.mark.parametrize("backup_type", ["incr", "diff"])
def test_pitr_backup_is_an_operation_with_progress_and_audit(tmp_path: Path, pitr_cluster: Any,
                                                             backup_type: str) -> None:
    path = release_toml(tmp_path, pitr_cluster)
    services = factory.build(config_module.load(path, {"PITR_DB": pitr_cluster.dsn()}), state=tmp_path / "state")
    try:
        before = {b.label for b in services.pitr("production").info().backups}
        events: list[Event] = []
        op = build_operation(services, "pitr-backup", "production", {"type": backup_type})
        result = services.runner.run(op, events.append, lambda question: None)
        assert result.outcome is Outcome.SUCCEEDED, result.detail
        after = services.pitr("production").info().backups
        made = [b for b in after if b.label not in before]
        assert [b.type for b in made] == [backup_type]
        assert any(isinstance(e, Progress) and e.total == 100 for e in events)
        assert isinstance(events[-1], Finished)
        audited = [json.loads(line) for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
        assert any(r.get("action") == "pitr-backup" for r in audited), audited[-1]
        report = pitr.check(services, "production", run_check=False)
        assert report.newest(backup_type) is not None and report.newest(backup_type).label == made[0].label
    finally:
        services.close()
