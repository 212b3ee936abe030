"""The build-log pane: lines from a real (sandbox) release, the cap with the full log on disk,
follow mode, search, the first error, staying responsive while lines stream, and a snapshot.

Regenerate the snapshot with `uv run pytest tests/ui/test_build_log.py --snapshot-update`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import ContentSwitcher, Input, Label, Log
from uikit import finished, main_screen, ready, wait_for

from console.app import ReleaseConsole
from console.screens.main import MainScreen
from services.core.oplog import log_path_for
from widgets.build_log import BuildLog, BuildLogPane, shown_path

SIZE = (80, 24)
CALM = 30.0

Snap = Callable[..., bool]


def pane_of(screen: MainScreen) -> BuildLogPane:
    return screen.query_one(BuildLogPane)


def state_line(pane: BuildLogPane) -> str:
    return str(pane.query_one("#build-state", Label).render())


def numbered(count: int, start: int = 0) -> list[str]:
    return [f"[build] line {n:06d} compiling module m{n % 97}" for n in range(start, start + count)]


async def shown(pilot: Pilot[Any]) -> tuple[MainScreen, BuildLogPane]:
    """The build pane shown and focused (its Log), as after `2`."""
    screen = await ready(pilot)
    await pilot.press("2")
    pane = pane_of(screen)
    assert isinstance(pilot.app.focused, BuildLog)
    return screen, pane


def test_log_path_for() -> None:
    env = {"XDG_STATE_HOME": "/state"}
    state = Path("/state/release-console")
    assert log_path_for("op1", None, state) == Path("/state/release-console/build-logs/op1.log")
    assert log_path_for("op1", "logs", state) == Path("/state/release-console/logs/op1.log")
    assert log_path_for("op1", "/var/log/rc", state) == Path("/var/log/rc/op1.log")
    assert shown_path(Path("/state/release-console/build-logs/op1.log"), env) == \
        "$XDG_STATE_HOME/release-console/build-logs/op1.log"


@pytest.mark.asyncio
async def test_release_lines_reach_the_pane_and_the_file(make_ui_app: Any, ui_state: Path) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await pilot.press("d")
        await finished(pilot, screen)
        pane = pane_of(screen)
        lines = list(pane.view.lines)
        assert lines[0].startswith("--- Release 1.5.0 to development")
        assert len(lines) > 100
        path = pane.log_path  # the runner saved it: every step and log line, in the CLI's form
        assert path is not None and path.parent == ui_state / "build-logs"
        assert path.name.endswith(".log") and path.stat().st_mode & 0o777 == 0o600
        saved = path.read_text()
        logged = [m[1] for line in lines if (m := re.match(r"^\[[\w-]+\] (.+)$", line))]  # "[step] text"
        assert len(logged) > 100 and all(f"| {text}" in saved for text in logged)
        assert saved.splitlines()[-1].split(" ", 1)[1].startswith("SUCCEEDED")
        assert state_line(pane).startswith("following · succeeded · log: $XDG_STATE_HOME/build-logs/")


@pytest.mark.asyncio
async def test_lines_written_while_hidden_are_drawn_when_the_pane_shows(make_ui_app: Any) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen, pane = await shown(pilot)
        pane.start("Hidden test")
        await pilot.press("6")  # the audit pane: the build log is hidden
        await pilot.pause()
        assert not pane.display
        pane.write_lines(numbered(3))
        assert not any("line 000002" in line for line in pane.view.lines)  # not drawn while hidden
        assert pane.lines[-3:] == numbered(3) and pane.total_lines == 4
        await pilot.press("2")
        await wait_for(pilot, lambda: list(pane.view.lines)[-3:] == numbered(3), "the hidden lines drawn")
        assert pane.lines == list(pane.view.lines)
        assert pane.view.is_vertical_scroll_end  # still following


@pytest.mark.asyncio
async def test_cap_keeps_the_view_bounded(make_ui_app: Any, tmp_path: Path) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        _, pane = await shown(pilot)
        pane.cap = 1_000
        path = tmp_path / "capped.log"
        pane.start("Capped", path)
        for start in range(0, 50_000, 1_000):
            pane.write_lines(numbered(1_000, start))
        await pilot.pause()
        view = pane.view.lines
        assert len(view) == 1_000
        assert view[0] == numbered(1, 49_000)[0] and view[-1] == numbered(1, 49_999)[0]
        pane.finish("succeeded")
        assert pane.total_lines == 50_001  # the full log is the runner's (tests/unit/test_oplog.py)
        assert pane.view.is_vertical_scroll_end  # still following


@pytest.mark.asyncio
async def test_follow_toggle_scroll_up_pauses_and_end_resumes(make_ui_app: Any, tmp_path: Path) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        _, pane = await shown(pilot)
        pane.start("Follow", tmp_path / "follow.log")
        pane.write_lines(numbered(500))
        await pilot.pause()
        log = pane.view
        assert pane.follow and log.is_vertical_scroll_end and state_line(pane).startswith("following")

        await pilot.press("f")
        assert not pane.follow and state_line(pane).startswith("paused — f to follow")
        pane.write_lines(numbered(100, 500))
        await pilot.pause()
        assert not log.is_vertical_scroll_end  # paused: new lines do not move the view
        await pilot.press("f")
        assert pane.follow and log.is_vertical_scroll_end

        await pilot.press("up", "up", "pageup")  # scrolling up pauses, like tail -f UIs
        assert not pane.follow and "paused" in state_line(pane)
        top = log.scroll_y
        pane.write_lines(numbered(100, 600))
        await pilot.pause()
        assert log.scroll_y == top

        await pilot.press("G")
        assert pane.follow and log.is_vertical_scroll_end
        await pilot.press("pageup")
        assert not pane.follow
        await pilot.press("end")
        pane.write_lines(numbered(100, 700))
        await pilot.pause()
        assert pane.follow and log.is_vertical_scroll_end and log.lines[-1] == numbered(1, 799)[0]


@pytest.mark.asyncio
async def test_search_finds_and_highlights(make_ui_app: Any, tmp_path: Path) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        _, pane = await shown(pilot)
        pane.start("Search", tmp_path / "search.log")
        pane.write_lines(numbered(300))
        await pilot.press("slash")
        box = pane.query_one("#build-search", Input)
        assert box.has_focus
        await pilot.press(*"line 00015")  # lines 150..159
        await pilot.press("enter")
        log = pane.view
        assert log.highlighted_row() == 151  # row 0 is the title line
        assert "line 000150" in log.lines[151]
        assert "match 1/10" in state_line(pane) and not pane.follow
        assert log.scroll_y <= 151 < log.scroll_y + log.size.height  # in view
        await pilot.press("enter")
        assert log.highlighted_row() == 152
        await pilot.press("escape")
        assert not box.display and isinstance(app.focused, BuildLog)
        await pilot.press("n")
        assert log.highlighted_row() == 153
        await pilot.press("N", "N", "N")
        assert log.highlighted_row() == 160  # wrapped round to the last match
        # The highlighted line is drawn differently from its neighbours.
        await pilot.pause()
        row = 160 - int(log.scroll_y)
        assert log.render_line(row).text.startswith("[build] line 000159")
        assert log.render_line(row) != log.render_line(row + 1)
        assert any(seg.style and seg.style.reverse for seg in log.render_line(row))


@pytest.mark.asyncio
async def test_e_jumps_to_the_first_error(make_ui_app: Any, tmp_path: Path) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        _, pane = await shown(pilot)
        pane.start("Errors", tmp_path / "errors.log")
        pane.write_lines(numbered(200))
        pane.write_lines(["[build] Step 4/7 : RUN make", "[build] make: *** [all] Error 2",
                          "[build] The command '/bin/sh -c make' returned a non-zero code: 2 (exit code 2)"])
        pane.write_lines([*numbered(200, 200), "[build] ERROR: failed to solve"])
        await pilot.press("e")
        log = pane.view
        assert log.highlighted_row() == 203 and "exit code 2" in log.lines[203]
        assert "first error" in state_line(pane) and not pane.follow
        assert log.scroll_y <= 203 < log.scroll_y + log.size.height


@pytest.mark.asyncio
async def test_keys_are_answered_while_lines_stream(make_ui_app: Any, tmp_path: Path) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen, pane = await shown(pilot)
        pane.start("Firehose", tmp_path / "firehose.log")
        written = 0

        def produce() -> None:
            nonlocal written
            pane.write_lines(numbered(1_000, written))
            written += 1_000

        timer = screen.set_interval(0.02, produce)
        await wait_for(pilot, lambda: written >= 20_000, "the producer to get going")
        await pilot.press("3")
        assert screen.query_one("#panes", ContentSwitcher).current == "migrations"
        await pilot.press("2")
        assert screen.query_one("#panes", ContentSwitcher).current == "build"
        await pilot.press("f")
        assert not pane.follow
        await pilot.press("f")
        assert pane.follow
        timer.stop()
        await pilot.pause()
        pane.finish()
        assert len(pane.view.lines) == 20_000
        assert pane.total_lines == written + 1


class Both(App[None]):
    def compose(self) -> ComposeResult:
        yield BuildLog(max_lines=5, id="ours")
        yield Log(max_lines=5, auto_scroll=False, id="textual")


@pytest.mark.asyncio
async def test_the_view_keeps_and_measures_lines_as_textuals_log_does() -> None:
    batches = [["plain", "wider plain line"], ["two\nlines", "", "tab\there", "bell\x07", "wide \u5bbd\u5bbd"],
               ["cr\r\nlf", "\u2713 done", "x" * 30], ["a", "b", "c", "d"]]
    app = Both()
    async with app.run_test(size=(60, 20)) as pilot:
        ours, textual = app.query_one(BuildLog), app.query_one(Log)
        for batch in batches:
            ours.write_lines(batch)
            textual.write_lines(batch)
            await pilot.pause()
            await wait_for(pilot, lambda: textual.virtual_size.width == ours.virtual_size.width, "Log's width worker")
            assert list(ours.lines) == list(textual.lines)
            assert ours.virtual_size == textual.virtual_size
        assert ours.dropped == 2 + 5 + 4 + 4 - 5  # "" is no line; "two\nlines" and "cr\r\nlf" two each
        assert [ours.render_line(y).text for y in range(5)] == [textual.render_line(y).text for y in range(5)]


@pytest.mark.asyncio
async def test_keys_go_to_the_screen_when_the_pane_is_hidden(make_ui_app: Any) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen, pane = await shown(pilot)
        await pilot.press("4")  # the canary pane focuses nothing: the Log keeps focus, hidden
        assert not pane.display
        assert pane.check_action("toggle_follow", ()) is False
        await pilot.press("f")
        assert pane.follow


def test_build_log_mid_build(snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole],
                             frozen_clock: float) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("2")
        pane = main_screen(pilot).query_one(BuildLogPane)
        pane.start("Release 1.5.0 to development", Path("build-logs/20260101-000000-snap.log"))
        pane.write_lines([
            "[check-test] 412 passed in 3.20s",
            "[build] Step 1/7 : FROM python:3.11-slim",
            "[build]  ---> 3b1f2a9c0d4e",
            "[build] Step 2/7 : COPY pyproject.toml uv.lock ./",
            "[build]  ---> Using cache",
            "[build] Step 3/7 : RUN uv sync --frozen",
            "[build]  ---> Running in 8c2e71d0f5aa",
            "[build] Resolved 41 packages in 12ms",
            "[build] warning: cache miss for psycopg-binary",
            "[build] error: failed to fetch zstandard 0.25.0 (retrying)",
            "[build] Installed 41 packages in 2.31s",
        ])
        await asyncio.sleep(0)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(make_ui_app(CALM), terminal_size=SIZE, run_before=run_before)
