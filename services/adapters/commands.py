"""The app's own pipeline commands (test, type-check, lint), run as argument lists.

Each is bounded by [app] check_timeout_s and stopped on cancel (services/processes.py). A
program that is not on this host is a CommandNotFound, told apart from a check that ran and
failed.
"""

from __future__ import annotations

import os
from pathlib import Path

from services.core import processes
from services.core.operations import StepFailed
from services.core.ports import CommandNotFound, OnLine


class SubprocessCommands:
    def __init__(self, cwd: Path, timeout_s: float = 1800.0) -> None:
        self.cwd = cwd
        self.timeout_s = timeout_s

    def run(self, argv: list[str], on_line: OnLine) -> int:
        try:
            return processes.run(argv, self.timeout_s, on_line=on_line, cwd=self.cwd, what="the check",
                                 advice=("fix what hangs, then retry this step",
                                         "or raise [app] check_timeout_s in release.toml")).code
        except FileNotFoundError:
            if not self.cwd.is_dir():
                raise StepFailed(f"the app's directory {self.cwd} does not exist, so its checks cannot run there",
                                 ("check [app] context in release.toml",)) from None
            where = "does not exist" if os.sep in argv[0] else "was not found on this host's PATH"
            raise CommandNotFound(argv[0], where) from None
        except PermissionError:
            raise CommandNotFound(argv[0], "may not be run here (permission denied: is it executable?)") from None
