"""BuildKit's progress, as the build log shows it: steps, cache hits, timings, and the failing step.

Two inputs feed one `Steps` record, so the log reads the same whichever CLI built:
- `--progress=plain` (the Docker 20.10 CLI with DOCKER_BUILDKIT=1, or buildx): lines like
  `#6 [base 3/4] RUN npm ci`, `#6 0.247 added 212 packages`, `#6 CACHED`, `#6 DONE 1.2s`,
  `#6 ERROR: executor failed running [...]: exit code: 1`.
- `--progress=rawjson` (buildx only): one JSON SolveStatus per line (vertexes, logs). UNTESTED
  against a real buildx: none can be installed where this was written. It is read from
  BuildKit's client types (SolveStatus: vertexes[digest, name, cached, completed, started,
  error], logs[vertex, data base64]); its tests feed it lines of that shape.

Every line goes out through the masking choke point; a vertex's own digest lines are dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.core.masking import MASK, mask_text
from services.core.operations import StepFailed
from services.core.ports import OnLine

TAIL_LINES = 15
_PLAIN = re.compile(r"^#(?P<n>\d+) (?P<text>.*)$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_DONE = re.compile(r"^DONE (?P<s>\d+(?:\.\d+)?)s$")
_OUTPUT = re.compile(r"^\d+\.\d+ (?P<text>.*)$")  # `0.247 text`: a RUN's own output, timestamped
_CACHE_IMPORT = "importing cache manifest from "
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|KEY|CREDENTIAL", re.I)
_ARG = re.compile(r"^\s*ARG\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>\S+)", re.I | re.M)


def secret_args(dockerfile: str, build_args: Mapping[str, str]) -> list[str]:
    """The values of secret-looking build args and ARG defaults (quotes and all), to hide from the log."""
    pairs = [(m["name"], m["value"]) for m in _ARG.finditer(dockerfile)] + list(build_args.items())
    values = [value for name, value in pairs if _SECRET_NAME.search(name)]
    return values + [v.strip("\"'") for v in values]


@dataclass
class Step:
    name: str
    cached: bool = False
    seconds: float | None = None
    error: str = ""
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    @property
    def is_instruction(self) -> bool:
        """A Dockerfile instruction (`[base 3/4] RUN ...`), not BuildKit's own work (`[internal] ...`)."""
        return self.name.startswith("[") and not self.name.startswith("[internal]")


class Steps:
    """What BuildKit reported, by vertex, and the lines the build log shows for it."""

    def __init__(self, on_line: OnLine, hidden: Iterable[str] = ()) -> None:
        self._on_line = on_line
        # This build's own secret-looking ARG values: BuildKit expands them into a RUN's shown name.
        self._hidden = sorted({v for v in hidden if v}, key=len, reverse=True)
        self.steps: dict[str, Step] = {}
        self.other: deque[str] = deque(maxlen=TAIL_LINES)  # lines outside any vertex: the CLI's own errors

    def _say(self, text: str) -> None:
        for value in self._hidden:
            text = text.replace(value, MASK)
        self._on_line(mask_text(text))

    def _step(self, key: str, name: str) -> Step:
        step = self.steps.get(key)
        if step is None:
            step = self.steps[key] = Step(name)
            self._say(f"#{key} {name}")
        return step

    def named(self, key: str, name: str) -> None:
        self._step(key, name)

    def output(self, key: str, text: str) -> None:
        self._step(key, "").tail.append(text)
        self._say(f"#{key} {text}")

    def cached(self, key: str) -> None:
        self._step(key, "").cached = True
        self._say(f"#{key} CACHED")

    def done(self, key: str, seconds: float) -> None:
        self._step(key, "").seconds = seconds
        self._say(f"#{key} DONE {seconds:.1f}s")

    def error(self, key: str, message: str) -> None:
        step = self._step(key, "")
        if step.name.startswith(_CACHE_IMPORT):  # no previous image to take cache from: not a failure
            self._say(f"#{key} no registry cache at {step.name.removeprefix(_CACHE_IMPORT)} ({message});"
                      " building without it")
            return
        step.error = message
        self._say(f"#{key} ERROR: {message}")

    def line(self, text: str) -> None:
        """A line that is no vertex's: the CLI's summary of a failure, a warning."""
        text = text.strip()
        # `------` and ` > [3/3] RUN ...:` frame the CLI's recap of a failed vertex, already shown.
        if text and set(text) != {"-"} and not text.startswith("> "):
            self.other.append(text)
            self._say(text)

    def summary(self) -> str:
        instructions = [s for s in self.steps.values() if s.is_instruction]
        cached = sum(s.cached for s in instructions)
        took = sum(s.seconds or 0.0 for s in instructions if not s.cached)
        return f"{len(instructions)} steps, {cached} cached, {took:.1f}s in the steps that ran"

    def failure(self, code: int) -> StepFailed:
        """The failing step (the last instruction that reported an error) with its last lines."""
        failed = [s for s in self.steps.values() if s.error]
        step = next((s for s in reversed(failed) if s.is_instruction), failed[-1] if failed else None)
        if step is None:
            detail = self.other[-1] if self.other else f"the docker CLI exited with code {code}"
            at, tail = "its start", list(self.other)
        else:
            at, detail, tail = step.name, step.error, list(step.tail)
        lines = "\n".join(tail)
        return StepFailed(
            mask_text(f"build failed at {at}: {_short(detail)}\nlast {len(tail)} lines:\n{lines}"),
            ("fix the Dockerfile or the app and build again", "see the full build log"),
        )


def _short(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PlainProgress:
    """`--progress=plain` lines into Steps."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps

    def feed(self, raw: str) -> None:
        match = _PLAIN.match(raw.rstrip())
        if not match:
            self.steps.line(raw)
            return
        key, text = match["n"], match["text"]
        if _DIGEST.match(text):
            return
        if text == "CACHED":
            self.steps.cached(key)
        elif done := _DONE.match(text):
            self.steps.done(key, float(done["s"]))
        elif text.startswith("ERROR: "):
            self.steps.error(key, text.removeprefix("ERROR: "))
        elif key not in self.steps.steps:
            self.steps.named(key, text)
        else:
            output = _OUTPUT.match(text)
            self.steps.output(key, output["text"] if output else text)


class RawJsonProgress:
    """`--progress=rawjson` (buildx) into Steps. UNTESTED against a real buildx (see the module's doc)."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self._numbers: dict[str, str] = {}  # vertex digest -> #N, in the order first seen
        self._reported: set[tuple[str, str]] = set()

    def _key(self, digest: str) -> str:
        return self._numbers.setdefault(digest, str(len(self._numbers) + 1))

    def feed(self, raw: str) -> None:
        try:
            status = json.loads(raw)
        except ValueError:
            self.steps.line(raw)
            return
        if not isinstance(status, dict):
            self.steps.line(raw)
            return
        for vertex in status.get("vertexes") or []:
            self._vertex(vertex)
        for log in status.get("logs") or []:
            self._log(log)

    def _once(self, key: str, what: str) -> bool:
        seen = (key, what) in self._reported
        self._reported.add((key, what))
        return not seen

    def _vertex(self, vertex: dict[str, object]) -> None:
        key = self._key(str(vertex.get("digest") or ""))
        self.steps.named(key, str(vertex.get("name") or ""))
        if vertex.get("cached") and self._once(key, "cached"):
            self.steps.cached(key)
        if vertex.get("error") and self._once(key, "error"):
            self.steps.error(key, str(vertex["error"]))
        elif vertex.get("completed") and not vertex.get("cached") and self._once(key, "done"):
            self.steps.done(key, _seconds(vertex.get("started"), vertex.get("completed")))

    def _log(self, log: dict[str, object]) -> None:
        key = self._key(str(log.get("vertex") or ""))
        try:
            data = base64.b64decode(str(log.get("data") or ""), validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return
        for text in data.splitlines():
            if text.strip():
                self.steps.output(key, text.rstrip())


def _seconds(started: object, completed: object) -> float:
    try:
        return max(0.0, (_time(str(completed)) - _time(str(started))).total_seconds())
    except ValueError:
        return 0.0


def _time(text: str) -> datetime:
    """RFC 3339 with Go's nanoseconds, cut to the microseconds Python reads."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    return datetime.fromisoformat(text)
