"""Image tags from a real temporary git repository: branch, pr-N, semver, branch-sha."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from services.adapters.git_source import compute_tags, is_git_repo, sanitize
from services.core.ports import NotAGitRepository

IMAGE = "ghcr.io/example/food-management"
NO_CI: dict[str, str] = {}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "app"
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    git(path, "config", "commit.gpgsign", "false")
    git(path, "config", "tag.gpgsign", "false")
    commit(path, "first")
    return path


def commit(repo: Path, message: str) -> str:
    (repo / "file.txt").write_text(message, encoding="utf-8")
    git(repo, "add", "file.txt")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "--short=7", "HEAD")


def test_branch_and_branch_sha(repo: Path) -> None:
    sha = git(repo, "rev-parse", "--short=7", "HEAD")
    assert compute_tags(repo, IMAGE, env=NO_CI) == [f"{IMAGE}:main", f"{IMAGE}:main-{sha}"]


def test_semver_tags_only_when_head_is_exactly_at_the_tag(repo: Path) -> None:
    git(repo, "tag", "v1.5.0")
    sha = git(repo, "rev-parse", "--short=7", "HEAD")
    assert compute_tags(repo, IMAGE, env=NO_CI) == [
        f"{IMAGE}:main", f"{IMAGE}:1.5.0", f"{IMAGE}:1.5", f"{IMAGE}:main-{sha}"]

    later = commit(repo, "second")  # one commit past the tag: no version tags
    assert compute_tags(repo, IMAGE, env=NO_CI) == [f"{IMAGE}:main", f"{IMAGE}:main-{later}"]


def test_non_semver_and_annotated_tags(repo: Path) -> None:
    git(repo, "tag", "nightly")
    git(repo, "tag", "v2.0")  # not vX.Y.Z
    assert not any(t.endswith((":2.0", ":2")) for t in compute_tags(repo, IMAGE, env=NO_CI))
    git(repo, "tag", "-a", "v2.1.3", "-m", "release 2.1.3")
    git(repo, "tag", "v2.1.10")  # two versions at HEAD: the highest wins, numerically
    tags = compute_tags(repo, IMAGE, env=NO_CI)
    assert f"{IMAGE}:2.1.10" in tags and f"{IMAGE}:2.1" in tags and f"{IMAGE}:2.1.3" not in tags


def test_branch_names_are_sanitized(repo: Path) -> None:
    git(repo, "checkout", "--quiet", "-b", "Feature/Login_Page#42")
    sha = git(repo, "rev-parse", "--short=7", "HEAD")
    assert compute_tags(repo, IMAGE, env=NO_CI) == [
        f"{IMAGE}:feature-login_page-42", f"{IMAGE}:feature-login_page-42-{sha}"]


def test_sanitize() -> None:
    assert sanitize("dependabot/npm_and_yarn/next-14.2.3") == "dependabot-npm_and_yarn-next-14.2.3"
    assert sanitize("--.weird..") == "weird"
    assert sanitize("///") == "unknown"
    assert len(sanitize("x" * 300)) == 128


def test_pull_request_given_or_from_github_ref(repo: Path) -> None:
    assert f"{IMAGE}:pr-17" in compute_tags(repo, IMAGE, pr=17, env=NO_CI)
    tags = compute_tags(repo, IMAGE, env={"GITHUB_REF": "refs/pull/42/merge"})
    assert tags[1] == f"{IMAGE}:pr-42"
    assert not any(":pr-" in t for t in compute_tags(repo, IMAGE, env={"GITHUB_REF": "refs/heads/main"}))
    # An explicit number wins over the environment.
    assert f"{IMAGE}:pr-5" in compute_tags(repo, IMAGE, pr=5, env={"GITHUB_REF": "refs/pull/42/merge"})


def test_pull_request_from_the_process_environment(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_REF", "refs/pull/9/merge")
    assert f"{IMAGE}:pr-9" in compute_tags(repo, IMAGE)


def test_detached_head_uses_the_ci_branch(repo: Path) -> None:
    sha = git(repo, "rev-parse", "--short=7", "HEAD")
    git(repo, "checkout", "--quiet", "--detach")
    assert compute_tags(repo, IMAGE, env=NO_CI) == [f"{IMAGE}:detached", f"{IMAGE}:detached-{sha}"]
    assert compute_tags(repo, IMAGE, env={"GITHUB_HEAD_REF": "fix/x"})[0] == f"{IMAGE}:fix-x"


def test_subdirectory_of_a_repository(repo: Path) -> None:
    (repo / "web").mkdir()
    assert compute_tags(repo / "web", IMAGE, env=NO_CI)[0] == f"{IMAGE}:main"


def test_not_a_git_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert not is_git_repo(plain)
    with pytest.raises(NotAGitRepository, match="is not a git repository"):
        compute_tags(plain, IMAGE, env=NO_CI)
    with pytest.raises(NotAGitRepository, match="not a directory"):
        compute_tags(tmp_path / "missing", IMAGE, env=NO_CI)


def test_repository_without_commits(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "--quiet")
    with pytest.raises(NotAGitRepository, match="without any commit"):
        compute_tags(empty, IMAGE, env=NO_CI)
