"""The monitored canary in the sandbox: the strategy's rules, graduated automation, stale data,
the judge blocking promotion without enough data, the decision trace and `canary watch`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from rig.opkit import finished, logs, run, sandbox_services
from rig.wiring import rewire

from console import cli
from services.canary import trace
from services.canary.judge import CanaryVerdict
from services.canary.monitor import Check, add_samples, evaluate, new_samples
from services.core.config import CanaryPolicy, MetricsConfig
from services.core.container import Services
from services.core.events import MetricSample, Outcome, VerdictLogged
from services.core.ports import MetricSnapshot
from services.sandbox.world import World

BASE = {"error_rate": 0.01, "p95_ms": 200.0, "cpu_percent": 40.0, "memory_percent": 60.0}
HEALTHY = {**BASE, "requests_per_s": 90.0}


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    return sandbox_services(tmp_path, monkeypatch)


def check(canary: dict[str, float | None], stable: dict[str, float | None] | None = None,
          problems: dict[str, str] | None = None, **policy: Any) -> Check:
    snapshot = MetricSnapshot(0.0, {"canary": canary, "stable": stable or HEALTHY}, problems or {})
    return evaluate(1, snapshot, BASE, new_samples(), CanaryPolicy(**policy), MetricsConfig(), 10,
                    lambda series, metric: f"{metric}{{track={series}}}")


def with_policy(services: Services, **changes: Any) -> None:
    """The canary policy with these changes (the config is frozen, as it is when loaded)."""
    canary = services.config.canary.model_copy(update=changes)
    services.config = services.config.model_copy(update={"canary": canary})


def verdicts(result: Check) -> dict[str, tuple[str, str]]:
    return {e.rule: (e.verdict, e.action) for e in result.entries}


# --- one check ----------------------------------------------------------------------------------


def test_the_strategys_thresholds_exactly() -> None:
    at = check({"error_rate": 0.015, "p95_ms": 400.0, "cpu_percent": 80.0, "memory_percent": 85.0,
                "requests_per_s": 10.0})
    assert {r: v for r, v in verdicts(at).items() if r != "judge"} == {
        "error_rate": ("ok", "none"), "p95_ms": ("ok", "none"), "cpu_percent": ("ok", "none"),
        "memory_percent": ("ok", "none"), "traffic_share": ("ok", "none")}  # at the threshold is not over it
    over = check({"error_rate": 0.0151, "p95_ms": 401.0, "cpu_percent": 80.5, "memory_percent": 85.5,
                  "requests_per_s": 10.0})
    assert verdicts(over)["error_rate"] == ("breach", "rollback")
    assert verdicts(over)["p95_ms"] == ("breach", "rollback")
    assert verdicts(over)["cpu_percent"] == verdicts(over)["memory_percent"] == ("breach", "scale-up")
    entry = over.entries[0]
    assert (entry.value, entry.baseline, entry.threshold, entry.query) == (
        0.0151, 0.01, pytest.approx(0.015), "error_rate{track=canary}")
    assert entry.line() == "error_rate: 1.51% vs 1.50% BREACH -> rollback (act)"


def test_missing_and_nan_are_never_healthy() -> None:
    result = check({"error_rate": None, "p95_ms": math.nan, "cpu_percent": 10.0, "memory_percent": 10.0},
                   problems={"canary.error_rate": "prometheus unreachable: ConnectError"})
    assert verdicts(result)["error_rate"] == ("no data", "none")
    assert verdicts(result)["p95_ms"] == ("no data", "none")
    assert result.missing
    assert result.entries[0].line() == "error_rate: no data vs 1.50% no data [prometheus unreachable: ConnectError]"


def test_a_zero_baseline_uses_the_floor_and_the_share_is_checked() -> None:
    snapshot = MetricSnapshot(0.0, {"canary": {**HEALTHY, "error_rate": 0.0005, "requests_per_s": 40.0},
                                    "stable": HEALTHY})
    result = evaluate(1, snapshot, {**BASE, "error_rate": 0.0}, new_samples(), CanaryPolicy(), MetricsConfig(), 10,
                      lambda s, m: m)
    assert verdicts(result)["error_rate"] == ("ok", "none")  # under the 0.1 % floor
    share = next(e for e in result.entries if e.rule == "traffic_share")
    assert share.value == pytest.approx(100 * 40 / 130) and share.verdict == "off" and share.mode == "observe"


def judged_after_slow_start(judge_samples: int) -> tuple[CanaryVerdict | None, list[float | None]]:
    """30 checks of a canary whose p95 was slow for the first 18, then as fast as stable."""
    samples, settings = new_samples(), MetricsConfig(min_samples=5, judge_samples=judge_samples)
    for n in range(30):
        stable = {**HEALTHY, "p95_ms": 200.0 + n % 3}
        canary = {**HEALTHY, "p95_ms": 900.0 + n} if n < 18 else stable
        add_samples(samples, MetricSnapshot(float(n), {"canary": canary, "stable": stable}, {}), judge_samples)
    now = MetricSnapshot(30.0, {"canary": HEALTHY, "stable": HEALTHY}, {})
    judged = evaluate(30, now, BASE, samples, CanaryPolicy(), settings, 10, lambda s, m: m).judged
    assert {len(kept) for by_metric in samples.values() for kept in by_metric.values()} == {min(30, judge_samples)}
    return judged, samples["canary"]["p95_ms"]


def test_the_judge_compares_only_the_latest_judge_samples() -> None:
    recent, kept = judged_after_slow_start(12)
    assert kept[0] == 200.0  # sample 18 on: the slow start is out of the window
    assert recent is not None and recent.outcome == "pass"
    whole, kept = judged_after_slow_start(30)
    assert kept[0] == 900.0
    assert whole is not None and whole.outcome != "pass" and "p95_ms High" in whole.describe()


def test_judge_samples_below_min_samples_is_refused() -> None:
    with pytest.raises(ValueError, match=r"judge_samples \(8\) is below min_samples \(10\)"):
        MetricsConfig(min_samples=10, judge_samples=8)


# --- the operation ----------------------------------------------------------------------------------


def test_the_bad_release_is_rolled_back_by_the_rule_and_the_trace_says_why(services: Services) -> None:
    result, events, asked = run(services, "canary", "staging", {"version": "1.5.0"}, typed="yes")

    assert result.outcome is Outcome.FAILED and result.failed_step == "monitor"
    assert result.detail.startswith("rolled back at check 6: error_rate: ")
    assert "BREACH -> rollback (act)" in result.detail
    assert asked == []  # act: no question before rolling back
    assert services.world is not None
    assert services.world.envs["staging"].canary_version is None
    assert any("automatic rollback" in n for n in services.world.notifications)

    record = services.journal.get(result.op_id)
    assert record.state["decision"]["action"] == "rollback"
    entries = trace.entries(record)
    assert {e.check for e in entries} == set(range(1, 7))
    breach = [e for e in entries if e.action == "rollback" and e.mode == "act"]
    assert [(b.check, b.rule) for b in breach] == [(6, "error_rate")]
    markdown = trace.as_markdown(record)
    assert "- decision: **rollback**" in markdown and "| 6 |" in markdown and "| error_rate | canary |" in markdown
    exported = json.loads(trace.as_json(record))
    assert exported["checks"][-6]["verdict"] == "breach" and exported["baseline"]["error_rate"] > 0
    assert len([e for e in events if isinstance(e, VerdictLogged)]) == len(entries)


def test_a_healthy_canary_is_judged_and_promoted(services: Services) -> None:
    result, events, _ = run(services, "canary", "staging", {"version": "1.4.2"}, typed="yes")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert finished(events)["monitor"].detail.startswith("60 checks passed; judge PASS")
    assert services.world is not None and services.world.envs["staging"].version == "1.4.2"
    assert services.revisions("staging").list()[-1].action == "promote"
    charted = {(e.metric, e.series) for e in events if isinstance(e, MetricSample)}
    assert ("error_rate", "baseline") in charted and ("p95_ms", "canary") in charted


def test_observe_mode_only_logs_and_ask_mode_asks_with_a_countdown(services: Services) -> None:
    automation = services.config.canary.automation
    observe = {**automation, "error_rate": "observe", "judge": "observe"}
    with_policy(services, automation=observe, duration_s=10 * 30)
    observed, events, asked = run(services, "canary", "staging", {"version": "1.5.0"}, typed="yes")
    assert [q.prompt.split("?")[0] for q in asked] == ["Promote the canary to stable in staging"]
    lines = [t for t, _ in logs(events, "monitor")]
    assert "observe only: error_rate would roll back" in lines and "observe only: judge would roll back" in lines
    assert observed.outcome is Outcome.SUCCEEDED  # p95 stayed under 2x: promoted, as observe asked

    assert services.world is not None  # the promotion made 1.5.0 stable, which degrades too: put 1.4.2 back
    services.world.envs["staging"].version = "1.4.2"
    with_policy(services, automation={**automation, "error_rate": "ask"}, ask_timeout_s=7)
    asked_result, _, asked = run(services, "canary", "staging", {"version": "1.5.0"}, typed=None)
    about_errors = [q for q in asked if q.prompt.startswith("error_rate:")]
    assert [(q.timeout_s, q.default_yes) for q in about_errors] == [(7, True)]  # asked once, not every check
    assert about_errors[0].prompt.endswith("Roll back now?")
    assert any(q.prompt.startswith("judge: FAIL") for q in asked)  # the judge is asked about too
    assert asked_result.failed_step == "confirm-promote"  # each "no" kept it going; then the promotion was declined


class Silent:
    """A metrics source whose canary stopped answering after the baseline: Prometheus went away."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.calls = 0

    def describe(self) -> str:
        return "silent"

    def query_for(self, series: str, metric: str) -> str:
        return f"silent: {series} {metric}"

    def validate(self) -> list[str]:
        return []

    def sample(self) -> MetricSnapshot:
        self.calls += 1
        stable: dict[str, float | None] = dict(HEALTHY)
        if self.calls == 1:
            return MetricSnapshot(self.world.clock.now(), {"stable": stable, "canary": stable})
        gone = {m: None for m in HEALTHY}
        reason = {f"{s}.{m}": "prometheus unreachable: ConnectError" for s in ("canary", "stable") for m in HEALTHY}
        return MetricSnapshot(self.world.clock.now(), {"stable": gone, "canary": gone}, reason)


def test_stale_data_asks_the_operator_and_never_promotes(services: Services) -> None:
    assert services.world is not None
    silent = Silent(services.world)
    rewire(services, metrics=lambda env: silent)
    with_policy(services, duration_s=8 * 30)
    result, events, asked = run(services, "canary", "staging", {"version": "1.4.2"}, typed=None)

    assert result.outcome is Outcome.FAILED and result.failed_step == "monitor"
    assert result.detail == "not promoted: the last check (of 8) had no fresh canary data"
    stale = [q for q in asked if q.prompt.startswith("No fresh canary data for 3 checks")]
    assert len(stale) == 2  # at checks 3 and 6; each "no" keeps watching
    assert services.world.envs["staging"].canary_version == "1.4.2"  # still at its weight: not promoted
    assert not any(r.action == "promote" for r in services.revisions("staging").list())
    charted = [e.value for e in events if isinstance(e, MetricSample) and e.series == "canary"]
    assert charted and all(math.isnan(v) for v in charted)  # shown as missing, never as a value


def test_not_enough_data_blocks_promotion(services: Services) -> None:
    with_policy(services, duration_s=5 * 30)  # 5 checks: fewer than the judge's 10 samples
    result, _, _ = run(services, "canary", "staging", {"version": "1.4.2"}, typed="yes")
    assert result.outcome is Outcome.FAILED
    assert result.detail.startswith("not promoted: not enough data: NO DATA")


class Typo(Silent):
    def validate(self) -> list[str]:
        return ["error_rate: bad query: parse error at char 12: unclosed left parenthesis"]


def test_a_query_typo_stops_the_canary_before_it_starts(services: Services) -> None:
    assert services.world is not None
    world = services.world
    rewire(services, metrics=lambda env: Typo(world))
    result, _, _ = run(services, "canary", "staging", {"version": "1.4.2"}, typed="yes")
    assert result.failed_step == "validate"
    assert result.detail == ("1 metrics query would not work: error_rate: bad query: parse error at char 12:"
                             " unclosed left parenthesis")
    assert world.envs["staging"].canary_version is None  # never started


def test_canary_watch_exits_5_on_rollback_and_trace_exports(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cli.main(["--sandbox", "--time-scale", "3000", "canary", "run", "--env", "staging", "--version",
                     "1.5.0", "--yes"]) == cli.EXIT_ROLLED_BACK
    out = capsys.readouterr().out
    assert "check 6: attention: error_rate" in out and "ROLLING BACK: error_rate:" in out

    assert cli.main(["--sandbox", "--json", "--time-scale", "3000", "canary", "watch", "--env", "staging"]) \
        == cli.EXIT_FAILED  # a fresh sandbox world: no canary is running
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["type"] == "Finished" and lines[-1]["detail"] == "staging has no canary running"

    assert cli.main(["--sandbox", "canary", "trace", "--out", str(tmp_path / "out")]) == cli.EXIT_OK
    markdown, data = capsys.readouterr().out.split()
    assert Path(markdown).read_text().startswith("# Canary ghcr.io/example/food-management:1.5.0 in staging")
    assert json.loads(Path(data).read_text())["decision"]["action"] == "rollback"


def test_watch_a_running_canary_rolls_it_back(services: Services) -> None:
    assert run(services, "canary-start", "staging", {"version": "1.5.0"}, typed="yes")[0].outcome is Outcome.SUCCEEDED
    result, events, _ = run(services, "canary-watch", "staging")
    assert result.outcome is Outcome.FAILED and result.detail.startswith("rolled back at check 6")
    digest = services.registry.digest("ghcr.io/example/food-management:1.5.0")  # what the canary runs: pinned
    assert finished(events)["find"].detail == f"ghcr.io/example/food-management:1.5.0@{digest} at 10%"
    assert services.world is not None and services.world.envs["staging"].canary_version is None


def test_a_failing_webhook_never_holds_a_rollback_up(services: Services) -> None:
    class Down:
        def notify(self, message: object) -> None:
            raise RuntimeError("webhook notification failed: ConnectError")

    services.notifier = Down()
    result, events, _ = run(services, "canary", "staging", {"version": "1.5.0"}, typed="yes")
    assert result.detail.startswith("rolled back at check 6")
    assert services.world is not None and services.world.envs["staging"].canary_version is None
    assert ("could not notify the team (webhook notification failed: ConnectError): automatic rollback: "
            "error_rate:") in " ".join(t for t, _ in logs(events, "monitor"))


def test_cpu_over_the_limit_scales_stable_up_with_a_cooldown(services: Services) -> None:
    class Hot(Silent):
        def sample(self) -> MetricSnapshot:
            hot: dict[str, float | None] = {**HEALTHY, "cpu_percent": 91.0}
            canary: dict[str, float | None] = {**HEALTHY, "requests_per_s": 10.0}
            return MetricSnapshot(self.world.clock.now(), {"stable": hot, "canary": canary})

    assert services.world is not None
    hot = Hot(services.world)
    rewire(services, metrics=lambda env: hot)
    with_policy(services, duration_s=12 * 30, scale_cooldown_checks=5)
    result, events, _ = run(services, "canary", "staging", {"version": "1.4.2"}, typed="yes")
    scaled = [t for t, _ in logs(events, "monitor") if t.startswith("stable scaled to")]
    assert scaled == ["stable scaled to 3 replicas", "stable scaled to 4 replicas", "stable scaled to 5 replicas"]
    assert any(n.startswith("[warning] staging 1.4.2: scaled up to 3") for n in services.world.notifications)


# --- dry runs -----------------------------------------------------------------------------------


def test_canary_run_dry_run_finds_checks_and_plans_and_starts_nothing(services: Services) -> None:
    services.locks.acquire("production", "someone else's release")  # a dry run takes no lock: not held up
    result, events, asked = run(services, "canary", "production", {"version": "1.5.0", "dry_run": True})
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert list(finished(events)) == ["resolve", "validate", "plan"] and asked == []  # production: nothing typed
    digest = services.registry.digest("ghcr.io/example/food-management:1.5.0")
    assert digest is not None  # the plan names the tag and the digest the canary will run
    assert finished(events)["plan"].detail == (
        f"update replicas canary, update replicas weight; runs 1.5.0 at {digest[:19]}")
    assert services.world is not None and services.world.envs["production"].canary_version is None
    locked = run(services, "canary", "production", {"version": "1.5.0"}, typed="production")[0]
    assert "is locked by" in locked.detail  # without --dry-run the same canary waits for the lock


def test_canary_run_dry_run_stops_at_a_missing_image_or_a_bad_query(services: Services) -> None:
    result, events, _ = run(services, "canary", "staging", {"version": "9.9.9", "dry_run": True})
    assert result.failed_step == "resolve" and list(finished(events)) == ["resolve"]
    assert services.world is not None
    world = services.world
    rewire(services, metrics=lambda env: Typo(world))
    result, _, _ = run(services, "canary", "staging", {"version": "1.4.2", "dry_run": True})
    assert result.failed_step == "validate" and "1 metrics query would not work" in result.detail


def test_canary_watch_dry_run_observes_every_rule_and_acts_on_none(services: Services) -> None:
    assert run(services, "canary-start", "staging", {"version": "1.5.0"}, typed="yes")[0].outcome is Outcome.SUCCEEDED
    with_policy(services, duration_s=10 * 30)  # the bad release: error_rate breaks its rule at check 6
    services.locks.acquire("staging", "someone else's release")
    result, events, asked = run(services, "canary-watch", "staging", {"dry_run": True})

    assert result.outcome is Outcome.SUCCEEDED and asked == []  # nothing asked: not even the judge
    summary = finished(events)["monitor"].detail
    assert summary.startswith("dry run, nothing acted on: 10 checks; the rules would roll back at check 6"), summary
    assert "hold the promotion (fail) at check 10" in summary
    monitor = [t for t, _ in logs(events, "monitor")]
    assert "observe only: error_rate would roll back" in monitor
    assert not any(t.startswith("ROLLING BACK") for t in monitor)
    verdicts = [e.entry for e in events if isinstance(e, VerdictLogged)]
    assert verdicts and {v["mode"] for v in verdicts} == {"observe"}  # the trace says it, verdict by verdict
    world = services.world
    assert world is not None and world.envs["staging"].canary_version == "1.5.0"  # still running
    assert not any("automatic rollback" in n for n in world.notifications)
