"""BuildKit backend figures, in one run on the rig's dockerd (RC_DOCKER_URL):

  (a) overhead: the console's BuildKit builder against a bare `DOCKER_BUILDKIT=1 /usr/bin/docker build`
      of the same context and arguments (the sample app's Dockerfile.buildkit, secret and cache
      mounts), both fully cached rebuilds, median of N each, interleaved. Goal <= 1.1x.
  (b) warm rebuild after a dependency change (one package added to `packages`): BuildKit, whose
      cache mount keeps the packages fetched before, against the classic builder's rebuild of
      the same app (Dockerfile.buildkit with the mounts taken out, which classic cannot run).

    bash tests/rig/run --exec uv run --frozen python bench/buildkit.py [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from rig.sample_app import prepare_context  # noqa: E402

from services.adapters.buildkit import BuildKitBuilder, builder_for  # noqa: E402
from services.core.config import BuildConfig  # noqa: E402
from services.core.ports import BuildRequest  # noqa: E402

ENGINE = os.environ.get("RC_DOCKER_URL", "unix:///var/run/docker.sock")
TOKEN = "bench-token-" + uuid.uuid4().hex
MOUNTS = ("RUN --mount=type=secret,id=npm,required=true \\\n    --mount=type=cache,target=/root/.npm \\\n"
          "    /bin/app-install /root/.npm /www/vendor")
CLASSIC_INSTALL = ("RUN mkdir -p /run/secrets && echo bench > /run/secrets/npm"
                   " && /bin/app-install /root/.npm /www/vendor")


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main(n: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="rc-bench-buildkit-"))
    context = prepare_context(work / "app")
    tag = f"rc-bench-buildkit-{uuid.uuid4().hex[:8]}:1"
    request = BuildRequest(str(context), "Dockerfile.buildkit", "runner", {}, (tag,))
    builder = builder_for(BuildConfig(engine_url=ENGINE, secrets={"npm": SecretStr(TOKEN)}, registry_cache=False))
    assert isinstance(builder, BuildKitBuilder), "no BuildKit CLI: run on the rig"
    bare = [builder.cli.path, "build", "--progress=plain", "--network", "host", "--file",
            str(context / "Dockerfile.buildkit"), "--target", "runner", "--tag", tag,
            "--secret", "id=npm,env=NPM_TOKEN", str(context)]
    bare_env = {**os.environ, "DOCKER_BUILDKIT": "1", "DOCKER_HOST": ENGINE, "NPM_TOKEN": TOKEN}

    def bare_build() -> None:
        subprocess.run(bare, env=bare_env, check=True, capture_output=True)

    def ours() -> None:
        builder.build(request, lambda line: None)

    bare_build()  # warm both: every step cached from here on
    ours_s, bare_s = [], []
    for _ in range(n):
        bare_s.append(timed(bare_build))
        ours_s.append(timed(ours))
    ratio = statistics.median(ours_s) / statistics.median(bare_s)
    print(f"(a) cached rebuild, median of {n}: bare docker build {statistics.median(bare_s):.2f}s,"
          f" console BuildKit builder {statistics.median(ours_s):.2f}s, ratio {ratio:.2f}x (goal <= 1.1x)")

    # (b) the same app, one dependency added after a first build, with each builder.
    classic_file = context / "Dockerfile.classic"
    classic_file.write_text((context / "Dockerfile.buildkit").read_text().replace(MOUNTS, CLASSIC_INSTALL))
    classic = builder_for(BuildConfig(engine_url=ENGINE, builder="classic"))
    classic_request = BuildRequest(str(context), "Dockerfile.classic", "runner", {}, (tag + "-classic",))
    packages = context / "packages"
    original = packages.read_text()
    builder.build(request, lambda line: None)
    classic.build(classic_request, lambda line: None)
    packages.write_text(original + "bench-added-package\n")
    warm_buildkit = timed(lambda: builder.build(request, lambda line: None))
    warm_classic = timed(lambda: classic.build(classic_request, lambda line: None))
    print(f"(b) warm rebuild after adding one package: BuildKit with a cache mount {warm_buildkit:.2f}s,"
          f" classic {warm_classic:.2f}s ({warm_classic / warm_buildkit:.1f}x)")
    for name in (tag, tag + "-classic"):
        subprocess.run([builder.cli.path, "rmi", "-f", name], env=bare_env, capture_output=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
