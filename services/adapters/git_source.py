"""The SourceTree port over the app's git repository: image tags from branch, PR, semver and branch-sha.

`compute_tags(repo, "ghcr.io/example/app")` on branch `feature/Login` at commit abc1234, HEAD
tagged v1.5.0, gives (in this order, without duplicates)::

    ghcr.io/example/app:feature-login
    ghcr.io/example/app:1.5.0
    ghcr.io/example/app:1.5
    ghcr.io/example/app:feature-login-abc1234

plus `:pr-N` when a pull request number is given, or GITHUB_REF is refs/pull/N/merge.
git runs as a subprocess with argument lists (never a shell), in the repository.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from services.core import processes
from services.core.ports import NotAGitRepository
from services.core.references import check_reference

_SEMVER_TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
_PULL_REF = re.compile(r"^refs/pull/(\d+)/(?:merge|head)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_TAG = 128  # docker's limit on a tag's length
GIT_TIMEOUT_S = 30


def sanitize(name: str) -> str:
    """A branch name as a docker tag: [A-Za-z0-9_.-], lower case, no leading '.' or '-', <= 128 chars."""
    tag = _TAG_CHARS.sub("-", name.lower()).lstrip(".-")
    tag = re.sub(r"-{2,}", "-", tag)[:MAX_TAG].rstrip(".-")
    return tag or "unknown"


def _git(repo_dir: Path, *args: str) -> str | None:
    """git's stdout, stripped; None when the command fails (e.g. no tag points at HEAD)."""
    try:
        done = processes.run(["git", *args], GIT_TIMEOUT_S, cwd=repo_dir)
    except FileNotFoundError:
        raise NotAGitRepository("git is not installed (or not on PATH)") from None
    return done.stdout.strip() if done.code == 0 else None


def is_git_repo(repo_dir: Path) -> bool:
    return repo_dir.is_dir() and _git(repo_dir, "rev-parse", "--is-inside-work-tree") == "true"


def _branch(repo_dir: Path, env: Mapping[str, str]) -> str:
    branch = _git(repo_dir, "symbolic-ref", "--quiet", "--short", "HEAD")
    if branch:
        return branch
    # Detached HEAD (as CI checks out): the CI's branch name if it says, else "detached".
    return env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or "detached"


def pull_request(env: Mapping[str, str]) -> int | None:
    match = _PULL_REF.match(env.get("GITHUB_REF", ""))
    return int(match[1]) if match else None


def compute_tags(repo_dir: Path, image: str, pr: int | None = None,
                 env: Mapping[str, str] | None = None) -> list[str]:
    """Full references `image:tag` for HEAD of the repository at `repo_dir`; raises NotAGitRepository."""
    env = os.environ if env is None else env
    if not repo_dir.is_dir():
        raise NotAGitRepository(f"{repo_dir} is not a directory, so not a git repository")
    if not is_git_repo(repo_dir):
        raise NotAGitRepository(f"{repo_dir} is not a git repository (git rev-parse found no work tree);"
                                " run `git init` there, or pass the version to tag with")
    sha = _git(repo_dir, "rev-parse", "--short=7", "HEAD")
    if not sha:
        raise NotAGitRepository(f"{repo_dir} is a git repository without any commit yet")
    branch = sanitize(_branch(repo_dir, env))
    names = [branch]
    number = pr if pr is not None else pull_request(env)
    if number is not None:
        names.append(f"pr-{number}")
    at_head = (_git(repo_dir, "tag", "--points-at", "HEAD") or "").split()
    versions = sorted((tuple(int(part) for part in m.groups()) for t in at_head if (m := _SEMVER_TAG.match(t))),
                      reverse=True)
    if versions:
        major, minor, patch = versions[0]
        names += [f"{major}.{minor}.{patch}", f"{major}.{minor}"]
    names.append(f"{branch[:MAX_TAG - len(sha) - 1]}-{sha}")
    # Built from sanitized parts, so always valid; checked anyway, as every reference the console makes.
    return [check_reference(f"{image}:{name}", "tag") for name in dict.fromkeys(names)]


class GitSource:
    """The app's build context on disk, tagged from git when it is a repository."""

    def __init__(self, context: Path, env: Mapping[str, str] | None = None) -> None:
        self.context = context
        self._env = env

    def image_tags(self, image: str) -> list[str] | None:
        if not is_git_repo(self.context):
            return None
        return compute_tags(self.context, image, env=self._env)

    def read(self, name: str) -> str | None:
        try:
            return (self.context / name).read_text(encoding="utf-8")
        except OSError:
            return None

    def default_version(self) -> str:
        return ""

    def provenance(self) -> tuple[str, str]:
        if not is_git_repo(self.context):
            return "", ""
        revision = _git(self.context, "rev-parse", "HEAD") or ""
        env = os.environ if self._env is None else self._env
        if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY"):  # as docker/metadata-action does
            source = f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}"
        else:
            source = _git(self.context, "remote", "get-url", "origin") or ""
        return public_url(source), revision if _COMMIT.match(revision) else ""


def public_url(remote: str) -> str:
    """A git remote as the https URL to show in a label, without any user or token; "" if it is none.

    `git@github.com:org/app.git` and `https://x:TOKEN@github.com/org/app.git` both give
    `https://github.com/org/app`.
    """
    if scp := re.match(r"^[\w.-]+@(?P<host>[\w.-]+):(?P<path>[^/][^:]*)$", remote):
        host, path = scp["host"], scp["path"]
    elif url := re.match(r"^(?:https?|ssh|git)://(?:[^@/]*@)?(?P<host>[\w.-]+)(?::\d+)?/(?P<path>.+)$", remote):
        host, path = url["host"], url["path"]
    else:
        return ""
    path = path.removesuffix("/").removesuffix(".git")
    return f"https://{host}/{path}" if re.fullmatch(r"[\w.-]+(?:/[\w.-]+)+", path) else ""
