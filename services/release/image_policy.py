"""The image policy: what a built image must be before it is pushed.

`check_image(attrs, history, require_init, build_args, dockerfile)` reads Docker's image
inspect (`GET /images/{id}/json`, the SDK's `image.attrs`), its history (`GET
/images/{id}/history`, newest first, the SDK's `image.history()`) and, when at hand, the
Dockerfile's text. Each result says how to fix a failure. Secret values are never shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|KEY|CREDENTIAL", re.IGNORECASE)
MASK = "****"

# A build toolchain (or dev dependencies) installed in a layer of the final image.
_INSTALLS = re.compile(
    r"\b(?:apt-get|apt|yum|dnf|microdnf)\s+(?:-\S+\s+)*install\b(?P<apt>[^&;|]*)"
    r"|\bapk\s+(?:--?\S+\s+)*add\b(?P<apk>[^&;|]*)",
    re.IGNORECASE,
)
_TOOLCHAIN_PACKAGES = re.compile(
    r"(?<![\w.-])(?:build-essential|build-base|gcc|g\+\+|clang|make|cmake|gcc-c\+\+|python3-dev|musl-dev|libc6?-dev"
    r"|linux-headers|autoconf|automake|libtool)(?![\w.-])",
    re.IGNORECASE,
)
_REMOVES = re.compile(r"\b(?:apt-get\s+(?:-\S+\s+)*(?:purge|remove|autoremove)|apk\s+del|yum\s+remove|dnf\s+remove)\b")
_NPM_DEV = re.compile(r"(?<![\w./-])(?:npm\s+(?:install|i|ci)\b|pnpm\s+(?:install|i)\b|yarn\s+install\b"
                      r"|yarn(?=\s*(?:$|&&|;)))(?P<rest>[^&;|]*)")
# Production dependencies only, or a global tool (npm install -g pm2): not dev dependencies.
_PRODUCTION_ONLY = re.compile(r"--omit[= ]dev|--production|--only[= ]prod|--prod\b|NODE_ENV=production"
                              r"|\s-g\b|--global\b")
_ASSIGNMENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|\S+)")
_TOOL_PATHS = re.compile(r"(?:/usr/bin/(?:gcc|g\+\+|cc|make|cmake)|/usr/lib/gcc|/usr/libexec/gcc"
                         r"|node_modules/\.bin|node_modules/(?:typescript|eslint|jest|webpack|@types)\b)")
# `|2 NPM_TOKEN=abc OTHER=x /bin/sh -c ...` (the classic builder; BuildKit writes `RUN |2 ...`): the build
# args a RUN saw, recorded in the history.
_HISTORY_ARGS = re.compile(r"^(?:RUN\s+)?\|\d+\s+(?P<args>.*?)\s+(?:/bin/sh|/bin/bash|\[)")
# `ARG NAME=default` and `ENV A=1 B=2` as the history keeps them (the classic builder after `/bin/sh -c #(nop)`),
# even when a later ENV clears the value: whoever pulls the image reads them with `docker history`.
_HISTORY_SETTING = re.compile(r"^(?:/bin/sh -c #\(nop\)\s+)?(?P<kind>ARG|ENV)\s+(?P<pairs>.+)$")
_INIT = ("tini", "docker-init", "dumb-init")


@dataclass(frozen=True)
class PolicyResult:
    name: str
    passed: bool
    detail: str
    fix: str = ""  # how to make it pass; empty when it passes
    skipped: bool = False  # could not be checked here (counts as passed)

    @property
    def line(self) -> str:
        mark = "SKIP" if self.skipped else "PASS" if self.passed else "FAIL"
        text = f"{mark} {self.name}: {self.detail}"
        return text if self.passed or not self.fix else f"{text} -- fix: {self.fix}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_image(
    attrs: Mapping[str, Any],
    history: list[dict[str, Any]] | None,
    require_init: bool,
    build_args: Mapping[str, str],
    dockerfile: str | None = None,
) -> list[PolicyResult]:
    config: Mapping[str, Any] = attrs.get("Config") or {}
    commands = [str(entry.get("CreatedBy") or "") for entry in (history or [])]
    return [
        _non_root(config),
        _healthcheck(config),
        _multi_stage(dockerfile),
        _no_toolchain(commands, dockerfile, history is not None),
        _no_secrets(config, build_args, commands),
        _init(config, require_init),
    ]


def failures(results: Iterable[PolicyResult]) -> list[PolicyResult]:
    return [r for r in results if not r.passed]


# --- the checks ------------------------------------------------------------------------------


def _non_root(config: Mapping[str, Any]) -> PolicyResult:
    user = str(config.get("User") or "").strip()
    name = user.split(":", 1)[0]
    fix = ("create a user in the final stage and switch to it, e.g. `RUN addgroup -S app && adduser -S app -G app`"
           " then `USER app` (or `USER 1001`)")
    if not name:
        return PolicyResult("non-root user", False, "no USER: the container runs as root", fix)
    if name in ("root", "0"):
        return PolicyResult("non-root user", False, f"USER {user} is root", fix)
    return PolicyResult("non-root user", True, f"runs as {user}")


def _healthcheck(config: Mapping[str, Any]) -> PolicyResult:
    check = config.get("Healthcheck") or {}
    test = list(check.get("Test") or [])
    fix = ("add `HEALTHCHECK --interval=10s --timeout=3s CMD wget -q -O /dev/null http://127.0.0.1:3000/api/health`"
           " (or curl -f) to the final stage")
    if not test or test[0] == "NONE":
        return PolicyResult("healthcheck", False, "no HEALTHCHECK" if not test else "HEALTHCHECK NONE", fix)
    shown = " ".join(str(part) for part in test[1:]) if test[0] in ("CMD", "CMD-SHELL") else " ".join(test)
    return PolicyResult("healthcheck", True, f"HEALTHCHECK {_short(shown)}")


def _stages(dockerfile: str) -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), split at each FROM."""
    lines: list[str] = []
    pending = ""
    for raw in dockerfile.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):  # a comment, also inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = (pending + stripped).strip()
        pending = ""
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    stages: list[list[str]] = []
    for line in lines:
        if re.match(r"FROM\s", line, re.IGNORECASE):
            stages.append([line])
        elif stages:
            stages[-1].append(line)
    return stages


def _multi_stage(dockerfile: str | None) -> PolicyResult:
    if dockerfile is None:
        return PolicyResult("multi-stage build", True, "not checked: the Dockerfile is not at hand", skipped=True)
    stages = _stages(dockerfile)
    if len(stages) > 1:
        return PolicyResult("multi-stage build", True, f"{len(stages)} stages; the final one: {_short(stages[-1][0])}")
    return PolicyResult(
        "multi-stage build", False, f"{len(stages)} FROM: build and runtime share one stage",
        "build in a `FROM ... AS builder` stage, then start the final stage from a slim runtime image and"
        " `COPY --from=builder` only the built output (e.g. Next.js `.next/standalone`, `.next/static`, `public`)")


def _toolchain_in(command: str) -> str | None:
    """What in this one command (a history entry or a RUN line) puts a toolchain in the image, if anything."""
    for match in _INSTALLS.finditer(command):
        packages = match["apt"] or match["apk"] or ""
        found = _TOOLCHAIN_PACKAGES.search(packages)
        if found and not _REMOVES.search(command[match.end():]):  # removed in the same layer: gone
            return f"installs {found[0]}"
    npm = _NPM_DEV.search(command)
    if npm and not _PRODUCTION_ONLY.search(npm[0]) and "NODE_ENV=production" not in command:
        return f"`{_short(npm[0].strip(), 30)}` without --omit=dev (dev dependencies)"
    path = _TOOL_PATHS.search(command)
    if path:
        return f"adds {path[0]}"
    return None


def _no_toolchain(commands: list[str], dockerfile: str | None, have_history: bool) -> PolicyResult:
    found: list[str] = []
    for command in commands:
        why = _toolchain_in(command)
        if why:
            found.append(f"layer `{_short(_clean(command))}` {why}")
    # The history has the final stage's layers as built; the Dockerfile's final stage stands in without it.
    if not have_history and dockerfile is not None and (stages := _stages(dockerfile)):
        for line in stages[-1][1:]:
            if re.match(r"RUN\s", line, re.IGNORECASE) and (why := _toolchain_in(line)):
                found.append(f"final stage `{_short(line)}` {why}")
    if not have_history and dockerfile is None:
        return PolicyResult("no build toolchain", True, "not checked: no history and no Dockerfile", skipped=True)
    if found:
        return PolicyResult(
            "no build toolchain", False, "; ".join(dict.fromkeys(found)),
            "install compilers and dev dependencies only in the builder stage; in the final stage install"
            " production dependencies only (`npm ci --omit=dev`) or copy the built output, and remove build"
            " packages in the same RUN that installs them")
    return PolicyResult("no build toolchain", True, f"none in the final stage's {len(commands)} layers")


def _no_secrets(config: Mapping[str, Any], build_args: Mapping[str, str], commands: list[str]) -> PolicyResult:
    found: list[str] = []
    for name, value in build_args.items():
        if SECRET_NAME.search(name) and value:
            found.append(f"build arg {name}={MASK}")
    live_env: set[str] = set()
    for entry in config.get("Env") or []:
        name, _, value = str(entry).partition("=")
        if SECRET_NAME.search(name) and value:
            found.append(f"ENV {name}={MASK}")
            live_env.add(name)
    for command in commands:
        for kind, name in _recorded_secrets(command):
            if not (kind == "ENV" and name in live_env):  # already said: it is in the image's ENV
                found.append(f"{kind} {name}={MASK} recorded in the history")
    if found:
        return PolicyResult(
            "no secrets", False, ", ".join(dict.fromkeys(found)),
            "pass build-time secrets with `RUN --mount=type=secret,id=NAME` (docker build --secret) instead of"
            " ARG/ENV, and give runtime secrets to the container at deploy time; rotate any secret already pushed")
    return PolicyResult("no secrets", True, "no secret-looking build args or ENV")


def _recorded_secrets(command: str) -> Iterator[tuple[str, str]]:
    """("build arg" or "ENV", name) for each secret-looking value one history entry records: the
    build args a RUN saw, an ARG's default, an ENV."""
    recorded = _HISTORY_ARGS.match(command)
    for pair in recorded["args"].split() if recorded else []:
        name, _, value = pair.partition("=")
        if SECRET_NAME.search(name) and value:
            yield "build arg", name
    setting = _HISTORY_SETTING.match(command.strip())
    for assignment in _ASSIGNMENT.finditer(setting["pairs"]) if setting else []:
        if SECRET_NAME.search(assignment[1]) and assignment[2] not in ('""', "''"):
            yield ("build arg" if setting and setting["kind"] == "ARG" else "ENV"), assignment[1]


def _init(config: Mapping[str, Any], require_init: bool) -> PolicyResult:
    entrypoint = config.get("Entrypoint") or []
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    has_init = any(any(init in str(part) for init in _INIT) for part in entrypoint)
    shown = " ".join(str(p) for p in entrypoint) or "(none)"
    if has_init:
        return PolicyResult("init process", True, f"ENTRYPOINT {_short(shown)}")
    if not require_init:
        return PolicyResult("init process", True, f"not required (build.require_init = false); ENTRYPOINT {shown}")
    return PolicyResult(
        "init process", False, f"no init in ENTRYPOINT {_short(shown)}: signals and zombies go unhandled",
        "install tini in the final stage (`apk add --no-cache tini` or `apt-get install -y tini`) and set"
        " `ENTRYPOINT [\"/sbin/tini\", \"--\"]` (Debian: /usr/bin/tini); or run the container with --init")


def _clean(command: str) -> str:
    command = re.sub(r"^(?:RUN\s+)?\|\d+\s+.*?\s+(?=/bin/sh|/bin/bash|\[)", "", command)  # the recorded build args
    return re.sub(r"^/bin/sh -c (?:#\(nop\)\s*)?", "", command).strip()


def mask_text(text: str) -> str:
    """Every NAME=value whose NAME looks secret, with the value masked."""
    return _ASSIGNMENT.sub(lambda m: f"{m[1]}={MASK}" if SECRET_NAME.search(m[1]) else m[0], text)


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(mask_text(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
