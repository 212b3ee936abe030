"""The development stack without Docker: [dev] validation, the example compose file's strategy values,
the sandbox's stack (status, up/down/restart as audited operations, down and restart confirmed),
service names refused before an argv, and the message when no compose CLI exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from rig.opkit import sandbox_services

from console import cli
from services.adapters.compose import ComposeStack, compose_cli
from services.core.config import ConfigError
from services.core.container import Services
from services.core.events import ConfirmationNeeded, Outcome
from services.core.operations import StepFailed
from services.environments import dev_stack
from services.factory import EXAMPLE_CONFIG, load_config

COMPOSE = EXAMPLE_CONFIG.parent / "docker-compose.yml"


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    return sandbox_services(tmp_path, monkeypatch)


def with_dev(tmp_path: Path, dev: str) -> Path:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    start = text.index("[dev]\n")
    end = text.index("\n[", start + 1)
    path = tmp_path / "release.toml"
    path.write_text(text[:start] + dev + text[end:], encoding="utf-8")
    return path


def test_the_example_points_at_the_example_compose_file() -> None:
    config = load_config(str(EXAMPLE_CONFIG), True, {})
    assert config.dev is not None
    assert (EXAMPLE_CONFIG.parent / config.dev.compose_file).resolve() == COMPOSE.resolve()
    assert (config.dev.environment, config.dev.studio_url) == ("development", "http://localhost:5555")


def test_the_example_compose_file_carries_the_strategy_values() -> None:
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    assert list(services) == ["app", "postgres", "redis", "prisma-studio"]
    app = services["app"]
    assert app["build"]["target"] == "runner" and "NEXT_PUBLIC_API_URL" in app["build"]["args"]
    assert {"DATABASE_URL", "REDIS_URL"} <= set(app["environment"])
    assert services["postgres"]["image"] == "postgres:15" and "healthcheck" in services["postgres"]
    assert services["postgres"]["volumes"] == ["postgres_data:/var/lib/postgresql/data"]
    assert services["redis"]["image"] == "redis:7" and "healthcheck" in services["redis"]
    assert services["prisma-studio"]["ports"] == ["5555:5555"]


@pytest.mark.parametrize(("dev", "problem"), [
    ('[dev]\nenvironment = "qa"\n', "'qa' is not one of [environments]"),
    ('[dev]\nstudio_url = "localhost:5555"\n', "must be an http:// or https:// URL"),
    ('[dev]\nproject = "Food Management"\n', "dev.project"),
    ('[dev]\ncompose = "x.yml"\n', "dev.compose"),
])
def test_a_bad_dev_section_is_refused_naming_what(tmp_path: Path, dev: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(str(with_dev(tmp_path, dev)), True, {})
    assert problem in str(caught.value)


def test_the_sandbox_shows_a_plausible_stack(services: Services) -> None:
    rows = {row.name: row for row in dev_stack.status(services)}
    assert list(rows) == ["app", "postgres", "redis", "prisma-studio"]
    assert rows["postgres"].state == "running" and rows["postgres"].health == "healthy"
    assert rows["postgres"].image == "postgres:15"


def run(services: Services, operation: object, answer: str | None) -> tuple[Outcome, list[str]]:
    asked: list[str] = []

    def confirm(question: ConfirmationNeeded) -> str | None:
        asked.append(question.prompt)
        return answer

    return services.runner.run(operation, lambda event: None, confirm).outcome, asked  # type: ignore[arg-type]


def test_down_and_restart_confirm_first_and_every_one_is_audited(services: Services) -> None:
    assert run(services, dev_stack.down(services), None) == (Outcome.DECLINED, [
        "Stop and remove every container of the compose project food-management (volumes are kept) in development?"])
    assert all(row.state == "running" for row in dev_stack.status(services))  # declined: nothing stopped
    assert run(services, dev_stack.down(services), "yes")[0] is Outcome.SUCCEEDED
    assert {row.state for row in dev_stack.status(services)} == {"absent"}
    outcome, asked = run(services, dev_stack.up(services, "redis"), None)
    assert (outcome, asked) == (Outcome.SUCCEEDED, [])  # up asks nothing
    assert [row.name for row in dev_stack.status(services) if row.state == "running"] == ["redis"]
    outcome, asked = run(services, dev_stack.restart(services, "redis"), "yes")
    assert outcome is Outcome.SUCCEEDED and asked == ["Restart redis of the development stack in development?"]
    audited = [(r["action"], r["params"].get("service"), r["outcome"].split(":")[0])
               for r in services.audit.tail(50) if r["action"].startswith("dev-")]
    assert [a for a in audited if a[2] != "started"] == [
        ("dev-down", None, "declined"), ("dev-down", None, "succeeded"),
        ("dev-up", "redis", "succeeded"), ("dev-restart", "redis", "succeeded")]
    assert {r["env"] for r in services.audit.tail(50) if r["action"].startswith("dev-")} == {"development"}


def test_an_unknown_service_is_refused_before_any_operation(services: Services) -> None:
    with pytest.raises(ValueError, match="'db' is not a service of the development stack; its services: app, "):
        dev_stack.restart(services, "db")
    assert not [r for r in services.audit.tail(50) if r["action"].startswith("dev-")]


def test_the_compose_adapter_checks_the_name_against_the_compose_file(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text("services:\n  app: {image: x}\n  redis: {image: y}\n")
    stack = ComposeStack(tmp_path / "docker-compose.yml", "p", "unix:///nowhere.sock")
    assert stack.services() == ["app", "redis"]
    for bad in ("db", "--volumes", "app; rm -rf /"):
        with pytest.raises(StepFailed, match="is not a service of docker-compose.yml; its services: app, redis"):
            stack.restart(bad, print)


def test_no_compose_cli_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither docker nor docker-compose here
    with pytest.raises(StepFailed) as caught:
        compose_cli()
    assert "neither `docker compose` (the v2 plugin) nor `docker-compose` (v1)" in str(caught.value)
    assert any("apt-get install docker-compose" in option for option in caught.value.next_options)


def test_the_cli_shows_the_stack_and_the_studio_url(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cli.main(["--sandbox", "dev", "status", "--json"]) == cli.EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["studio_url"] == "http://localhost:5555"
    assert [row["name"] for row in shown["services"]] == ["app", "postgres", "redis", "prisma-studio"]
    assert cli.main(["--sandbox", "dev", "studio"]) == cli.EXIT_OK
    assert capsys.readouterr().out.strip() == "http://localhost:5555"
    assert cli.main(["--sandbox", "dev", "logs", "postgres"]) == cli.EXIT_OK
    assert "postgres_1  | LOG:  database system is ready to accept connections" in capsys.readouterr().out
    assert cli.main(["--sandbox", "dev", "restart", "db", "--yes"]) == cli.EXIT_USAGE


def test_a_journaled_dev_operation_is_built_again_for_resume_and_retry(services: Services) -> None:
    from services.catalog import build_operation

    again = build_operation(services, "dev-restart", "development", {"service": "redis"})
    assert (again.kind, again.params, [step.id for step in again.steps]) == (
        "dev-restart", {"service": "redis"}, ["confirm", "dev-restart"])
    assert [step.id for step in build_operation(services, "dev-up", "development", {}).steps] == ["dev-up"]
    with pytest.raises(ValueError, match="'db' is not a service"):
        build_operation(services, "dev-restart", "development", {"service": "db"})


def test_a_services_log_lines_are_cleaned_and_masked(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container's line is untrusted: it cannot clear the screen, and a URL's password it prints is masked,
    in the CLI and the TUI alike (both take dev_stack.logs)."""
    from services.sandbox import dev_stack as sandbox_stack

    planted = "pw-planted-in-a-log-7c1"
    monkeypatch.setitem(sandbox_stack.SAID, "app", [f"\x1b[2J\x1b]0;pwned\x07DATABASE_URL=postgresql://app:{planted}@db/x"])
    said: list[str] = []
    dev_stack.logs(services, "app", said.append)
    assert said == ["app_1  | DATABASE_URL=postgresql://app:**********@db/x"]
