"""`--version`: the installed distribution's, and only before the command (after it, an action's own)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from console import cli
from console.version import version_asked

ROOT = Path(__file__).resolve().parents[2]


def test_version_prints_the_projects_version(capsys: pytest.CaptureFixture[str]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert cli.main(["--sandbox", "--version"]) == cli.EXIT_OK
    assert capsys.readouterr().out == f"release-console {project['version']}\n"


@pytest.mark.parametrize(("argv", "asked"), [
    (["--version"], True),
    (["--version", "status"], True),
    (["--unknown-flag", "--version"], True),
    (["deploy", "--env", "staging", "--version", "1.4.2"], False),  # the tag to deploy
    (["canary", "run", "--version", "1.5.0"], False),
    (["status"], False),
    ([], False),
])
def test_only_a_version_before_the_command_is_the_consoles(argv: list[str], asked: bool) -> None:
    _, rest = cli.top_parser(add_help=False).parse_known_args(argv)
    assert version_asked(rest) is asked


def test_help_lists_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0 and "--version" in capsys.readouterr().out
