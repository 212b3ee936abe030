"""`--version`: the installed distribution's version, looked up only when asked (start-up stays cheap)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

DISTRIBUTION = "release-console"


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # a source tree on PYTHONPATH, never installed
        return "unknown (not installed)"


def version_asked(rest: Sequence[str]) -> bool:
    """`--version` among the top-level flags left by the quick pre-scan, that is before the command;
    after it, `--version TAG` is an action's own (deploy, canary run)."""
    for word in rest:
        if word == "--version":
            return True
        if not word.startswith("-"):
            return False
    return False


class VersionAction(argparse.Action):
    """Like argparse's "version" action, but reads the metadata only when the flag is given. Lists the
    flag in --help; `release-console --version` itself is answered before any parser is built."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str = "print the version and exit") -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> NoReturn:
        print(f"{parser.prog} {version()}")  # on stdout, as argparse's own version action
        parser.exit()
