"""The app's own pipeline commands (test, type-check, lint), run as argument lists."""

from __future__ import annotations

import subprocess
from pathlib import Path

from services.ports import OnLine


class SubprocessCommands:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def run(self, argv: list[str], on_line: OnLine) -> int:
        try:
            process = subprocess.Popen(
                argv, cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
            )
        except FileNotFoundError:
            on_line(f"command not found: {argv[0]} (is it installed on this host?)")
            return 127
        assert process.stdout is not None
        for line in process.stdout:
            on_line(line.rstrip("\n"))
        return process.wait()
