"""Dependency health over the sandbox world: thresholds from [health], the command's exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rig.opkit import IMAGE, env_state, finished, logs, run, sandbox_services
from test_config import ENV, example_with, load_error

from console import cli
from services.core import config
from services.core.events import Outcome, StepFinished
from services.core.ports import Reading
from services.environments.health import HealthBoard, check, judge
from services.factory import EXAMPLE_CONFIG, build, load_config


def test_the_example_sets_the_health_thresholds() -> None:
    health = config.load(EXAMPLE_CONFIG, ENV).health
    assert (health.interval_s, health.timeout_s) == (10, 2)
    assert health.threshold("redis", "memory_percent") == config.HealthConfig().redis.memory_percent
    assert health.threshold("redis", "no_such_metric") is None


def test_a_fail_below_its_warn_is_refused(tmp_path: Path) -> None:
    err = load_error(example_with(tmp_path, "redis.memory_percent = { warn = 80, fail = 95 }",
                                  "redis.memory_percent = { warn = 80, fail = 70 }"))
    assert "health.redis.memory_percent" in str(err) and "must not be below warn" in str(err)


def test_an_unknown_health_key_is_refused(tmp_path: Path) -> None:
    err = load_error(example_with(tmp_path, "interval_s = 10", "intervall_s = 10"))
    assert "health.intervall_s" in str(err)


def test_each_reading_is_judged_against_its_pair() -> None:
    settings = config.HealthConfig()
    slow = judge(Reading("api", True, numbers={"latency_ms": 2500.0}), settings)
    assert (slow.status, slow.reasons) == ("fail", ("latency_ms 2500 >= fail 2000",))
    assert judge(Reading("api", True, numbers={"latency_ms": 499.0}), settings).status == "ok"
    gone = judge(Reading("redis", False, error="127.0.0.1:1: Connection refused"), settings)
    assert (gone.status, gone.reasons) == ("fail", ("unreachable: 127.0.0.1:1: Connection refused",))


def test_the_sandbox_staging_redis_warns_and_the_board_keeps_a_short_history(tmp_path: Path) -> None:
    services = build(load_config(None, True, {}), sandbox_mode=True, state=tmp_path)
    board = HealthBoard(size=3)
    for _ in range(5):
        board.add(check(services, "staging"))
    latest = board.latest["staging"]
    assert latest.status == "warn" and latest.summary() == "api:ok postgres:ok redis:warn"
    assert [c.reasons for c in latest.checks if c.dependency == "redis"] == [("memory_percent 83.5 >= warn 80",)]
    assert len(board.history("staging", "redis")) == 3 and board.history("staging", "nowhere") == []


def test_the_health_command_exits_1_unless_all_is_ok(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cli.main(["--sandbox", "health", "--env", "production", "--json"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)[0]["status"] == "ok"
    assert cli.main(["--sandbox", "health"]) == cli.EXIT_FAILED
    text = capsys.readouterr().out
    assert "staging: WARN" in text and "! memory_percent 83.5 >= warn 80" in text


def test_a_deploy_onto_a_failing_dependency_names_it_in_its_question(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    services = sandbox_services(tmp_path, monkeypatch)
    services.probes("staging").down.add("redis")  # type: ignore[attr-defined]
    result, events, asked = run(services, "deploy", "staging", {"version": "1.5.0"}, typed=None)
    assert result.outcome is Outcome.DECLINED and env_state(services, "staging").version == "1.4.2"
    [question] = asked
    assert question.prompt.startswith(f"Deploy {IMAGE}:1.5.0 in staging?\nPlan: ")
    assert question.prompt.endswith("\nFAILING dependency: redis (unreachable: sandbox-redis:1: Connection refused)."
                                    " The new version may not start healthy.")
    services.probes("staging").down.clear()  # type: ignore[attr-defined]
    _, _, asked = run(services, "deploy", "staging", {"version": "1.5.0"}, typed=None)
    assert "FAILING" not in asked[0].prompt


def test_the_recovery_walkthrough_validates_the_dependencies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = sandbox_services(tmp_path, monkeypatch)
    services.probes("production").down.add("postgres")  # type: ignore[attr-defined]
    result, events, _ = run(services, "restore", "production", {"health_tries": "3", "health_interval_s": "1"},
                            typed="production")
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert finished(events)["validate"].detail == "config, database ok; FAILING postgres"
    assert any("failing dependency: postgres (unreachable" in text for text, _ in logs(events, "validate"))


def test_an_answer_that_is_not_ok_fails_as_failing_not_unreachable() -> None:
    answered = judge(Reading("api", False, numbers={"latency_ms": 3.0}, error="answers 500: boom"),
                     config.HealthConfig())
    assert (answered.status, answered.reasons) == ("fail", ("failing: answers 500: boom",))


@pytest.mark.parametrize(("kind", "env", "params"), [
    ("rollback", "staging", {}),
    ("release", "production", {}),
    ("canary", "production", {"version": "1.4.2"}),
    ("release", "staging", {}),
    ("canary", "development", {"version": "1.4.2"}),
])
def test_rollback_and_releases_and_canaries_name_a_failing_dependency_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, env: str, params: dict[str, str]) -> None:
    services = sandbox_services(tmp_path, monkeypatch)
    services.probes(env).down.add("postgres")  # type: ignore[attr-defined]
    result, _, asked = run(services, kind, env, params, typed=None)
    assert result.outcome is Outcome.DECLINED, result.detail
    assert "\nFAILING dependency: postgres (unreachable" in asked[-1].prompt, asked[-1].prompt


@pytest.mark.parametrize(("kind", "env", "params"), [
    ("release", "staging", {}),
    ("canary", "development", {"version": "1.4.2"}),
])
def test_outside_production_a_release_or_canary_asks_only_when_a_dependency_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, env: str, params: dict[str, str]) -> None:
    services = sandbox_services(tmp_path, monkeypatch)
    result, events, asked = run(services, kind, env, params, typed=None)
    # The canary's promotion asks as it always did, at its end: nothing else asks.
    assert [q.prompt.split("?")[0] for q in asked] == (["Promote the canary to stable in development"]
                                                        if kind == "canary" else [])
    first_confirm = next(e for e in events if isinstance(e, StepFinished) and e.step_id == "confirm")
    assert first_confirm.detail == "PostgreSQL and Redis answer: nothing to ask outside production"
    # A release goes through; the canary stops at its promotion, declined by this test's answer.
    assert result.outcome is (Outcome.SUCCEEDED if kind == "release" else Outcome.DECLINED), result.detail


def test_what_a_probe_read_is_masked_before_any_face_shows_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The detail screen writes no masking stream: check() masks a reading's facts, version and error."""
    from rig.wiring import rewire

    from services.sandbox.probes import SandboxProbes

    planted = "pw-planted-in-a-probe-41"
    leaky = f"postgresql://app:{planted}@db:5432/food"

    class Leaky(SandboxProbes):
        def probe(self, timeout_s: float) -> list[Reading]:
            return [Reading("postgres", True, f"15.6 {leaky}", {}, (f"server {leaky}",)),
                    Reading("redis", False, error=f"cannot reach {leaky}")]

    services = sandbox_services(tmp_path, monkeypatch)
    world = services.world  # type: ignore[attr-defined]
    rewire(services, probes=lambda env: Leaky(world, env))
    shown = json.dumps(check(services, "staging").as_json())
    assert planted not in shown
    assert shown.count("**********") == 4  # the version, the fact, the error and the reason naming it
