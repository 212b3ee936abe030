"""Dependency health on screen: the environments list's column and sparklines, the detail modal
(`h`), and the poll that never runs while the main screen is hidden. Sandbox world, seed 7: staging's
Redis runs near maxmemory, so it warns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable
from uikit import ready, text_of, wait_for

from console.app import ReleaseConsole
from services.core.observe import Usage, UsageReport
from widgets.environments import EnvironmentsPane
from widgets.health import HealthScreen
from widgets.resources import ResourceTable

CALM = 30.0
Snap = Callable[..., bool]
pytestmark = pytest.mark.usefixtures("frozen_clock")


async def staging(pilot: Pilot[Any], polls: int = 6) -> None:
    """Staging selected after `polls` polls (made here, one after another: [health] interval_s is an hour
    in these tests), so the sparklines have a short history; the sandbox's readings are a function of
    the poll count, so they repeat."""
    screen = await ready(pilot)
    for count in range(2, polls + 1):
        screen.poll_health()
        await wait_for(pilot, lambda count=count: len(screen.health.history("staging", "api")) == count, "a poll")
    await pilot.press("1", "down")
    await wait_for(pilot, lambda: "health  warn" in text_of(screen.query_one("#env-detail")), "staging's health")
    pilot.app.clear_notifications()
    await pilot.pause()


def test_environments_with_health_at_80x24(snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole]) -> None:
    assert snap_compare(make_ui_app(CALM), terminal_size=(80, 24), run_before=staging)


def test_environments_with_health_at_120x40(snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole]) -> None:
    assert snap_compare(make_ui_app(CALM), terminal_size=(120, 40), run_before=staging)


def test_health_detail_modal(snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await staging(pilot)
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HealthScreen), "the health detail")
        table = pilot.app.screen.query_one("#resources-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, "staging's resource use")  # two stable replicas
        # The sandbox's CPU figures follow its running clock: the layout is drawn with fixed ones.
        widget = pilot.app.screen.query_one(ResourceTable)
        widget.every_s = 3600
        widget.show(UsageReport((Usage("staging-stable-0", "stable", 12.5, 100 << 20, 512 << 20),
                                 Usage("staging-stable-1", "stable", 7.0, 120 << 20, 512 << 20)), "sandbox"))
        await pilot.pause()

    assert snap_compare(make_ui_app(CALM), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.asyncio
async def test_the_list_marks_each_environment_and_the_detail_names_the_threshold(
        make_ui_app: Callable[..., ReleaseConsole]) -> None:
    app = make_ui_app(CALM)
    async with app.run_test(size=(80, 24)) as pilot:
        await staging(pilot)
        table = app.screen.query_one("#env-table")
        assert [table.get_cell_at((row, 3)).plain for row in range(3)] == ["✓", "!", "✓"]  # type: ignore[attr-defined]
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, HealthScreen), "the health detail")
        body = "\n".join(text_of(line) for line in app.screen.query("#health-body Static"))
        assert "! redis 7.0.15  WARN" in body and "! memory_percent 83.5 >= warn 80" in body
        await pilot.press("escape")
        assert not isinstance(app.screen, HealthScreen)


@pytest.mark.asyncio
async def test_no_poll_while_the_main_screen_is_hidden(make_ui_app: Callable[..., ReleaseConsole]) -> None:
    app = make_ui_app(CALM)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        polls = screen.query_one(EnvironmentsPane)
        probes = screen.services.probes("staging")
        before = probes.count  # type: ignore[attr-defined]
        cover: Screen[None] = Screen()
        app.push_screen(cover)  # a full screen over the list; a modal leaves it in sight
        await wait_for(pilot, lambda: app.screen is cover, "the covering screen")
        screen.health_due()  # the timer fires while hidden: nothing is probed
        await pilot.pause()
        assert screen.health_waiting and probes.count == before  # type: ignore[attr-defined]
        app.pop_screen()
        await wait_for(pilot, lambda: probes.count == before + 1, "the poll on return")  # type: ignore[attr-defined]
        assert not screen.health_waiting and polls.board is screen.health


@pytest.mark.asyncio
async def test_no_overview_poll_behind_a_full_screen(make_ui_app: Callable[..., ReleaseConsole]) -> None:
    """Behind a full screen the overview is not polled (even unshown rows made Textual send the top
    screen again); it is on the return."""
    app = make_ui_app(CALM)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        started: list[str] = []
        real_poll = screen.poll_overview
        screen.poll_overview = lambda: (started.append("poll"), real_poll())  # type: ignore[method-assign]
        cover: Screen[None] = Screen()
        app.push_screen(cover)
        await wait_for(pilot, lambda: app.screen is cover, "the covering screen")
        screen.overview_due()  # the timer fires while covered: no poll, and no timer set again
        assert started == [] and screen.overview_waiting
        app.pop_screen()
        await wait_for(pilot, lambda: started == ["poll"], "the poll on return")
        assert not screen.overview_waiting
