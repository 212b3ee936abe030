"""BuildKit's progress into the build log: --progress=plain lines as the Docker 20.10 CLI prints
them (captured on the rig), and buildx's rawjson in the shape of BuildKit's SolveStatus (no buildx
could run where this was written: those inputs are built from its types, not captured)."""

from __future__ import annotations

import base64
import json

from services.adapters.buildkit_progress import PlainProgress, RawJsonProgress, Steps, secret_args
from services.adapters.git_source import public_url
from services.core import masking
from services.release.pipeline import oci_labels

DIGEST = "sha256:" + "c" * 64
PLAIN = f"""#1 [internal] load build definition from Dockerfile
#1 sha256:{'e' * 64}
#1 transferring dockerfile: 186B 0.0s done
#1 DONE 0.1s

#3 importing cache manifest from 127.0.0.1:5000/app:main
#3 ERROR: 127.0.0.1:5000/app:main: not found

#4 [1/3] COPY busybox /bin/busybox
#4 CACHED

#6 [3/3] RUN echo line-before; exit 3
#6 0.247 line-before
#6 0.247 token=hunter2-secret-value
#6 ERROR: executor failed running [/bin/sh -c echo line-before; exit 3]: exit code: 3
------
 > [3/3] RUN echo line-before; exit 3:
------
executor failed running [/bin/sh -c echo line-before; exit 3]: exit code: 3
""".splitlines()


class Lines(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def test_plain_progress_becomes_steps_cache_hits_timings_and_the_failing_step() -> None:
    lines = Lines()
    steps = Steps(lines)
    progress = PlainProgress(steps)
    for raw in PLAIN:
        progress.feed(raw)
    assert not any("sha256:eeee" in line for line in lines)  # a vertex's digest is noise
    assert "#1 DONE 0.1s" in lines and "#4 CACHED" in lines and "#6 line-before" in lines
    assert "#3 no registry cache at 127.0.0.1:5000/app:main (127.0.0.1:5000/app:main: not found);" \
           " building without it" in lines
    assert not any(line.startswith("> ") or line.startswith("------") for line in lines)
    failure = steps.failure(1)
    message = str(failure)
    assert message.startswith("build failed at [3/3] RUN echo line-before; exit 3: executor failed running")
    assert message.split("\n", 1)[1].splitlines()[1:] == ["line-before", "token=**********"]
    assert steps.summary() == "2 steps, 1 cached, 0.0s in the steps that ran"


def test_every_line_is_masked() -> None:
    masking.register(["s3cr3t-registered-value"])
    lines = Lines()
    PlainProgress(Steps(lines)).feed("#5 [2/2] RUN echo s3cr3t-registered-value")
    assert lines == ["#5 [2/2] RUN echo **********"]


def test_secret_looking_arg_values_are_hidden_though_buildkit_expands_them() -> None:
    hidden = secret_args('FROM x\nARG NPM_TOKEN="npm_live_42"\nARG PORT=3000\n', {"API_KEY": "k-123456"})
    lines = Lines()
    PlainProgress(Steps(lines, hidden)).feed('#5 [runner 2/3] RUN echo "npm_live_42" k-123456 3000')
    assert lines == ['#5 [runner 2/3] RUN echo ********** ********** 3000']


def test_a_failure_outside_any_step_says_the_cli_own_words() -> None:
    steps = Steps(Lines())
    PlainProgress(steps).feed("unable to prepare context: path \"x\" not found")
    assert str(steps.failure(1)).startswith('build failed at its start: unable to prepare context: path "x" not found')


def test_rawjson_status_becomes_the_same_lines() -> None:
    lines = Lines()
    progress = RawJsonProgress(Steps(lines))
    vertex = {"digest": DIGEST, "name": "[runner 1/2] RUN npm ci", "started": "2026-01-01T00:00:00.100000000Z"}
    progress.feed(json.dumps({"vertexes": [vertex]}))
    log = {"vertex": DIGEST, "stream": 1, "data": base64.b64encode(b"added 212 packages\n").decode()}
    progress.feed(json.dumps({"logs": [log]}))
    progress.feed(json.dumps({"vertexes": [{**vertex, "completed": "2026-01-01T00:00:02.350000000Z"}]}))
    progress.feed(json.dumps({"vertexes": [{"digest": "sha256:" + "d" * 64, "name": "[runner 2/2] COPY . .",
                                            "cached": True, "completed": "2026-01-01T00:00:02Z"}]}))
    assert lines == ["#1 [runner 1/2] RUN npm ci", "#1 added 212 packages", "#1 DONE 2.2s",
                     "#2 [runner 2/2] COPY . .", "#2 CACHED"]


def test_oci_labels_as_metadata_action_sets_them() -> None:
    from datetime import UTC, datetime

    labels = oci_labels("https://github.com/org/app", "f" * 40, "1.5.0", datetime(2026, 1, 2, 3, 4, 5, 678000, UTC))
    assert labels == {"org.opencontainers.image.source": "https://github.com/org/app",
                      "org.opencontainers.image.revision": "f" * 40,
                      "org.opencontainers.image.version": "1.5.0",
                      "org.opencontainers.image.created": "2026-01-02T03:04:05.678Z"}
    assert "org.opencontainers.image.source" not in oci_labels("", "", "1")


def test_a_remote_becomes_a_public_url_without_its_token() -> None:
    assert public_url("git@github.com:org/app.git") == "https://github.com/org/app"
    assert public_url("https://x-access-token:ghs_abc123@github.com/org/app.git") == "https://github.com/org/app"
    assert public_url("ssh://git@gitlab.example.com:2222/team/app") == "https://gitlab.example.com/team/app"
    assert public_url("/srv/git/app") == "" and public_url("https://host/app;rm -rf") == ""
