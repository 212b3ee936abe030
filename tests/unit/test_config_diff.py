"""`config diff`: two environments side by side, differences marked, and never a password, a user
or a query string of their URLs, in text or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console import cli
from services.core import config
from services.environments.config_diff import diff, where

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "food-management" / "release.toml"
SECRET = "s3cr3t-Pa55w0rd"
ENV = {
    "DEV_DATABASE_URL": "postgresql://dev:devpass@localhost:5432/food",
    "DEV_REDIS_URL": "redis://localhost:6379/0",
    "STAGING_DATABASE_URL": f"postgresql://stage:{SECRET}@staging-db:5432/food?sslmode=require&password=q-{SECRET}",
    "STAGING_REDIS_URL": "redis://staging-redis:6379/0",
    "DATABASE_URL": f"postgresql://app:{SECRET}@prod-db.internal:6432/food",
    "REDIS_URL": f"rediss://:{SECRET}@prod-redis:6380/1",
    "SLACK_WEBHOOK_URL": f"https://hooks.slack.example.com/services/{SECRET}",
    "BACKUP_SIGNING_KEY": f"signing-{SECRET}",
}


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://app:pw@db:5432/food?sslmode=require", "postgresql://db:5432/food"),
    ("redis://:pw@cache:6379/0", "redis://cache:6379/0"),
    ("https://api.example.com/", "https://api.example.com"),
    ("postgresql://u@[::1]:5432/food", "postgresql://[::1]:5432/food"),
    ("postgresql://u:p@DB.Example.com:5432/food", "postgresql://DB.Example.com:5432/food"),
    ("host=db dbname=food password=pw", "(not a URL)"),
    ("postgresql://db:99999/food", "(not a URL)"),
])
def test_where_keeps_only_the_scheme_host_port_and_path(url: str, shown: str) -> None:
    assert where(url) == shown
    assert where(url, scheme=False) == shown.partition("://")[2] or shown == "(not a URL)"


def test_staging_and_production_differ_where_the_example_says() -> None:
    rows = {row.key: row for row in diff(config.load(EXAMPLE, ENV), "staging", "production")}
    assert (rows["production"].left, rows["production"].right) == ("no", "yes")
    assert rows["database_url"].left == "staging-db:5432/food"
    assert rows["database_url"].right == "prod-db.internal:6432/food"
    assert rows["redis_url"].right == "prod-redis:6380/1" and rows["redis_url"].differs
    assert not rows["features.analytics"].differs
    assert rows["replicas"].differs and rows["canary.replicas"].left == rows["canary.replicas"].right


def test_an_environment_diffed_with_itself_has_no_difference() -> None:
    assert not any(row.differs for row in diff(config.load(EXAMPLE, ENV), "production", "production"))


def test_the_cli_marks_differences_and_never_prints_a_secret(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["--config", str(EXAMPLE), "config", "diff", "staging", "production"]) == cli.EXIT_OK
    text = capsys.readouterr().out
    assert "* database_url" in text and "prod-db.internal:6432/food" in text
    assert "  features.analytics" in text  # the same on both sides: listed, unmarked
    assert cli.main(["--config", str(EXAMPLE), "config", "diff", "staging", "production", "--changed",
                     "--json"]) == cli.EXIT_OK
    data = capsys.readouterr().out
    rows = json.loads(data)["rows"]
    assert rows and all(row["differs"] for row in rows)
    for output in (text, data):
        for leak in (SECRET, "stage:", "app:", "sslmode", "q-"):
            assert leak not in output


def test_an_unknown_environment_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cli.main(["--sandbox", "config", "diff", "staging", "prod"]) == cli.EXIT_USAGE
    assert "unknown environment 'prod'" in capsys.readouterr().err


def test_a_secret_in_a_host_name_stays_masked(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`where` keeps the host, and a host can hold a registered secret (here the signing key, in its
    case): the rows, the text and the JSON pass the masking choke point and never show it."""
    env = {**ENV, "STAGING_REDIS_URL": f"redis://signing-{SECRET}.cache.internal:6379/0"}
    rows = {row.key: row for row in diff(config.load(EXAMPLE, env), "staging", "production")}
    assert rows["redis_url"].left == "**********.cache.internal:6379/0"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for extra in ([], ["--json"]):
        assert cli.main(["--config", str(EXAMPLE), "config", "diff", "staging", "production", *extra]) == cli.EXIT_OK
        out = capsys.readouterr().out
        assert "cache.internal:6379/0" in out and SECRET not in out and SECRET.lower() not in out


def test_a_url_without_a_password_shows_where_it_points_and_differs(capsys: pytest.CaptureFixture[str],
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A ${VAR} URL with nothing secret in it (staging's and production's Redis here) is itself a masking
    literal: shown with its scheme it came out "**********" on both sides, unmarked. Host and database
    are shown, and marked as differing, in the rows and through the CLI's masking stream."""
    env = {**ENV, "REDIS_URL": "redis://prod-redis:6379/0"}
    rows = {row.key: row for row in diff(config.load(EXAMPLE, env), "staging", "production")}
    assert (rows["redis_url"].left, rows["redis_url"].right) == ("staging-redis:6379/0", "prod-redis:6379/0")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["--config", str(EXAMPLE), "config", "diff", "staging", "production"]) == cli.EXIT_OK
    [line] = [line for line in capsys.readouterr().out.splitlines() if "redis_url" in line]
    assert line.startswith("* redis_url") and "staging-redis:6379/0" in line and "prod-redis:6379/0" in line
