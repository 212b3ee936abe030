"""The sandbox world kept between processes (issue 20): what keeping it costs a sandbox command, in
one run against the yardstick of seeding a new world (what every command did before).

Measured in-process, medians of N runs: seeding a World, saving it (the three simulated expand
databases made, so the file is as large as it gets), and reading it back in. Then whole processes:
`release-console --sandbox status` on a state dir with no world (seeds and saves) vs with one (loads).
Run: uv run --frozen python bench/sandbox_world.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from services.factory import EXAMPLE_CONFIG, SandboxServices, build, load_config
from services.sandbox.expand import _database
from services.sandbox.world import World

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = str(ROOT / ".venv" / "bin" / "release-console")
RUNS = 15


def median_ms(work: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def process_ms(state: Path, fresh: bool) -> float:
    env = {**os.environ, "XDG_STATE_HOME": str(state), "XDG_CONFIG_HOME": str(state / "c")}
    times = []
    for _ in range(RUNS):
        argv = [CONSOLE, "--sandbox", *(["--reset"] if fresh else []), "status"]
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch)
        made = build(load_config(str(EXAMPLE_CONFIG), True, {}), sandbox_mode=True, state=state / "in-process")
        assert isinstance(made, SandboxServices)
        for env in made.world.envs:
            _database(made.world, env)  # expand's simulated tables: the largest part of the file
        kept = made.kept
        print(f"seed a new World:        {median_ms(lambda: World(7)):7.1f} ms")
        print(f"save the world:          {median_ms(kept.save):7.1f} ms  ({kept.path.stat().st_size / 1024:.0f} KiB)")
        print(f"read it back in:         {median_ms(lambda: kept._take(kept._read(), first=True)):7.1f} ms")
        print(f"`--sandbox --reset status` (seeds, saves): {process_ms(state / 'cli', True):6.0f} ms")
        print(f"`--sandbox status` (loads the kept world): {process_ms(state / 'cli', False):6.0f} ms")


if __name__ == "__main__":
    main()
