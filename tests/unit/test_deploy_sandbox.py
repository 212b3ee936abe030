"""Deploy, rollback, history and canary steering in the sandbox: plan before apply, the
confirmations, the revisions recorded, the rollback warning, dry runs and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rig.opkit import IMAGE, env_state, finished, logs, run, sandbox_services, steps

from console import cli
from services.catalog import build_operation
from services.core.container import Services
from services.core.events import Event, Finished, Outcome
from services.core.ports import BuiltImage
from services.release.deploy import HEALTH_TRIES
from services.sandbox.adapters import SandboxHealth


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    return sandbox_services(tmp_path, monkeypatch)



def test_deploy_plans_confirms_applies_records_and_health_checks(services: Services) -> None:
    result, events, asked = run(services, "deploy", "staging", {"version": "1.5.0"}, typed="yes")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert steps(events) == ["resolve", "plan", "confirm", "apply", "record", "health"]
    digest = services.registry.digest(f"{IMAGE}:1.5.0")
    assert digest is not None and finished(events)["resolve"].detail == f"{IMAGE}:1.5.0 {digest[:19]}"
    assert [q.prompt for q in asked] == [
        f"Deploy {IMAGE}:1.5.0 in staging?\nPlan: update replicas image; runs 1.5.0 at {digest[:19]}"]
    plan = [text for text, _ in logs(events, "plan")]
    assert f"    -image: {IMAGE}:1.4.2" in plan and f"    +image: {IMAGE}:1.5.0@{digest}" in plan
    assert plan[-1] == f"runs {IMAGE}:1.5.0 at {digest}"
    assert env_state(services, "staging").version == "1.5.0"
    revision = services.revisions("staging").list()[-1]
    assert (revision.number, revision.image, revision.action) == (4, f"{IMAGE}:1.5.0", "deploy")
    assert revision.digest == services.registry.digest(f"{IMAGE}:1.5.0") and revision.digest.startswith("sha256:")
    assert revision.migration_head == "20240815093000_rename_qty_to_quantity"  # staging's newest applied
    assert revision.backup_id is not None and revision.who


def health(services: Services, env: str) -> SandboxHealth:
    checker = services.health(env)
    assert isinstance(checker, SandboxHealth)
    return checker


def health_lines(events: list[Event]) -> list[tuple[str, str]]:
    return [(text, level) for text, level in logs(events, "health") if not text.startswith("GET ")]


def test_health_compares_the_reported_version_and_waits_for_it_within_its_tries(services: Services) -> None:
    result, events, _ = run(services, "deploy", "staging", {"version": "1.5.0"}, typed="yes")
    assert finished(events)["health"].detail == "200 OK, version 1.5.0" and health_lines(events) == []

    health(services, "staging").reports = ["1.5.0", "1.5.0"]  # traffic reaches 1.6.0 at the third try
    services.world.images[f"{IMAGE}:1.6.0"] = "sha256:" + "6" * 64  # type: ignore[union-attr]
    result, events, _ = run(services, "deploy", "staging", {"version": "1.6.0"}, typed="yes")
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert health_lines(events) == [("health answers 200 but reports version 1.5.0, expected 1.6.0", "warning")] * 2
    assert finished(events)["health"].detail == "200 OK, version 1.6.0"


def test_a_deploy_that_never_switched_versions_fails_its_health_step(services: Services) -> None:
    health(services, "staging").reports = ["1.4.2"] * HEALTH_TRIES  # the old version, every try
    result, events, _ = run(services, "deploy", "staging", {"version": "1.5.0"}, typed="yes")

    assert result.outcome is Outcome.FAILED and result.failed_step == "health"
    assert result.detail == f"health answers 200 but reports version 1.4.2, expected 1.5.0 after {HEALTH_TRIES} tries"
    assert len(health_lines(events)) == HEALTH_TRIES
    assert health(services, "staging").reports == []  # every try asked


def test_a_health_body_without_a_version_is_a_warning_not_a_failure(services: Services) -> None:
    health(services, "staging").reports = [""]
    result, events, _ = run(services, "deploy", "staging", {"version": "1.5.0"}, typed="yes")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert health_lines(events) == [
        ("health answers 200 but reports no version: it could not be compared with 1.5.0", "warning")]
    assert finished(events)["health"].detail == "200 OK; no version reported, not compared with 1.5.0"


def test_production_deploy_needs_the_name_typed_once(services: Services) -> None:
    result, _, asked = run(services, "deploy", "production", {"version": "1.5.0"}, typed="yes")
    assert result.outcome is Outcome.DECLINED  # "yes" is not the name
    assert env_state(services, "production").version == "1.4.1"

    result, events, asked = run(services, "deploy", "production", {"version": "1.5.0"}, typed="production")
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert [q.expected for q in asked] == ["production"]  # one typed confirmation, not two
    assert steps(events).index("confirm") == steps(events).index("apply") - 1


def test_an_image_missing_from_the_registry_changes_nothing(services: Services) -> None:
    result, events, asked = run(services, "deploy", "staging", {"version": "9.9.9"}, typed="yes")

    assert result.outcome is Outcome.FAILED and result.failed_step == "resolve"
    assert result.detail == f"{IMAGE}:9.9.9 is not in the registry"
    assert asked == [] and list(finished(events)) == ["resolve"]
    assert len(services.revisions("staging").list()) == 3


def test_dry_run_shows_the_plan_and_applies_nothing(services: Services) -> None:
    result, events, asked = run(services, "deploy", "production", {"version": "1.5.0", "dry_run": True})

    assert result.outcome is Outcome.SUCCEEDED
    assert steps(events) == ["resolve", "plan"] and asked == []
    assert result.detail == "2 steps done"
    assert env_state(services, "production").version == "1.4.1"
    assert len(services.revisions("production").list()) == 3


def test_rollback_defaults_to_the_previous_image_and_records_it(services: Services) -> None:
    run(services, "deploy", "staging", {"version": "1.5.0"}, typed="yes")
    result, events, _ = run(services, "rollback", "staging", typed="yes")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    digest = services.registry.digest(f"{IMAGE}:1.4.2")
    assert digest is not None and finished(events)["choose"].detail == f"revision 3: {IMAGE}:1.4.2 at {digest[:19]}"
    assert env_state(services, "staging").version == "1.4.2"
    latest = services.revisions("staging").list()[-1]
    assert (latest.number, latest.image, latest.action) == (5, f"{IMAGE}:1.4.2", "rollback")


def repush(services: Services, tag: str) -> str:
    """The tag pushed again with other bits: the registry keeps the old manifest, by its digest."""
    built = BuiltImage("sha256:" + "e" * 64, 1, 1, (f"{IMAGE}:{tag}",))
    return services.registry.push(built, lambda done, total: None, lambda line: None)


def next_options(events: list[Event]) -> tuple[str, ...]:
    return next(e for e in events if isinstance(e, Finished)).next_options


def test_a_rollback_runs_the_digest_recorded_not_what_the_tag_names_now(services: Services) -> None:
    run(services, "deploy", "staging", {"version": "1.5.0"}, typed="yes")
    first = services.revisions("staging").list()[-1].digest
    second = repush(services, "1.5.0")
    assert second != first and services.registry.digest(f"{IMAGE}:1.5.0") == second
    run(services, "deploy", "staging", {"version": "1.5.0"}, typed="yes")
    assert services.revisions("staging").list()[-1].digest == second

    result, events, _ = run(services, "rollback", "staging", typed="yes")  # the same tag, other bits: revision 4
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert finished(events)["choose"].detail == f"revision 4: {IMAGE}:1.5.0 at {first[:19]}"
    assert f"    +image: {IMAGE}:1.5.0@{first}" in [text for text, _ in logs(events, "plan")]
    latest = services.revisions("staging").list()[-1]
    assert (latest.number, latest.image, latest.digest, latest.action) == (6, f"{IMAGE}:1.5.0", first, "rollback")


def test_a_rollback_whose_digest_is_gone_from_the_registry_changes_nothing(services: Services) -> None:
    run(services, "deploy", "staging", {"version": "1.5.0"}, typed="yes")
    gone = services.revisions("staging").list()[2]
    assert services.world is not None
    with services.world.lock:  # garbage-collected: neither the tag nor the manifest is left
        del services.world.images[f"{IMAGE}:1.4.2"], services.world.images[f"{IMAGE}@{gone.digest}"]

    result, events, asked = run(services, "rollback", "staging", {"revision": "3"}, typed="yes")
    assert result.outcome is Outcome.FAILED and result.failed_step == "choose" and asked == []
    assert result.detail == (f"revision 3's image {IMAGE}:1.4.2 at {gone.digest} is no longer in the registry"
                             " (deleted or garbage-collected); a rollback runs the recorded digest, never the tag,"
                             " so nothing was changed")
    earlier = services.revisions("staging").list()[1]
    assert next_options(events) == (
        f"roll back to revision 2 instead (1.4.0 at {earlier.digest[:19]}): release-console rollback --env staging"
        " --revision 2",
        "or deploy the tag as the registry has it today: release-console deploy --env staging --version 1.4.2")
    assert env_state(services, "staging").version == "1.5.0" and len(services.revisions("staging").list()) == 4


def test_a_rollback_to_a_revision_recorded_without_a_digest_is_refused(services: Services) -> None:
    services.revisions("staging").record(f"{IMAGE}:1.4.0", "", "an older console", None, None, "deploy")
    run(services, "deploy", "staging", {"version": "1.5.0"}, typed="yes")

    result, events, _ = run(services, "rollback", "staging", {"revision": "4"}, typed="yes")
    assert result.outcome is Outcome.FAILED and result.failed_step == "choose"
    assert result.detail.startswith(f"revision 4 ({IMAGE}:1.4.0) was recorded without a digest")
    assert next_options(events)[-1].endswith("release-console deploy --env staging --version 1.4.0")
    assert [o.split(" instead")[0] for o in next_options(events)[:-1]] == ["roll back to revision 3"]
    assert env_state(services, "staging").version == "1.5.0" and len(services.revisions("staging").list()) == 5


def test_a_promote_runs_the_canarys_digest_when_its_tag_moved_on(services: Services) -> None:
    run(services, "canary-start", "staging", {"version": "1.5.0"}, typed="yes")
    started = services.registry.digest(f"{IMAGE}:1.5.0")
    assert started is not None and repush(services, "1.5.0") != started

    promoted, events, _ = run(services, "promote", "staging", typed="yes")
    assert promoted.outcome is Outcome.SUCCEEDED, promoted.detail
    assert f"    +image: {IMAGE}:1.5.0@{started}" in [text for text, _ in logs(events, "plan")]
    latest = services.revisions("staging").list()[-1]
    assert (latest.image, latest.digest, latest.action) == (f"{IMAGE}:1.5.0", started, "promote")


def test_rollback_past_a_breaking_migration_warns_and_needs_a_reason(services: Services) -> None:
    reason = "1.4.x corrupts orders; 1.3.9 ignores the dropped column"
    result, events, asked = run(services, "rollback", "production", {"revision": "1"}, reason=reason,
                                typed="production")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    warnings = [text for text, _ in logs(events, "choose") if text.startswith("WARNING")]
    assert warnings == ['WARNING 20240618160000_recipe_tags: dropping-column: ALTER TABLE "Recipe" DROP COLUMN '
                        '"legacyTags"']
    assert "predates 1 non-backward-compatible change(s)" in finished(events)["choose"].detail
    assert [q.free_text for q in asked] == [True, False]
    assert services.audit.tail(1)[0]["override_reason"] == reason
    assert env_state(services, "production").version == "1.3.9"


def test_rollback_past_a_breaking_migration_without_a_reason_changes_nothing(services: Services) -> None:
    result, _, _ = run(services, "rollback", "production", {"revision": "1"}, reason=None, typed="production")
    assert result.outcome is Outcome.DECLINED and result.failed_step == "choose"
    assert env_state(services, "production").version == "1.4.1"


def test_rollback_to_an_unknown_revision_names_the_known_ones(services: Services) -> None:
    result, _, _ = run(services, "rollback", "staging", {"revision": "42"}, typed="yes")
    assert result.outcome is Outcome.FAILED
    assert result.detail == "staging has no revision 42; known: 1, 2, 3"


def test_canary_start_step_promote(services: Services) -> None:
    started, events, asked = run(services, "canary-start", "staging", {"version": "1.5.0"}, typed="yes")
    assert started.outcome is Outcome.SUCCEEDED, started.detail
    assert steps(events) == ["resolve", "plan", "confirm", "apply"]
    digest = services.registry.digest(f"{IMAGE}:1.5.0")
    assert digest is not None
    assert asked[0].prompt.endswith(
        f"Plan: update replicas canary, update replicas weight; runs 1.5.0 at {digest[:19]}")
    assert env_state(services, "staging").canary_image == f"{IMAGE}:1.5.0@{digest}"
    assert (env_state(services, "staging").canary_version, env_state(services, "staging").canary_weight) == (
        "1.5.0", 10)

    stepped, events, _ = run(services, "step", "staging", {"weights": "25,50", "pause_s": "1"}, typed="yes")
    assert stepped.outcome is Outcome.SUCCEEDED, stepped.detail
    assert [t for t, _ in logs(events, "apply") if "weight set" in t] == [
        "canary weight set to 25%", "canary weight set to 50%"]
    assert env_state(services, "staging").canary_weight == 50

    promoted, events, _ = run(services, "promote", "staging", typed="yes")
    assert promoted.outcome is Outcome.SUCCEEDED, promoted.detail
    assert steps(events) == ["plan", "confirm", "apply", "record", "health"]
    state = env_state(services, "staging")
    assert (state.version, state.canary_version, state.canary_weight) == ("1.5.0", None, 0)
    assert services.revisions("staging").list()[-1].action == "promote"


def test_promote_and_step_without_a_canary_say_so(services: Services) -> None:
    for kind in ("promote", "step"):
        result, _, _ = run(services, kind, "staging", typed="yes")
        assert result.outcome is Outcome.FAILED, kind
        assert result.detail == "staging has no canary running", kind


def test_scale_and_abort(services: Services) -> None:
    scaled, _, _ = run(services, "scale", "staging", {"replicas": "4"}, typed="yes")
    assert scaled.outcome is Outcome.SUCCEEDED and env_state(services, "staging").desired == 4
    run(services, "canary-start", "staging", {"version": "1.5.0", "weight": "20"}, typed="yes")
    aborted, _, asked = run(services, "abort", "staging", typed="yes")
    assert aborted.outcome is Outcome.SUCCEEDED
    assert asked[0].prompt.startswith("Abort the canary in staging?")
    assert (env_state(services, "staging").canary_version, env_state(services, "staging").canary_weight) == (None, 0)


@pytest.mark.parametrize(("kind", "params", "message"), [
    ("deploy", {}, "no version given: pass --version TAG (or a full image reference)"),
    ("canary-start", {"version": "1.5.0", "weight": "150"}, "a weight is a percentage 0-100, got 150"),
    ("step", {"weights": "10,lots"}, "a weight is a whole percentage 0-100, got 'lots'"),
    ("scale", {"replicas": "0"}, "replicas must be at least 1, got 0"),
    ("scale", {"replicas": "many"}, "replicas must be a whole number, got 'many'"),
])
def test_bad_input_is_refused_before_anything_starts(services: Services, kind: str, params: dict[str, str],
                                                    message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        build_operation(services, kind, "staging", params)


def test_cli_history_json_and_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cli.main(["--sandbox", "--json", "history", "--env", "production"]) == cli.EXIT_OK
    history = json.loads(capsys.readouterr().out)
    assert [(r["number"], r["image"]) for r in history] == [
        (1, f"{IMAGE}:1.3.9"), (2, f"{IMAGE}:1.4.0"), (3, f"{IMAGE}:1.4.1")]

    assert cli.main(["--sandbox", "scale", "--env", "staging", "--replicas", "0", "--yes"]) == cli.EXIT_USAGE
    assert "error: replicas must be at least 1" in capsys.readouterr().err

    assert cli.main(["--sandbox", "rollback", "--env", "production", "--dry-run"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert f"+image: {IMAGE}:1.4.0" in out and "SUCCEEDED: 2 steps done" in out
