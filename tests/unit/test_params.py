"""A parameter's default and where it comes from (issue 20): one resolver that the TUI's form, the
CLI's --help and the operation's builder all read, so they cannot disagree."""

from __future__ import annotations

from pathlib import Path

import pytest

from services import factory
from services.catalog import all_actions, build_operation
from services.core.actions import Param, config_value, shown
from services.core.config import CanaryPolicy, RecoveryPolicy, ReleaseConfig

TRIES = Param("health_tries", "health-check tries", from_config="recovery.health_tries")


@pytest.fixture
def config() -> ReleaseConfig:
    """The sandbox's config with recovery and canary values that no default has."""
    loaded = factory.load_config(None, True)
    return loaded.model_copy(update={"recovery": RecoveryPolicy(health_tries=7, health_interval_s=2.5),
                                     "canary": CanaryPolicy(weight_percent=15)})


def test_a_config_sourced_default_is_read_from_the_loaded_config(config: ReleaseConfig) -> None:
    assert TRIES.default_for(config) == "7"
    assert TRIES.value({}, config) == TRIES.value({"health_tries": ""}, config) == "7"
    assert TRIES.value({"health_tries": "3"}, config) == "3"  # given wins
    assert TRIES.hint(config) == TRIES.placeholder(config) == "default 7, from recovery.health_tries"


def test_without_a_config_the_hint_names_the_source_without_a_value() -> None:
    assert TRIES.hint(None) == "default from recovery.health_tries"
    assert TRIES.value({}, None) == ""


@pytest.mark.parametrize(("param", "placeholder"), [
    (Param("batch_size", "rows per batch", "1000"), "default 1000"),
    (Param("backup_id", "the backup", default_is="the newest complete backup"), "default: the newest complete backup"),
    (Param("table", "the table", required=True, example="Ingredient"), "required, e.g. Ingredient"),
    (Param("replicas", "how many", required=True), "required"),
    (Param("type", "its type (needed to expand)", example="timestamp(3)"), "e.g. timestamp(3)"),
    (Param("applied", "mark it applied"), "optional"),
])
def test_a_placeholder_says_the_default_or_what_is_asked_never_the_name(param: Param, placeholder: str) -> None:
    assert param.placeholder(None) == placeholder


def test_config_values_read_as_a_flag_would_be_typed() -> None:
    assert [shown(v) for v in (10.0, 0.5, 30, True, ["a", "b"])] == ["10", "0.5", "30", "true", "a,b"]


def test_a_path_that_names_no_setting_is_an_error_naming_it(config: ReleaseConfig) -> None:
    with pytest.raises(ValueError, match="'recovery.health_trys' names no config setting"):
        config_value(config, "recovery.health_trys")


@pytest.mark.parametrize("path", [None, "examples/food-management/release.toml"])
def test_every_declared_source_names_a_setting(path: str | None) -> None:
    """A misspelt from_config would only show when someone opens that form: every one is read here."""
    root = Path(__file__).resolve().parents[2]
    config = factory.load_config(str(root / path) if path else None, True)
    sourced = [p for spec in all_actions().values() for p in spec.params if p.from_config]
    assert {p.name for p in sourced} >= {"health_tries", "health_interval_s", "weight"}
    for param in sourced:
        assert param.default_for(config) == shown(config_value(config, param.from_config)) != ""


def test_every_param_of_every_action_has_a_placeholder_other_than_a_name() -> None:
    config = factory.load_config(None, True)
    for kind, spec in all_actions().items():
        names = {p.name for p in spec.params}
        for param in spec.params:
            assert param.placeholder(config) not in names | {""}, (kind, param.name)


def test_the_builders_run_with_the_default_the_form_shows(config: ReleaseConfig, tmp_path: Path) -> None:
    services = factory.build(config, sandbox_mode=True, state=tmp_path)
    try:
        restore = build_operation(services, "restore", "staging", {})
        assert dict((s.id, s.title) for s in restore.steps)["health"].endswith("(7 tries, 2.5s apart)")
        given = build_operation(services, "restore", "staging", {"health_tries": "3"})
        assert dict((s.id, s.title) for s in given.steps)["health"].endswith("(3 tries, 2.5s apart)")
        start = build_operation(services, "canary-start", "staging", {"version": "1.5.0"})
        assert any(step.title.endswith("at 15%") for step in start.steps), [s.title for s in start.steps]
    finally:
        services.close()
