"""The post-deploy monitor drill in the sandbox: 1.5.0 degrades once deployed, and the monitor rolls it
back (act), asks (ask) or logs (observe); a good version passes its window; it resumes from the journal,
cancels like any step, and the CLI exits 5 on its rollback."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from rig.opkit import IMAGE, finished, logs, run, sandbox_services, steps

from console import cli
from services.catalog import build_operation
from services.core.container import Services
from services.core.events import CheckScheduled, ConfirmationNeeded, Event, MetricSample, Outcome, VerdictLogged

MONITORED_STEPS = ["resolve", "plan", "confirm", "baseline", "apply", "record", "health", "monitor"]


def services_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> Services:
    return sandbox_services(tmp_path, monkeypatch, monitor=mode)


def test_a_deploy_of_the_bad_release_is_rolled_back_audited_and_notified(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = services_with(tmp_path, monkeypatch, "act")
    result, events, _ = run(services, "deploy", "staging", {"version": "1.5.0"}, typed="yes")

    assert steps(events) == MONITORED_STEPS
    assert result.outcome is Outcome.FAILED and result.failed_step == "monitor"
    assert result.detail.startswith("rolled back at check ") and "error_rate:" in result.detail
    assert services.world is not None and services.world.envs["staging"].version == "1.4.2"
    back = services.revisions("staging").list()[-1]
    assert (back.action, back.image, back.number) == ("rollback", f"{IMAGE}:1.4.2", 5)  # 4 was 1.5.0's deploy
    assert finished(events)["baseline"].detail.endswith("rolls back to revision 3")
    audited = [r for r in services.audit.tail(50) if r["action"] == "monitor-rollback"]
    assert len(audited) == 1 and audited[0]["params"]["to_revision"] == 3
    assert audited[0]["outcome"] == "rolled back: revision 5 runs 1.4.2"
    told = [n for n in services.world.notifications if n.endswith("[monitor.rollback]")]
    assert len(told) == 1 and told[0].startswith(
        "[critical] staging 1.5.0: post-deploy monitor: automatic rollback to revision 3: error_rate:")
    assert services.world.notifications[-1].endswith("[operation.failed]")  # then the deploy's own end
    # The trace names the query, the value and the threshold; no traffic split to check after a deploy.
    verdicts = [e.entry for e in events if isinstance(e, VerdictLogged)]
    breach = next(v for v in verdicts if v["verdict"] == "breach")
    assert breach["rule"] == "error_rate" and breach["series"] == "new" and breach["mode"] == "act"
    assert breach["query"] == 'sandbox error_rate{track="stable"}'
    assert breach["value"] > breach["threshold"] == pytest.approx(breach["baseline"] * 1.5)
    assert "traffic_share" not in {v["rule"] for v in verdicts}
    record = services.journal.get(result.op_id)
    assert list(record.entries) == verdicts  # journaled entry by entry
    charted = {(e.metric, e.series) for e in events if isinstance(e, MetricSample)}
    assert ("error_rate", "canary") in charted and ("error_rate", "baseline") in charted


def test_a_good_deploy_passes_its_window_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = services_with(tmp_path, monkeypatch, "act")
    result, events, _ = run(services, "deploy", "staging", {"version": "1.4.1"}, typed="yes")

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert finished(events)["monitor"].detail.startswith("60 checks passed; judge ")
    assert [e.check for e in events if isinstance(e, CheckScheduled)] == list(range(1, 61))
    assert services.world is not None and services.world.envs["staging"].version == "1.4.1"
    told = [n for n in services.world.notifications if n.endswith("[monitor.passed]")]
    assert len(told) == 1 and told[0].startswith("[info] staging 1.4.1: post-deploy monitor passed: 60 checks")


def test_ask_asks_with_the_countdown_and_observe_logs_what_it_would_do(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = services_with(tmp_path, monkeypatch, "ask")
    answered, _, asked = run(services, "deploy", "staging", {"version": "1.5.0"}, typed="yes")
    about = [q for q in asked if q.prompt.startswith("error_rate:")]
    assert [(q.timeout_s, q.default_yes) for q in about] == [(services.config.canary.ask_timeout_s, True)]
    assert about[0].prompt.endswith("Roll back now?")
    assert answered.detail.startswith("rolled back at check ")  # answered yes: rolled back
    assert services.world is not None and services.world.envs["staging"].version == "1.4.2"

    monitor = services.config.monitor.model_copy(update={"after_deploy": "observe"})
    services.config = services.config.model_copy(update={"monitor": monitor})
    observed, events, _ = run(services, "deploy", "staging", {"version": "1.5.0"}, typed="yes")
    assert observed.outcome is Outcome.SUCCEEDED, observed.detail
    assert ("observe only: error_rate would roll back", "warning") in logs(events, "monitor")
    assert "the rules would roll back at check " in finished(events)["monitor"].detail
    assert services.world.envs["staging"].version == "1.5.0"  # left running, as observe says


def test_off_and_dry_runs_attach_nothing_and_rollback_and_release_are_watched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = services_with(tmp_path, monkeypatch, "off")
    assert "monitor" not in [s.id for s in build_operation(services, "deploy", "staging", {"version": "1.4.1"}).steps]
    services = services_with(tmp_path / "on", monkeypatch, "act")
    dry = build_operation(services, "deploy", "staging", {"version": "1.4.1", "dry_run": True})
    assert [s.id for s in dry.steps] == ["resolve", "plan"]
    rollback = [s.id for s in build_operation(services, "rollback", "staging", {}).steps]
    assert rollback == ["choose", "plan", "confirm", "baseline", "apply", "record", "health", "monitor"]
    release = [s.id for s in build_operation(services, "release", "staging", {"version": "1.4.1"}).steps]
    assert release[-5:] == ["baseline", "deploy", "record", "health", "monitor"]
    canary = [s.id for s in build_operation(services, "canary", "staging", {"version": "1.4.1"}).steps]
    assert canary.count("monitor") == 1  # the canary's own, nothing added


def test_cancelled_mid_window_it_resumes_from_the_journal_at_the_next_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = services_with(tmp_path, monkeypatch, "act")
    operation = build_operation(services, "deploy", "staging", {"version": "1.5.0"})
    cancel, seen = threading.Event(), []

    def emit(event: Event) -> None:
        seen.append(event)
        if isinstance(event, VerdictLogged) and event.entry["check"] == 3:
            cancel.set()  # ctrl+x during the third check: the wait for the fourth wakes at once

    first = services.runner.run(operation, emit, lambda q: "yes", cancel)
    assert first.outcome is Outcome.CANCELLED and first.failed_step == "monitor"
    assert services.world is not None and services.world.envs["staging"].version == "1.5.0"

    record = services.journal.get(first.op_id)
    assert record.state["checks_done"] == 3 and record.state["baseline"]["error_rate"] > 0
    resumed_op = build_operation(services, record.kind, record.env, record.params)
    resumed_op.id = record.id
    assert resumed_op.steps[record.resume_index].id == "monitor"
    events: list[Event] = []
    again = services.runner.run(resumed_op, events.append, lambda q: "yes", None, record.resume_index, record.state)

    assert [e.check for e in events if isinstance(e, CheckScheduled)][0] == 4
    assert again.detail.startswith("rolled back at check ")
    assert services.world.envs["staging"].version == "1.4.2"
    checks = [e["check"] for e in services.journal.get(first.op_id).entries]
    assert checks == sorted(checks) and checks[0] == 1 and 4 in checks  # one trace, across the drop


def test_the_cli_exits_5_on_the_monitors_rollback_and_exports_its_trace(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cli.main(["--sandbox", "--time-scale", "3000", "deploy", "--env", "staging", "--version", "1.5.0",
                     "--yes"]) == cli.EXIT_ROLLED_BACK  # the example config: after_deploy = "act"
    out = capsys.readouterr().out
    assert "ROLLING BACK to revision 3 (1.4.2): error_rate:" in out

    assert cli.main(["--sandbox", "canary", "trace", "--out", str(tmp_path / "out")]) == cli.EXIT_OK
    markdown, data = capsys.readouterr().out.split()
    assert Path(markdown).read_text().startswith(f"# Deploy {IMAGE}:1.5.0 in staging")
    exported = json.loads(Path(data).read_text())
    assert exported["decision"]["action"] == "rollback" and exported["checks"][-1]["series"] in ("new", "both")


def test_monitor_config_defaults_to_the_canarys_window_and_refuses_an_interval_over_it() -> None:
    from pydantic import ValidationError

    from services.core.config import ReleaseConfig
    from services.factory import EXAMPLE_CONFIG, load_config

    config = load_config(str(EXAMPLE_CONFIG), True, {})
    policy = config.monitor_policy()
    assert (config.monitor.after_deploy, policy.check_interval_s, policy.duration_s) == ("act", 30, 1800)
    assert set(policy.automation.values()) == {"act"}
    data = config.model_dump(exclude={"source"})
    with pytest.raises(ValidationError, match="check_interval_s must not exceed duration_s"):
        ReleaseConfig.model_validate({**data, "monitor": {"check_interval_s": 60, "duration_s": 30}})
    with pytest.raises(ValidationError, match="after_deploy"):
        ReleaseConfig.model_validate({**data, "monitor": {"after_deploy": "sometimes"}})


def test_stale_data_is_asked_about_and_never_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rig.wiring import rewire
    from test_canary_monitor import Silent

    services = services_with(tmp_path, monkeypatch, "act")
    assert services.world is not None
    silent = Silent(services.world)  # answers the baseline, then nothing: Prometheus went away
    rewire(services, metrics=lambda env: silent)
    monitor = services.config.monitor.model_copy(update={"duration_s": 8 * 30})
    services.config = services.config.model_copy(update={"monitor": monitor})
    asked: list[str] = []

    def answer(question: ConfirmationNeeded) -> str | None:
        asked.append(question.prompt)
        return None if question.timeout_s else "yes"  # yes to the deploy, no to every question of the monitor

    result = services.runner.run(build_operation(services, "deploy", "staging", {"version": "1.4.1"}),
                                 lambda event: None, answer)

    assert result.outcome is Outcome.FAILED and result.failed_step == "monitor"
    assert result.detail == "the monitor's last check (of 8) had no fresh data: 1.4.1 was not shown healthy"
    stale = [q for q in asked if q.startswith("No fresh data on 1.4.1 for 3 checks.")]
    assert len(stale) == 2  # at checks 3 and 6; each "no" keeps watching
    assert services.world.envs["staging"].version == "1.4.1"  # not rolled back: you said no
