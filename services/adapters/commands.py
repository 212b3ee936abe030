"""The app's own pipeline commands (test, type-check, lint), run as argument lists.

Each is bounded by [app] check_timeout_s and stopped on cancel (services/processes.py).
"""

from __future__ import annotations

from pathlib import Path

from services.core import processes
from services.core.ports import OnLine


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
            on_line(f"command not found: {argv[0]} (is it installed on this host?)")
            return 127
