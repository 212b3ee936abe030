"""Notifications end to end: real migrate operations on the rig's PostgreSQL, the factory's real
notifier, and a local HTTP receiver (tests/rig/receiver.py) for every route. Each test ends with
services.close(), which flushes the background sender, so what arrived is known without waiting."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rig import config_builder as toml
from rig.helpers import prisma_migrations, write_migration
from rig.receiver import Receiver, receiver

from services import factory
from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import Outcome
from services.core.operations import Result

INIT = 'CREATE TABLE "Item" ("id" INTEGER PRIMARY KEY);\n'
BROKEN = 'ALTER TABLE "NoSuchTable" ADD COLUMN "x" TEXT;\n'
TOKEN = "T0KEN-b5e1d0c9a7"  # a receiver's secret, in its URL's path as Slack's and others' are
PD_KEY = "pd-routing-key-4f1e2d"


def build(tmp_path: Path, pg_database: str, notify: dict[str, Any], urls: dict[str, str]) -> factory.Services:
    app = tmp_path / "app"
    prisma_migrations(app, **{"20240105093000_init": INIT})
    written = toml.release({"staging": toml.environment()}, backup=toml.backup(compression="gzip"),
                           migrations={"dir": "prisma/migrations", "integrity_tables": [], "reindex_tables": []},
                           ).write(app / "release.toml")
    # [[notify.routes]] is an array of tables, which the builder does not render: appended as TOML.
    routes = notify.pop("routes")
    text = toml.render({"notify": notify}) + "".join(
        "\n[[notify.routes]]\n" + toml.render(route) for route in routes)
    written.write_text(written.read_text() + text)
    config = config_module.load(written, {"TEST_DB": pg_database, **urls})
    return factory.build(config, state=tmp_path / "state")


def migrate(services: factory.Services) -> Result:
    op = build_operation(services, "migrate", "staging", {})
    return services.runner.run(op, lambda event: None, lambda question: "staging")


def events(got: Receiver, path: str, key: str = "event") -> list[str]:
    return [body[key] for body in got.bodies(path)]


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as got:
        yield got


def test_each_route_gets_its_events_in_its_format(tmp_path: Path, pg_database: str, hook: Receiver) -> None:
    routes = [
        {"name": "team", "format": "slack", "url": "${SLACK_URL}", "channel": "#deploys"},
        {"name": "db", "format": "json", "events": ["migration.*"], "url": "${JSON_URL}"},
        {"name": "pager", "format": "pagerduty", "events": ["operation.failed", "monitor.*"],
         "min_severity": "critical", "url": "${PD_URL}", "routing_key": "${PD_KEY}"},
        {"name": "loud", "format": "json", "min_severity": "critical", "url": "${LOUD_URL}"},
    ]
    urls = {"SLACK_URL": f"{hook.url}/slack/{TOKEN}", "JSON_URL": f"{hook.url}/json", "PD_URL": f"{hook.url}/pd",
            "LOUD_URL": f"{hook.url}/loud", "PD_KEY": PD_KEY}
    services = build(tmp_path, pg_database, {"backoff_s": 0.01, "routes": routes}, urls)
    applied = migrate(services)
    assert applied.outcome is Outcome.SUCCEEDED, applied.detail
    write_migration(tmp_path / "app" / "prisma" / "migrations", "20240106093000_broken", BROKEN)
    failed = migrate(services)
    assert failed.outcome is Outcome.FAILED
    services.close()

    slack = hook.bodies(f"/slack/{TOKEN}")
    assert [body["channel"] for body in slack] == ["#deploys"] * 6
    texts = [body["text"] for body in slack]
    assert [re.findall(r"\[([a-z]+\.[a-z_]+)\]", t)[-1] for t in texts] == [
        "operation.started", "operation.succeeded", "migration.applied",
        "operation.started", "operation.failed", "migration.failed"]
    assert texts[4].startswith("[critical] staging: Migrate staging: failed: ")

    assert events(hook, "/json") == ["migration.applied", "migration.failed"]
    applied_json = hook.bodies("/json")[0]
    assert applied_json["operation"] == "migrate" and applied_json["op_id"] == applied.op_id
    assert applied_json["severity"] == "info" and applied_json["env"] == "staging" and applied_json["operator"]
    assert applied_json["reason"].startswith("Migrate staging: succeeded: ")
    assert set(applied_json) == {"event", "severity", "env", "operation", "op_id", "version", "reason",
                                 "operator", "at"}

    [page] = hook.bodies("/pd")
    assert page["routing_key"] == PD_KEY and page["event_action"] == "trigger"
    assert page["dedup_key"] == f"release-console/staging/{failed.op_id}"
    assert page["payload"]["severity"] == "critical" and page["payload"]["source"] == "release-console/staging"
    assert "Migrate staging: failed" in page["payload"]["summary"]
    assert events(hook, "/loud") == ["operation.failed", "migration.failed"]
    assert not [r for r in services.audit.records() if r["action"] == "notify"]  # nothing failed


def test_a_receiver_failing_twice_gets_it_on_the_third_try(tmp_path: Path, pg_database: str) -> None:
    with receiver(500, 503) as got:
        routes = [{"format": "json", "events": ["operation.succeeded"], "url": "${HOOK_URL}"}]
        services = build(tmp_path, pg_database, {"attempts": 3, "backoff_s": 0.01, "routes": routes},
                         {"HOOK_URL": f"{got.url}/hook"})
        result = migrate(services)
        services.close()
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert got.answered == [500, 503, 200]
    assert events(got, "/hook") == ["operation.succeeded"]
    assert not [r for r in services.audit.records() if r["action"] == "notify"]


def test_a_receiver_down_never_fails_the_operation_and_the_audit_says_so(tmp_path: Path, pg_database: str) -> None:
    down = f"http://127.0.0.1:1/hook/{TOKEN}"  # port 1: nothing answers there
    with receiver() as got:
        routes = [{"name": "down", "format": "slack", "events": ["operation.succeeded"], "url": "${DOWN_URL}"},
                  {"name": "up", "format": "json", "events": ["operation.succeeded"], "url": "${UP_URL}"}]
        services = build(tmp_path, pg_database, {"attempts": 2, "backoff_s": 0.01, "routes": routes},
                         {"DOWN_URL": down, "UP_URL": f"{got.url}/up"})
        result = migrate(services)
        services.close()
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert events(got, "/up") == ["operation.succeeded"]  # one receiver down holds no other up
    [failure] = [r for r in services.audit.records() if r["action"] == "notify"]
    assert failure["outcome"] == "failed: down ConnectError (after 2 of 2 tries)"
    assert failure["params"]["event"] == "operation.succeeded" and failure["params"]["notified_op"] == result.op_id
    written = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert written and not [p for p in written if TOKEN.encode() in p.read_bytes()]


def test_quitting_waits_only_flush_s_and_audits_what_was_not_sent(tmp_path: Path, pg_database: str) -> None:
    with receiver(*[500] * 8) as got:  # failing on: its retry waits out a backoff far past flush_s
        routes = [{"name": "slow", "format": "json", "events": ["operation.*"], "url": "${HOOK_URL}"}]
        notify = {"attempts": 4, "backoff_s": 60, "flush_s": 0.2, "routes": routes}
        services = build(tmp_path, pg_database, notify, {"HOOK_URL": f"{got.url}/slow"})
        result = migrate(services)
        services.close()  # returns after flush_s, not after the 60 s backoff
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert got.answered == [500] and not got.received
    failures = [(r["params"]["event"], r["outcome"]) for r in services.audit.records() if r["action"] == "notify"]
    assert failures == [
        ("operation.started", "failed: slow HTTP 500 (after 1 of 4 tries; the console quit before the next)"),
        ("operation.succeeded", "failed: slow not sent (after 0 of 4 tries; the console quit before the first)")]
