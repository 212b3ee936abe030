"""The environments list kept for the next start-up: one private file per config, masked on the way
out, and read as untrusted data on the way in (anything unexpected: no list, never an error)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from console.last_seen import MAX_FIELD, LastSeen, SeenRow, keep_last_seen, last_seen_path, read_last_seen
from services.core import masking

ROWS = (SeenRow("staging", "1.4.2", "2/2", False), SeenRow("production", "1.4.1", "9/9", True))


def test_kept_and_read_back_private(tmp_path: Path) -> None:
    path = last_seen_path(None, True, 7, env={"XDG_STATE_HOME": str(tmp_path)})
    keep_last_seen(path, ROWS, at=1000.0)
    assert read_last_seen(path) == LastSeen(1000.0, ROWS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not list(path.parent.glob(".*.tmp"))  # written atomically: no temp file left


def test_one_file_per_config_as_the_command_line_named_it(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path)}
    paths = {last_seen_path(None, True, 7, env), last_seen_path(None, True, 8, env),
             last_seen_path("release.toml", False, 7, env, cwd="/a"), last_seen_path(None, False, 7, env, cwd="/a"),
             last_seen_path(None, False, 7, env, cwd="/b")}
    assert len(paths) == 5 and all(p.parent == tmp_path / "release-console" / "last-seen" for p in paths)
    assert last_seen_path(None, True, 7, env) == last_seen_path("ignored.toml", True, 7, env)


def test_a_secret_in_a_row_is_masked_in_the_file(tmp_path: Path) -> None:
    masking.register(["hunter-zebra-9431"])
    path = tmp_path / "seen.json"
    try:
        keep_last_seen(path, [SeenRow("staging", "x-hunter-zebra-9431", "1/1", False)])
    finally:
        masking.forget()
    assert "hunter-zebra-9431" not in path.read_text()
    seen = read_last_seen(path)
    assert seen is not None and "hunter-zebra-9431" not in seen.rows[0].version


@pytest.mark.parametrize("content", [
    "not json", "[]", '{"at": 5}', '{"rows": []}', '{"at": 5, "rows": []}',
    '{"at": "x", "rows": [{"env": "a", "version": "1", "ready": "1/1", "production": false}]}',
    '{"at": 5, "rows": [{"env": "a", "version": 1, "ready": "1/1", "production": false}]}',
    '{"at": 5, "rows": [{"env": "", "version": "1", "ready": "1/1", "production": false}]}',
    '{"at": 5, "rows": [{"env": "a\\u001b[2J", "version": "1", "ready": "1/1", "production": false}]}',
    json.dumps({"at": 5, "rows": [{"env": "a", "version": "v" * (MAX_FIELD + 1), "ready": "", "production": 0}]}),
])
def test_anything_unexpected_is_no_list(tmp_path: Path, content: str) -> None:
    path = tmp_path / "seen.json"
    path.write_text(content)
    assert read_last_seen(path) is None


def test_missing_is_no_list_and_production_must_be_true_itself(tmp_path: Path) -> None:
    assert read_last_seen(tmp_path / "none.json") is None
    path = tmp_path / "seen.json"
    path.write_text(json.dumps({"at": 5, "rows": [{"env": "a", "version": "1", "ready": "", "production": "yes"}]}))
    assert read_last_seen(path) == LastSeen(5.0, (SeenRow("a", "1", "", False),))


def test_age_reads_in_the_largest_unit() -> None:
    seen = LastSeen(1000.0, ROWS)
    assert [seen.age(now) for now in (1000.0, 1059.0, 1000.0 + 125, 1000.0 + 7300, 1000.0 + 3 * 86400)] == \
        ["0s", "59s", "2m", "2h", "3d"]
