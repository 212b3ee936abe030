"""App logs and resource use: the cleaning of untrusted lines, the merge of streams, `--since`, and the
`logs` and `top` commands on the sandbox's world (bounded without --follow; ctrl-c ends --follow, exit 0)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from console import cli
from services.core.log_lines import Stream, clean, lines_of, merged, split_stamp
from services.core.observe import LogRecord
from services.environments.logs import Line, parse_since, shown


def test_clean_strips_escape_and_control_sequences_and_keeps_the_text() -> None:
    hostile = "a\x1b[31mred\x1b[0m \x1b]0;title\x07b \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ c\x9b2Jd\x00e\tf\r\n"
    assert clean(hostile) == "ared b link cd" + "e\tf"
    assert clean("x" * 5000).endswith("…(cut)") and len(clean("x" * 5000)) < 4100


def test_shown_masks_a_secret_the_app_prints() -> None:
    line = shown(LogRecord("app-1", "canary", "", "DATABASE_URL=postgresql://u:hunter22@db/x \x1b[2J"))
    assert "hunter22" not in line.render() and "**********" in line.render() and "\x1b" not in line.render()
    assert line.render().startswith("[canary] app-1: ")


def test_split_stamp_and_lines_cut_anywhere() -> None:
    assert split_stamp("2026-12-06T03:04:15.123456789Z hello world") == ("2026-12-06T03:04:15.123456789Z",
                                                                         "hello world")
    assert split_stamp("no stamp here") == ("", "no stamp here")
    assert list(lines_of([b"one\ntw", b"o\n", "three"])) == ["one", "two", "three"]


def test_merged_reads_every_stream_and_ends_on_cancel() -> None:
    cancel, gate = threading.Event(), threading.Event()
    closed: list[str] = []

    def endless() -> list[bytes]:
        gate.wait(5)
        return []

    streams = [Stream("a", "stable", lambda: [b"1\n2\n"], lambda: closed.append("a")),
               Stream("b", "canary", endless, lambda: (closed.append("b"), gate.set()))]
    got = []
    for record in merged(streams, cancel, poll_s=0.01):
        got.append((record.source, record.text))
        if len(got) == 2:
            cancel.set()
    assert got == [("a", "1"), ("a", "2")] and sorted(closed) == ["a", "b"]


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("90", 90),
                                              ("all", None), (None, None)])
def test_since(text: str | None, seconds: float | None) -> None:
    assert parse_since(text) == seconds


def test_since_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="30s, 10m"):
        parse_since("ten minutes")


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_logs_and_top_on_the_sandbox(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--sandbox", "logs", "--env", "staging", "--since", "20s"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("[stable] ") and "staging-stable-" in line for line in lines)
    assert cli.main(["--sandbox", "logs", "--env", "staging", "--since", "soon"]) == 2
    assert cli.main(["--sandbox", "top", "--env", "production"]) == 0
    out = capsys.readouterr().out
    assert "production-stable-0" in out and "MiB / 512.0MiB" in out


def test_logs_follow_ends_on_ctrl_c_with_exit_0(state: Path) -> None:
    argv = [sys.executable, "-m", "console.cli", "--sandbox", "logs", "--env", "staging", "--since", "4s", "--follow"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env={**os.environ}) as follow:
        assert follow.stdout is not None
        first = follow.stdout.readline()
        assert first.startswith("[stable] ")
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=10) == 0


def test_a_line_renders_with_its_role_prefix_and_time() -> None:
    assert Line("web-1", "stable", "2026-12-06T03:04:15.1Z", "ok").render() == "[stable] 2026-12-06 03:04:15 web-1: ok"
