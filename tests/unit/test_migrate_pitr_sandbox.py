"""`[migrations] backup = "pitr"`: its validation against [backup.pitr], and a migrate deploy in the
sandbox taking a pgBackRest backup (no dump) after checking archiving, before anything is applied.
The real pgBackRest and a broken archive are in tests/integration/test_pitr_deploy.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rig.opkit import finished, run, sandbox_services, steps

from services.backups.catalog import list_backups
from services.catalog import build_operation
from services.core.config import ConfigError, ReleaseConfig
from services.core.events import Outcome
from services.factory import EXAMPLE_CONFIG, load_config

PITR_SECTION = '[backup.pitr]\nenvironment = "production"\nstanza = "main"\n'


def release_toml(tmp_path: Path, migrations_backup: str, with_pitr: bool = True) -> Path:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    assert 'backup = "dump"\n' in text and PITR_SECTION in text
    text = text.replace('backup = "dump"\n', f"backup = {migrations_backup}\n", 1)
    if not with_pitr:  # the whole section, up to the blank line that ends it
        text = re.sub(r"\[backup\.pitr\]\n(?:.+\n)*\n", "", text, count=1)
    path = tmp_path / "release.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path) -> ReleaseConfig:
    return load_config(str(path), True, {})  # the sandbox fills the ${VAR}s


def problems(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return str(caught.value)


def test_dump_is_the_default_and_pitr_is_chosen_per_environment(tmp_path: Path) -> None:
    assert load(EXAMPLE_CONFIG).migration_backup("production") == "dump"
    loaded = load(release_toml(tmp_path, '{ production = "pitr" }'))
    assert [loaded.migration_backup(env) for env in ("development", "staging", "production")] == [
        "dump", "dump", "pitr"]


def test_pitr_without_a_pitr_section_is_a_config_error(tmp_path: Path) -> None:
    said = problems(release_toml(tmp_path, '{ production = "pitr" }', with_pitr=False))
    assert 'backup = "pitr" needs [backup.pitr] for production' in said
    assert "there is no [backup.pitr] section" in said and 'set backup = "dump"' in said


def test_pitr_for_an_environment_the_section_does_not_cover_is_a_config_error(tmp_path: Path) -> None:
    # One word for every environment: [backup.pitr] covers production only, so development and staging fail.
    said = problems(release_toml(tmp_path, '"pitr"'))
    assert "needs [backup.pitr] for development, staging, but it covers production only" in said
    assert 'write backup = { production = "pitr" }' in said
    assert "for staging, but it covers production only" in problems(release_toml(tmp_path, '{ staging = "pitr" }'))


def test_unknown_environment_or_engine_is_a_config_error(tmp_path: Path) -> None:
    assert "backup names qa, not in [environments]" in problems(release_toml(tmp_path, '{ qa = "pitr" }'))
    assert "migrations.backup" in problems(release_toml(tmp_path, '"wal-g"'))


def test_a_pitr_deploy_checks_archiving_first_and_takes_a_pgbackrest_backup_not_a_dump(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = sandbox_services(tmp_path, monkeypatch)
    services.config = services.config.model_copy(update={"migrations": services.config.migrations.model_copy(
        update={"backup": {"production": "pitr"}})})
    engine = services.pitr("production")
    before = {b.label for b in engine.info().backups}
    dumps = len(list_backups(services, "production"))
    result, events, _ = run(services, "migrate", "production", reason="sandbox drill", typed="production")
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert steps(events)[:3] == ["archiving", "lint", "backup"]
    made = [b for b in engine.info().backups if b.label not in before]
    assert [b.type for b in made] == ["incr"]
    done = finished(events)
    assert done["archiving"].detail == "archiving works"
    assert done["backup"].detail == f"pgBackRest incr backup {made[0].label}"
    assert done["apply"].detail == "2 applied"
    assert len(list_backups(services, "production")) == dumps  # no pg_dump taken
    # The other environments keep the dump.
    staging = [step.id for step in build_operation(services, "migrate", "staging", {}).steps]
    assert staging[:2] == ["lint", "backup"] and "archiving" not in staging
