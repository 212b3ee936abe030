"""The README's CLI claims hold: every command and flag it names is in the real parser, on the
commands it names it for, and `--dry-run` is claimed for exactly the commands that take it.

How the README is read (keep to it when editing the "Headless CLI" table):
- A row's first cell names commands, each in backticks (`config check`, `lock break --env E`);
  a first cell that starts with "every action" means every action's command too.
- A flag in a command's own backticks must be an option of that command.
- Flags in the second cell hold for the row's commands: when the cell has as many " / "-parts as
  the row has commands, part i speaks of command i; otherwise every part speaks of all of them.
- Anywhere in the README, `release-console ...` (a code line or a span) must parse: its flags and
  its command words; and every backticked `--flag` must exist on some command.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from console.action_table import commands
from console.cli import parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SPAN = re.compile(r"`([^`]+)`")
FLAG = re.compile(r"--[a-z][a-z0-9-]*")
INVOCATION = re.compile(r"release-console((?: +[^\s`()\"']+)+)")


@dataclass
class Cli:
    """The real parser, walked: each command (as its words) with its options."""

    top: argparse.ArgumentParser
    options: dict[tuple[str, ...], set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._walk(self.top, ())

    def _walk(self, node: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        self.options[words] = set(node._option_string_actions)
        for child_words, child in self.children(node).items():
            self._walk(child, (*words, child_words))

    @staticmethod
    def children(node: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        return next((dict(a.choices) for a in node._actions if isinstance(a, argparse._SubParsersAction)), {})

    def with_flag(self, flag: str) -> set[tuple[str, ...]]:
        return {words for words, options in self.options.items() if words and flag in options}

    def parse(self, text: str) -> tuple[tuple[str, ...] | None, list[str], str | None]:
        """`canary step --weights 10` -> (the command's words, the flags given, a problem or None)."""
        tokens = [t.strip("[]") for t in text.split()]
        node, words, flags = self.top, (), []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token.startswith("--"):
                flags.append(token)
                action = node._option_string_actions.get(token)
                if action is None:
                    return words, flags, f"`{' '.join(words) or 'release-console'}` has no {token}"
                i += 2 if action.nargs != 0 else 1  # a flag's value (E, TAG, 10,25) is not a word
                continue
            children = self.children(node)
            if children and _placeholder(token):  # `release-console [--json] COMMAND`
                break
            if children:
                if token not in children:
                    return words, flags, f"no command `{' '.join((*words, token))}`"
                node, words = children[token], (*words, token)
            elif not _placeholder(token) and not _a_choice(node, token):
                return words, flags, f"`{' '.join(words)}` takes no {token!r}"
            i += 1
        return words, flags, None


def _placeholder(token: str) -> bool:
    """ID, TAG, COMMAND, K=V, …: what the reader types in."""
    return token in ("…", "...") or token == token.upper()


def _a_choice(node: argparse.ArgumentParser, token: str) -> bool:
    return any(token in (a.choices or ()) for a in node._actions if not a.option_strings)


def _cli_section(lines: list[str]) -> range:
    start = next(i for i, line in enumerate(lines) if line.strip() == "## Headless CLI")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return range(start, end)


def readme_problems(text: str, cli: Cli) -> tuple[list[str], dict[str, set[tuple[str, ...]]]]:
    """Every claim of the README that the parser does not hold, each naming its line; and, per flag,
    the commands the table claims it for."""
    lines = text.splitlines()
    problems: list[str] = []
    claimed: dict[str, set[tuple[str, ...]]] = {}
    every_action = set(commands())
    rows: set[int] = set()  # the table's lines: checked cell by cell

    def said(number: int, problem: str) -> None:
        problems.append(f"README.md:{number}: {problem}\n    {lines[number - 1].strip()}")

    for index in _cli_section(lines):
        row = lines[index]
        if not row.startswith("|") or set(row) <= set("|- "):
            continue
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) < 2 or not SPAN.search(cells[0]):
            continue  # the header
        rows.add(index + 1)
        named: list[tuple[str, ...]] = []
        for span in SPAN.findall(cells[0]):
            words, flags, problem = cli.parse(span)
            if problem:
                said(index + 1, problem)
                continue
            assert words is not None
            named.append(words)
            for flag in flags:
                claimed.setdefault(flag, set()).add(words)
        if cells[0].startswith("every action"):
            named = sorted(set(named) | every_action)
        parts = cells[1].split(" / ")
        for i, part in enumerate(parts):
            speaks_of = [named[i]] if len(parts) == len(named) else named
            for flag in {f for span in SPAN.findall(part) for f in FLAG.findall(span)}:
                for words in speaks_of:
                    claimed.setdefault(flag, set()).add(words)
                    if flag not in cli.options[words]:
                        said(index + 1, f"`{' '.join(words)}` has no {flag}")

    known = set().union(*cli.options.values())
    for number, line in enumerate(lines, 1):
        for invocation in INVOCATION.findall(line):
            problem = cli.parse(invocation)[2]
            if problem:
                said(number, problem)
        for span in [] if number in rows else SPAN.findall(line):
            for flag in sorted(set(FLAG.findall(span)) - known):
                if "release-console" not in span:  # said already, above
                    said(number, f"no command has {flag}")
    return problems, claimed


def test_every_command_and_flag_in_the_readme_is_in_the_cli() -> None:
    cli = Cli(parser())
    problems, claimed = readme_problems(README.read_text(encoding="utf-8"), cli)
    assert not problems, "the README claims what the CLI does not do:\n" + "\n".join(problems)
    # Not vacuous: the table was read, row by row, down to the flags of its second cells.
    assert {("canary", "run"), ("canary", "watch"), ("deploy",)} <= claimed["--dry-run"]
    assert {("migrate", "status"), ("migrate", "lint"), ("status",)} <= claimed["--env"]
    assert claimed["--applied"] == {("migrate", "resolve")} and ("restore",) in claimed["--reason"]


def test_the_readme_names_every_command_that_takes_dry_run() -> None:
    cli = Cli(parser())
    claimed = readme_problems(README.read_text(encoding="utf-8"), cli)[1]
    taking = cli.with_flag("--dry-run")
    assert claimed["--dry-run"] == taking, (
        f"take --dry-run, not said in the README: {sorted(taking - claimed['--dry-run'])}; "
        f"said, not taken: {sorted(claimed['--dry-run'] - taking)}")


def test_a_wrong_claim_fails_naming_its_line_and_what_is_missing() -> None:
    cli = Cli(parser())
    text = README.read_text(encoding="utf-8")
    planted = text.replace("| `restore` / `drill` |", "| `restore --walkthrough` / `drill` |")
    planted = planted.replace("| `deploy` / `rollback` / `scale` /", "| `deploy` / `backup create` / `scale` /")
    planted = planted.replace("| `audit repair` |", "| `audit repair` / `audit rotate` |")
    planted = planted.replace("    release-console --version", "    release-console --colour never")
    planted = planted.replace("(`--seed`, `--time-scale`;", "(`--seed`, `--speed`;")
    planted = planted.replace("/ `migrate lint` | `--env E`:", "/ `migrate lint` | `--env E --limit N`:")
    assert planted.count("\n") == text.count("\n")
    problems, claimed = readme_problems(planted, cli)
    line = {needle: planted[:planted.index(needle)].count("\n") + 1 for needle in (
        "restore --walkthrough", "`backup create` / `scale`", "audit rotate", "--colour never", "--speed",
        "--limit N")}
    expected = [
        f"README.md:{line['restore --walkthrough']}: `restore` has no --walkthrough",
        f"README.md:{line['`backup create` / `scale`']}: `backup create` has no --dry-run",
        f"README.md:{line['audit rotate']}: no command `audit rotate`",
        f"README.md:{line['--colour never']}: `release-console` has no --colour",
        f"README.md:{line['--speed']}: no command has --speed",
        f"README.md:{line['--limit N']}: `migrate status` has no --limit",
        f"README.md:{line['--limit N']}: `migrate lint` has no --limit",
    ]
    for problem in expected:
        assert any(p.startswith(problem + "\n") for p in problems), f"{problem!r} not in {problems}"
    assert len(problems) == len(expected), problems
    assert ("rollback",) in cli.with_flag("--dry-run") - claimed["--dry-run"]  # the row lost it: the test says so


def test_the_commands_the_readme_gives_have_what_they_run() -> None:
    """`bash tests/rig/run`, `uv run --frozen release-console`, `uv tool install .`: the script, the
    lock file and the entry point they need are there (the command lines' flags are checked above)."""
    code = [line.strip() for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("    ")]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for line in code:
        words = line.split()
        if words[0] == "bash":
            assert (ROOT / words[1]).is_file(), f"README: `{line}`: no {words[1]}"
        if "--frozen" in words:
            assert (ROOT / "uv.lock").is_file(), f"README: `{line}`: no uv.lock"
        if "install" in words and "." in words:
            assert project["project"]["scripts"]["release-console"] == "console.cli:main", line
    assert {"bash tests/rig/run", "uv tool install .        # or: pipx install ."} <= set(code)
