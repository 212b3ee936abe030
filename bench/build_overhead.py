"""Build overhead: the console's DockerBuilder vs the `docker build` CLI, same context, same engine.

Both use the classic builder (the SDK's build endpoint; DOCKER_BUILDKIT=0 for the CLI), no cache,
host network, the sample app's context (tests/rig/sample_app.py) with target "runner" and the
NEXT_PUBLIC_API_URL build arg. Rounds alternate CLI / console; the images are removed after
each build (not timed). Prints each time, the medians and the ratio console / CLI (target <= 1.1x).

    RC_DOCKER_URL=unix:///var/run/docker.sock uv run python bench/build_overhead.py [rounds]

dockerd must be up (`bash tests/rig/run` starts it; the bench needs no other service).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from rig.sample_app import prepare_context  # noqa: E402

from services.adapters.docker_build import DockerBuilder  # noqa: E402
from services.core.ports import BuildRequest  # noqa: E402

API_URL = "http://127.0.0.1:3000/api"


def cli_build(engine_url: str, context: Path, tag: str) -> float:
    argv = [
        "docker", "-H", engine_url, "build", "--no-cache", "--network", "host", "--target", "runner",
        "--build-arg", f"NEXT_PUBLIC_API_URL={API_URL}", "-f", str(context / "Dockerfile"), "-t", tag, str(context),
    ]
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"docker build failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def console_build(engine_url: str, context: Path, tag: str) -> float:
    request = BuildRequest(str(context), "Dockerfile", "runner", {"NEXT_PUBLIC_API_URL": API_URL}, (tag,))
    lines: list[str] = []
    started = time.perf_counter()
    DockerBuilder(engine_url, 500).build(request, lines.append, nocache=True)
    return time.perf_counter() - started


def remove(engine_url: str, tag: str) -> None:
    subprocess.run(["docker", "-H", engine_url, "rmi", "-f", tag], capture_output=True, check=False)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    engine_url = os.environ.get("RC_DOCKER_URL", "unix:///var/run/docker.sock")
    times: dict[str, list[float]] = {"docker build (CLI)": [], "DockerBuilder.build": []}
    with tempfile.TemporaryDirectory(prefix="rc-bench-build-") as scratch:
        context = prepare_context(Path(scratch) / "context")
        # One untimed build each way first: page cache, engine warm-up.
        for warm in (cli_build, console_build):
            tag = f"rc-bench-build:warm-{uuid.uuid4().hex[:8]}"
            warm(engine_url, context, tag)
            remove(engine_url, tag)
        for number in range(1, rounds + 1):
            for name, build in (("docker build (CLI)", cli_build), ("DockerBuilder.build", console_build)):
                tag = f"rc-bench-build:{uuid.uuid4().hex[:8]}"
                try:
                    elapsed = build(engine_url, context, tag)
                finally:
                    remove(engine_url, tag)
                times[name].append(elapsed)
                print(f"round {number}: {name:22} {elapsed:6.2f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print()
    for name, median in medians.items():
        print(f"median {name:22} {median:6.2f} s  ({', '.join(f'{t:.2f}' for t in times[name])})")
    ratio = medians["DockerBuilder.build"] / medians["docker build (CLI)"]
    print(f"ratio console / CLI: {ratio:.2f}x (target <= 1.10x)")


if __name__ == "__main__":
    main()
