"""The CLI's parsing: `--json` before or after the command, and `--help` answered from the action
table without loading the services (fast), down to an action's own help, which has its flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from console import cli
from console.action_table import commands

PROBE = """
import sys
from console import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
print("LOADED:", sorted(m for m in ("services.catalog", "services.core.config", "pydantic") if m in sys.modules))
"""


def help_of(*argv: str) -> tuple[str, str]:
    """(the help printed, which of the services' modules it loaded), from a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    text, _, loaded = done.stdout.rpartition("LOADED: ")
    return text, loaded.strip()


def test_json_is_accepted_after_the_command_too(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cli.main(["--sandbox", "--json", "history", "--env", "production"]) == cli.EXIT_OK
    before = [(row["number"], row["image"]) for row in json.loads(capsys.readouterr().out)]
    assert cli.main(["--sandbox", "history", "--env", "production", "--json"]) == cli.EXIT_OK
    assert [(row["number"], row["image"]) for row in json.loads(capsys.readouterr().out)] == before
    assert cli.main(["--sandbox", "history", "--env", "production"]) == cli.EXIT_OK
    with pytest.raises(json.JSONDecodeError):  # and without it, text
        json.loads(capsys.readouterr().out)


def test_help_lists_every_command_without_loading_the_services() -> None:
    text, loaded = help_of("--help")
    assert loaded == "[]"
    for words in commands():
        assert f"    {words[0]} " in text, words
    text, loaded = help_of("canary", "--help")
    assert loaded == "[]" and "step" in text and "trace" in text


def test_an_actions_own_help_has_its_flags() -> None:
    text, loaded = help_of("canary", "step", "--help")
    assert "--weights" in text and "--confirm-env" in text and "services.catalog" in loaded
