"""`release-console --help` start-up (issue 13), in one run against two yardsticks: `python -c pass`
(the interpreter alone) and the eager parser (every action's flags, which imports the services: what
`--help` did before the action table made it lazy, 0.62 s then).

Each figure is the median wall time of N runs of a fresh process. Run: uv run --frozen python bench/cli_help.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
CASES = {
    "python -c pass": [PYTHON, "-c", "pass"],
    "release-console --help": [str(ROOT / ".venv" / "bin" / "release-console"), "--help"],
    "release-console canary --help": [str(ROOT / ".venv" / "bin" / "release-console"), "canary", "--help"],
    "eager parser --help (before)": [PYTHON, "-c", "from console.cli import parser; parser().parse_args(['--help'])"],
}
RUNS = 15


def median_seconds(argv: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    figures = {name: median_seconds(argv) for name, argv in CASES.items()}
    for name, seconds in figures.items():
        print(f"{name:34} {seconds * 1000:7.0f} ms (median of {RUNS})")
    return 0 if figures["release-console --help"] <= 0.3 else 1


if __name__ == "__main__":
    sys.exit(main())
