"""The progressive canary in the sandbox: each step sets its weight, holds it for its pause while
the rules check it, and goes on only on a pass; the bad release stops and rolls back at its step;
a resume continues at the journaled step; bad steps are refused with the field named."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from rig.opkit import finished, logs, run, sandbox_services

from console import cli
from services.canary import trace
from services.canary.rollout import ladder
from services.catalog import build_operation
from services.core.config import CanaryPolicy, CanaryStep, ConfigError
from services.core.container import Services
from services.core.events import CanaryStepChanged, Event, Outcome
from services.factory import EXAMPLE_CONFIG, load_config

STEPS = {"steps": "10,25,50", "pause": "5m"}  # 10 checks a step at the strategy's 30 s: min_samples 10


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    return sandbox_services(tmp_path, monkeypatch)


def weights_set(services: Services, env: str) -> list[str]:
    assert services.world is not None
    return [e for e in services.world.envs[env].events if re.fullmatch(r"canary weight \d+%", e)]


def ladder_events(events: list[Event]) -> list[tuple[int, str]]:
    return [(e.index, e.status) for e in events if isinstance(e, CanaryStepChanged)]


def test_a_good_version_advances_through_three_steps_then_is_promoted(services: Services) -> None:
    result, events, _ = run(services, "canary", "staging", {"version": "1.4.2", **STEPS}, typed="yes")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert weights_set(services, "staging") == ["canary weight 10%", "canary weight 25%", "canary weight 50%"]
    assert ladder_events(events) == [(0, "running"), (0, "passed"), (1, "running"), (1, "passed"),
                                     (2, "running"), (2, "passed")]
    assert finished(events)["monitor"].detail.startswith("3 steps passed (10% → 25% → 50%); last: 10 checks passed")
    assert services.world is not None and services.world.envs["staging"].version == "1.4.2"
    assert services.world.envs["staging"].canary_version is None
    assert services.revisions("staging").list()[-1].action == "promote"
    # Each step checked the observed share against its own weight, and judged its own 10 checks.
    entries = trace.entries(services.journal.get(result.op_id))
    shares = [(e.check, e.threshold, e.verdict) for e in entries if e.rule == "traffic_share"]
    assert [threshold for _, threshold, _ in shares] == [10.0] * 10 + [25.0] * 10 + [50.0] * 10
    assert {verdict for _, _, verdict in shares} == {"ok"}
    judged = [e for e in entries if e.rule == "judge" and e.check in (10, 20, 30)]
    assert [e.verdict for e in judged] == ["pass"] * 3
    assert any(t.startswith("step 2/3 (25%) passed: 10 checks passed; judge PASS") for t, _ in
               logs(events, "monitor"))


def test_a_bad_version_stops_and_rolls_back_at_its_step(services: Services) -> None:
    result, events, asked = run(services, "canary", "staging", {"version": "1.5.0", **STEPS}, typed="yes")

    assert result.outcome is Outcome.FAILED and result.failed_step == "monitor"
    assert result.detail.startswith("rolled back at check 6 in step 1/3 (10%): error_rate: "), result.detail
    assert weights_set(services, "staging") == ["canary weight 10%"]  # never 25
    assert ladder_events(events) == [(0, "running"), (0, "rolled back")]
    assert services.world is not None and services.world.envs["staging"].canary_version is None
    assert services.world.envs["staging"].version != "1.5.0"
    assert any("automatic rollback" in n for n in services.world.notifications)
    assert not any("Promote" in q.prompt for q in asked)  # stopped before the promotion was ever asked


def test_a_version_that_turns_bad_later_rolls_back_at_that_step(services: Services) -> None:
    """The judge at the end of step 1 passes it; 1.5.0's errors grow, and step 2 rolls it back."""
    metrics = services.config.metrics.model_copy(update={"min_samples": 3, "judge_samples": 3})
    canary = services.config.canary.model_copy(update={"automation": {
        **services.config.canary.automation, "judge": "observe"}})
    services.config = services.config.model_copy(update={"metrics": metrics, "canary": canary})
    result, events, _ = run(services, "canary", "staging", {"version": "1.5.0", "steps": "10,25,50",
                                                            "pause": "90s"}, typed="yes")

    assert result.outcome is Outcome.FAILED and result.failed_step == "monitor"
    assert result.detail.startswith("rolled back at check 6 in step 2/3 (25%): error_rate: "), result.detail
    assert weights_set(services, "staging") == ["canary weight 10%", "canary weight 25%"]  # never 50
    assert ladder_events(events) == [(0, "running"), (0, "passed"), (1, "running"), (1, "rolled back")]
    assert services.world is not None and services.world.envs["staging"].canary_version is None


def test_not_enough_data_at_the_end_of_a_step_stops_there_clearly(services: Services) -> None:
    result, events, _ = run(services, "canary", "staging", {"version": "1.4.2", "steps": "10,25",
                                                            "pause": "2m"}, typed="yes")

    assert result.outcome is Outcome.FAILED and result.failed_step == "monitor"
    assert result.detail.startswith("stopped at step 1/2 (10%): not advanced: not enough data"), result.detail
    assert weights_set(services, "staging") == ["canary weight 10%"]
    assert services.world is not None and services.world.envs["staging"].canary_weight == 10  # left as it was


def test_a_resume_continues_at_the_journaled_step(services: Services) -> None:
    cancel = threading.Event()

    def stop_in_step_two(event: Event) -> None:
        if isinstance(event, CanaryStepChanged) and (event.index, event.status) == (1, "running"):
            cancel.set()  # as ctrl+x would: the next wait raises

    params = {"version": "1.4.2", **STEPS}
    first = services.runner.run(build_operation(services, "canary", "staging", params),
                                stop_in_step_two, lambda q: "yes", cancel)
    assert first.outcome is Outcome.CANCELLED, first.detail
    record = services.journal.get(first.op_id)
    assert (record.state["step"], record.state["checks_done"]) == (1, 10)

    events: list[Event] = []
    resumed = services.runner.run(build_operation(services, "canary", "staging", dict(record.params)),
                                  events.append, lambda q: "yes", start_at=record.resume_index, state=record.state)

    assert resumed.outcome is Outcome.SUCCEEDED, resumed.detail
    assert ladder_events(events)[0] == (1, "running")  # not back at 10 %
    assert weights_set(services, "staging") == ["canary weight 10%", "canary weight 25%", "canary weight 25%",
                                                "canary weight 50%"]
    assert any(t.startswith("resumed at step 2/3 (25%)") for t, _ in logs(events, "monitor"))
    before = {e.check for e in trace.entries(record)}
    after = {e.check for e in trace.entries(services.journal.get(resumed.op_id))} - before
    assert (before, after) == (set(range(1, 11)), set(range(11, 31)))  # every check once: none again, none skipped


def test_the_default_is_the_strategys_single_step() -> None:
    policy = CanaryPolicy()
    assert ladder(policy, {}) == [CanaryStep(weight=10, pause=1800)]
    assert ladder(policy, {"steps": "10,25,50", "pause": "5m"}) == [
        CanaryStep(weight=10, pause=300), CanaryStep(weight=25, pause=300), CanaryStep(weight=50, pause=300)]
    configured = CanaryPolicy(steps=[CanaryStep(weight=5, pause="1m"), CanaryStep(weight=20, pause="1h")])
    assert ladder(configured, {"steps": "10,30,60"}) == [  # the configured pauses, the last one repeated
        CanaryStep(weight=10, pause=60), CanaryStep(weight=30, pause=3600), CanaryStep(weight=60, pause=3600)]
    assert ladder(configured, {"pause": "30s"}) == [CanaryStep(weight=5, pause=30), CanaryStep(weight=20, pause=30)]


def write_config(tmp_path: Path, steps: str) -> Path:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8").replace(
        "[canary]\n", f"[canary]\nsteps = {steps}\n", 1)
    path = tmp_path / "release.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("steps", "said"), [
    ('[{weight = 10, pause = "5m"}, {weight = 25, pause = "5m"}, {weight = 50, pause = "10m"}]', ""),
    ('[{weight = 10, pause = "5 minutes"}]', "canary.steps.0.pause: Value error, a duration is a whole number"),
    ('[{weight = 25, pause = "5m"}, {weight = 10, pause = "5m"}]',
     "canary.steps: Value error, step 2: weights must increase strictly, got 25 then 10"),
    ('[{weight = 0, pause = "5m"}]', "canary.steps.0.weight: Input should be greater than or equal to 1"),
    ('[{weight = 101, pause = "5m"}]', "canary.steps.0.weight: Input should be less than or equal to 100"),
    ('[{weight = 10, pause = "10s"}]', "step 1 (10%) pauses 10s, less than check_interval_s (30s)"),
    ('[{weight = 10}]', "canary.steps.0.pause: Field required"),
])
def test_steps_in_release_toml_are_checked_with_the_field_named(tmp_path: Path, steps: str, said: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = write_config(tmp_path, steps)
    if not said:
        config = load_config(str(path), True, {})
        assert [(s.weight, s.pause) for s in config.canary.ladder] == [(10, 300), (25, 300), (50, 600)]
        return
    with pytest.raises(ConfigError) as raised:
        load_config(str(path), True, {})
    assert said in str(raised.value)


@pytest.mark.parametrize(("flags", "said"), [
    (["--steps", "10,25,25"], "step 3: weights must increase strictly, got 25 then 25"),
    (["--steps", "10,ten"], "--steps takes whole percentages, comma-separated"),
    (["--steps", "10,25", "--pause", "5 min"], "a duration is a whole number of seconds, minutes or hours"),
    (["--steps", "10,25", "--pause", "5s"], "step 1 (10%) pauses 5s, less than canary.check_interval_s (30s)"),
])
def test_bad_steps_on_the_command_line_are_refused_before_anything_starts(
        flags: list[str], said: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    code = cli.main(["--sandbox", "canary", "run", "--env", "staging", "--version", "1.4.2", "--yes", *flags])
    assert code == cli.EXIT_USAGE
    assert said in capsys.readouterr().err


def test_the_command_line_runs_the_steps(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    code = cli.main(["--sandbox", "--time-scale", "3000", "canary", "run", "--env", "staging", "--version",
                     "1.4.2", "--steps", "10,25,50", "--pause", "5m", "--yes"])
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK, out
    assert "3 steps passed (10% → 25% → 50%)" in out


@pytest.mark.parametrize("then", ["promote", "abort"])
def test_a_canary_paused_at_any_step_can_be_promoted_or_aborted(services: Services, then: str) -> None:
    cancel = threading.Event()

    def stop_in_step_three(event: Event) -> None:
        if isinstance(event, CanaryStepChanged) and (event.index, event.status) == (2, "running"):
            cancel.set()

    assert services.world is not None
    stable = services.world.envs["staging"].version
    assert stable != "1.5.0-rc.1"
    paused = services.runner.run(build_operation(services, "canary", "staging", {"version": "1.5.0-rc.1", **STEPS}),
                                 stop_in_step_three, lambda q: "yes", cancel)
    assert paused.outcome is Outcome.CANCELLED
    assert services.world.envs["staging"].canary_weight == 50

    result, _, _ = run(services, then, "staging", {}, typed="yes")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    staging = services.world.envs["staging"]
    assert staging.canary_version is None
    assert staging.version == ("1.5.0-rc.1" if then == "promote" else stable)
