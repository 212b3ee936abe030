"""Notifications: `[notify]` routes in release.toml, and the sandbox drill (a failed operation is told
to the team, and the audit pane shows what was sent). The HTTP formats, retries and a receiver that
is down are tested against a real receiver in tests/integration/test_notify.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from rig.opkit import run, sandbox_services
from test_config import ENV, SECRET, assert_names, example_with, load_error

from services.core import config
from services.core.events import Outcome


def with_routes(tmp_path: Path, routes: str) -> Path:
    return example_with(tmp_path, 'webhook_url = "${SLACK_WEBHOOK_URL}"\nchannel = "#deployments"',
                        'backoff_s = 0.01\n' + routes)


def test_the_older_webhook_url_is_one_slack_route_for_every_event() -> None:
    from test_config import EXAMPLE

    [route] = config.load(EXAMPLE, ENV).notify.all_routes()
    assert (route.name, route.format, route.events, route.min_severity, route.channel) == (
        "webhook", "slack", ["*"], "info", "#deployments")
    assert route.takes("operation.started", "info") and route.takes("monitor.rollback", "critical")


def test_routes_take_events_by_glob_and_severity(tmp_path: Path) -> None:
    path = with_routes(tmp_path, """
[[notify.routes]]
events = ["operation.failed", "monitor.*"]
min_severity = "warning"
format = "pagerduty"
routing_key = "${SLACK_WEBHOOK_URL}"
""")
    [route] = config.load(path, ENV).notify.all_routes()
    assert config.references(path)["notify.routes.0.routing_key"] == ["SLACK_WEBHOOK_URL"]  # for `config check`
    assert route.name == "route-1" and route.url is None  # PagerDuty's own URL
    assert route.takes("monitor.rollback", "critical") and route.takes("operation.failed", "warning")
    assert not route.takes("monitor.promote", "info")  # below min_severity
    assert not route.takes("operation.started", "critical")  # not among its events
    assert SECRET not in repr(route)


@pytest.mark.parametrize(("route", "key", "says"), [
    ('events = ["operation.faild"]\nurl = "${SLACK_WEBHOOK_URL}"', "notify.routes.0.events", "matches no event"),
    ('min_severity = "high"\nurl = "${SLACK_WEBHOOK_URL}"', "notify.routes.0.min_severity", "info"),
    ('format = "teams"\nurl = "${SLACK_WEBHOOK_URL}"', "notify.routes.0.format", "slack"),
    ('format = "json"', "notify.routes.0", "needs url"),
    ('format = "pagerduty"', "notify.routes.0", "needs routing_key"),
    ('url = "${DATABASE_URL}"', "notify.routes.0.url", "http:// or https://"),
    ('url = "${SLACK_WEBHOOK_URL}"\nsecret = "${DATABASE_URL}"', "notify.routes.0.secret", "xtra"),
])
def test_a_bad_route_names_its_field_and_never_its_secret(tmp_path: Path, route: str, key: str, says: str) -> None:
    path = with_routes(tmp_path, f"\n[[notify.routes]]\n{route}\n")
    err = load_error(path)
    assert_names(err, path, key)
    assert says in str(err) and SECRET not in str(err)


def test_drill_a_failed_operation_is_told_and_shows_in_the_audit(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    services = sandbox_services(tmp_path, monkeypatch)
    assert services.world is not None  # type: ignore[attr-defined]
    result, _, _ = run(services, "deploy", "staging", {"version": "9.9.9"}, typed="staging")
    assert result.outcome is Outcome.FAILED
    said = [n for n in services.world.notifications if n.endswith("[operation.failed]")]  # type: ignore[attr-defined]
    assert len(said) == 1 and said[0].startswith("[critical] staging 9.9.9: Deploy ") and "failed: " in said[0]
    sent = [r for r in services.audit.records() if r["action"] == "notify"]
    assert [(r["params"]["event"], r["outcome"]) for r in sent] == [
        ("operation.started", "sent: webhook operation.started"),
        ("operation.failed", "sent: webhook operation.failed")]
    assert all(r["params"]["notified_op"] == result.op_id for r in sent)
    services.close()


def test_drill_a_broken_lock_is_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = sandbox_services(tmp_path, monkeypatch)
    services.locks.acquire("staging", "a release left behind")
    result, _, _ = run(services, "lock-break", "staging", reason="its console hung", typed="staging")
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    [said] = [n for n in services.world.notifications if n.endswith("[lock.broken]")]  # type: ignore[attr-defined]
    assert said.startswith("[warning] staging: released staging's lock held by ") and "its console hung" in said
    free, _, _ = run(services, "lock-break", "staging", reason="unused", typed="staging")
    assert free.outcome is Outcome.SUCCEEDED  # nothing to break: nothing told
    assert len([n for n in services.world.notifications if n.endswith("[lock.broken]")]) == 1  # type: ignore[attr-defined]
    services.close()
