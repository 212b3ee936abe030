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
from services import factory

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


def test_only_the_named_actions_parameters_are_built() -> None:
    assert cli._invoked_kind(["migrate", "deploy", "--env", "staging", "--yes"]) == "migrate"
    assert cli._invoked_kind(["deploy", "--env", "staging", "--version", "1.0.0"]) == "deploy"
    assert cli._invoked_kind(["status", "--env", "staging"]) == ""  # no action: no parameters at all
    assert cli._invoked_kind(["completion", "bash"]) is None  # every action's, for the script
    parsed = cli.parser(only="migrate").parse_args(["migrate", "deploy", "--env", "staging", "--yes"])
    assert (parsed.action_kind, parsed.env, parsed.yes) == ("migrate", "staging", True)
    # An action the words did not name has no parameters: _main sees `params_built` and parses again.
    other = cli.parser(only="migrate").parse_known_args(["backup", "create", "--env", "staging"])[0]
    assert (other.action_kind, other.params_built) == ("backup", False)
    _, loaded = help_of("status", "--env", "nowhere")
    assert "services.catalog" not in loaded


def completions(script: str, line: str) -> list[str]:
    """What bash offers for `line` (ending where the cursor is), with the script loaded."""
    words = line.split(" ")
    driver = (f'source "$1"\nCOMP_WORDS=({" ".join(words)} ); COMP_CWORD={len(words) - 1}\n'
              f'COMP_LINE="{line}"; COMP_POINT={len(line)}\n_shtab_release_console\nprintf "%s\\n" "${{COMPREPLY[@]}}"')
    done = subprocess.run(["bash", "-c", driver, "bash", script], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_bash_completion_offers_the_commands_and_their_flags(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    assert cli.main(["completion", "bash"]) == cli.EXIT_OK
    script = tmp_path / "release-console.bash"
    script.write_text(capsys.readouterr().out, encoding="utf-8")
    assert {"start", "step"} <= set(completions(str(script), "release-console canary st"))
    assert "--weights" in completions(str(script), "release-console canary step --we")
    assert "migrate" in completions(str(script), "release-console mig")


def test_zsh_completion_names_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", "zsh"]) == cli.EXIT_OK
    script = capsys.readouterr().out
    assert script.startswith("#compdef release-console") and "rename-column" in script and "--confirm-env" in script


def test_config_check_checks_the_keymap(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    keymap = tmp_path / "config" / "release-console" / "keymap.toml"
    keymap.parent.mkdir(parents=True)
    keymap.write_text('"action.release" = "ctrl+r"\n', encoding="utf-8")
    assert cli.main(["--sandbox", "config", "check"]) == cli.EXIT_OK
    assert f"keymap OK: 1 key(s) moved ({keymap} read)" in capsys.readouterr().out
    keymap.write_text('"action.release" = "m"\n', encoding="utf-8")
    assert cli.main(["--sandbox", "config", "check"]) == cli.EXIT_USAGE
    assert "action.release: 'm' is also action.migrate's key" in capsys.readouterr().err


def test_real_mode_asks_for_the_canary_version_and_never_offers_the_sandboxs(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["canary", "run", "--help"])
    assert done.value.code == cli.EXIT_OK
    shown = capsys.readouterr().out
    assert "--version VERSION" in shown and "[--version" not in shown  # required: not in brackets
    version = shown.split("--version VERSION", 2)[2].split("--steps", 1)[0]  # its help, in the options
    assert "1.5.0" not in shown and "default" not in version
    with pytest.raises(SystemExit) as done:
        cli.main(["canary", "run", "--env", "staging", "--dry-run"])
    assert done.value.code == cli.EXIT_USAGE
    assert "canary run: error: the following arguments are required: --version" in capsys.readouterr().err
    assert factory.suggested_params(False) == {}  # nor the TUI's forms: they fill in what this gives


def test_the_sandbox_offers_its_demo_canary_version(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    with pytest.raises(SystemExit):
        cli.main(["--sandbox", "canary", "run", "--help"])
    assert "(sandbox default 1.5.0)" in " ".join(capsys.readouterr().out.split())
    assert cli.main(["--sandbox", "--json", "canary", "run", "--env", "staging", "--dry-run"]) == cli.EXIT_OK
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    resolved = next(e for e in events if e["type"] == "StepFinished" and e["step_id"] == "resolve")
    assert resolved["detail"].startswith("ghcr.io/example/food-management:1.5.0 sha256:")
    assert events[-1]["type"] == "Finished" and events[-1]["detail"] == "3 steps done"


def test_restore_takes_no_walkthrough_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """The restore is always the guided walkthrough: a flag that changed nothing is gone."""
    with pytest.raises(SystemExit) as done:
        cli.main(["restore", "--env", "staging", "--walkthrough"])
    assert done.value.code == cli.EXIT_USAGE and "unrecognized arguments: --walkthrough" in capsys.readouterr().err


def action_help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # as one line: argparse wraps at the terminal's width


def test_an_actions_help_shows_the_default_its_config_gives(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    example = Path(__file__).resolve().parents[2] / "examples" / "food-management" / "release.toml"
    toml = tmp_path / "release.toml"
    toml.write_text(example.read_text() + "\n[recovery]\nhealth_tries = 7\n")
    text = action_help(capsys, "--sandbox", "--config", str(toml), "restore")
    assert "--health-tries HEALTH_TRIES health-check tries (default 7, from recovery.health_tries)" in text
    assert "seconds between tries (default 10, from recovery.health_interval_s)" in text
    assert "the backup to restore (default: the newest complete backup)" in text
    assert "(default 10, from canary.weight_percent)" in action_help(capsys, "--sandbox", "--config", str(toml),
                                                                    "canary", "start")


def test_without_a_config_an_actions_help_names_where_the_default_comes_from(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)  # no release.toml anywhere: --help still answers
    text = action_help(capsys, "restore")
    assert "health-check tries (default from recovery.health_tries)" in text
