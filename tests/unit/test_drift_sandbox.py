"""Drift in the sandbox: what runs against the latest revision and what the console last set, the
comparison by digest or by repository:tag, the audit once per distinct drift, `status --check-drift`,
and `revision adopt`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rig.opkit import IMAGE, env_state, run, sandbox_services

from console import cli
from services.core.container import Services
from services.core.events import Outcome
from services.core.ports import Revision, Running, TargetStatus
from services.environments.drift import compare
from services.environments.overview import environment_rows

DIGEST_A, DIGEST_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    return sandbox_services(tmp_path, monkeypatch)



def drift_audits(services: Services, env: str) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in services.audit.tail(200) if r["action"] == "drift" and r["env"] == env]


def revision(image: str, digest: str = "") -> Revision:
    return Revision(3, image, digest, "deploy-bot", 0.0)


def status(*running: Running, desired: int = 2, weight: int = 0, applied_replicas: int | None = 2,
           applied_weight: int | None = 0) -> TargetStatus:
    return TargetStatus("1.4.2", desired, desired, canary_weight=weight, running=running,
                        applied_replicas=applied_replicas, applied_weight=applied_weight)


def test_a_pinned_reference_compares_by_digest_whatever_its_tag_says() -> None:
    recorded = revision("registry:5000/app:1.4.2", DIGEST_A)
    same = compare("staging", status(Running(f"registry:5000/app:1.4.2@{DIGEST_A}")), recorded)
    retagged = compare("staging", status(Running(f"registry:5000/app:1.4.2@{DIGEST_B}")), recorded)

    assert not same
    assert [d.what for d in retagged.differences] == ["image"]
    assert retagged.differences[0].running == f"registry:5000/app:1.4.2@{DIGEST_B}"
    assert retagged.differences[0].recorded == f"registry:5000/app:1.4.2@{DIGEST_A}"


def test_a_tag_compares_by_repository_and_tag_then_by_the_engine_s_repo_digest() -> None:
    recorded = revision("registry:5000/app:1.4.2", DIGEST_A)

    assert not compare("staging", status(Running("registry:5000/app:1.4.2")), recorded)
    assert not compare("staging", status(Running("registry:5000/app:1.4.2", DIGEST_A)), recorded)
    moved_tag = compare("staging", status(Running("registry:5000/app:1.4.2", DIGEST_B)), recorded)
    other_tag = compare("staging", status(Running("registry:5000/app:hotfix")), recorded)

    assert "registry:5000/app:1.4.2 (sha256:bbbbbbbbbbbb)" in moved_tag.lines[0]
    assert other_tag.lines == (f"image changed outside the console: runs registry:5000/app:hotfix, revision #3 "
                               f"recorded registry:5000/app:1.4.2@{DIGEST_A}",)


def test_replicas_and_weight_compare_with_what_the_console_last_set_and_unknown_is_no_drift() -> None:
    recorded = revision("app:1")
    found = compare("staging", status(Running("app:1"), desired=5, weight=30), recorded)
    unknown = compare("staging", status(Running("app:1"), desired=5, weight=30, applied_replicas=None,
                                        applied_weight=None), recorded)

    assert found.lines == ("replicas changed outside the console: 5 running, the console set 2",
                           "canary weight changed outside the console: 30% in the split, the console set 0%")
    assert not unknown
    kube = compare("staging", TargetStatus("1", 4, 4, outside=("replicas 4 set by kubectl at T",)), recorded)
    assert kube.lines == ("replicas 4 set by kubectl at T, not by the console",)


def test_the_seeded_world_has_no_drift_and_the_console_s_own_changes_make_none(services: Services) -> None:
    assert all(not row.drift for row in environment_rows(services, list(services.config.environments)))
    result, _, _ = run(services, "scale", "staging", {"replicas": "4"}, typed="yes")
    assert result.outcome is Outcome.SUCCEEDED, result.detail

    assert environment_rows(services, ["staging"])[0].drift == ()
    assert drift_audits(services, "staging") == []


def test_a_hand_change_shows_as_drift_and_is_audited_once_per_distinct_drift(services: Services) -> None:
    state = env_state(services, "staging")
    state.version, state.desired = "1.4.0", 5  # a hotfix by hand: another image, scaled by hand

    first = environment_rows(services, ["staging"])[0]
    again = environment_rows(services, ["staging"])[0]  # the next poll

    assert first.drift == again.drift
    assert first.drift[0].startswith(f"image changed outside the console: runs {IMAGE}:1.4.0")
    assert first.drift[1] == "replicas changed outside the console: 5 running, the console set 2"
    audited = drift_audits(services, "staging")
    assert len(audited) == 1 and audited[0]["outcome"].startswith("seen: image changed outside the console")

    state.canary_weight = 20  # a new drift: audited again
    environment_rows(services, ["staging"])
    assert len(drift_audits(services, "staging")) == 2


def test_status_check_drift_exits_1_on_drift_and_0_without(services: Services,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli._status(cli.parser().parse_args(["status", "--check-drift"]), services) == cli.EXIT_OK
    env_state(services, "production").version = "1.4.0"

    code = cli._status(cli.parser().parse_args(["status", "--check-drift"]), services)
    text = capsys.readouterr().out
    plain = cli._status(cli.parser().parse_args(["status"]), services)
    capsys.readouterr()
    shown = cli._status(cli.parser().parse_args(["status", "--json", "--env", "production"]), services)
    rows = json.loads(capsys.readouterr().out)

    assert (code, plain, shown) == (cli.EXIT_FAILED, cli.EXIT_OK, cli.EXIT_OK)
    assert f"production: DRIFT image changed outside the console: runs {IMAGE}:1.4.0" in text
    assert rows[0]["drift_detail"][0]["what"] == "image"
    assert rows[0]["drift_detail"][0]["running"].startswith(f"{IMAGE}:1.4.0")


def test_adopt_records_what_runs_as_a_revision_after_the_env_name_is_typed(services: Services) -> None:
    env_state(services, "production").version = "1.4.0"
    before = len(services.revisions("production").list())

    declined, _, asked = run(services, "adopt", "production", typed="staging")
    assert declined.outcome is Outcome.DECLINED
    assert asked[0].expected == "production" and f"Record {IMAGE}:1.4.0" in asked[0].prompt
    assert len(services.revisions("production").list()) == before

    result, _, _ = run(services, "adopt", "production", typed="production")
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    latest = services.revisions("production").list()[-1]
    assert (latest.number, latest.image, latest.action) == (before + 1, f"{IMAGE}:1.4.0", "adopt")
    assert latest.digest == services.registry.digest(f"{IMAGE}:1.4.0")
    assert environment_rows(services, ["production"])[0].drift == ()
    assert [r["outcome"] for r in services.audit.tail(20) if r["action"] == "adopt"][-1].startswith("succeeded")


def test_adopt_without_drift_records_nothing_and_asks_nothing(services: Services) -> None:
    before = services.revisions("staging").list()
    result, _, asked = run(services, "adopt", "staging", typed="yes")

    assert result.outcome is Outcome.SUCCEEDED and asked == []
    assert services.revisions("staging").list() == before
