"""The logs screen on the sandbox: `l` opens it for the selected environment, lines stream in with
their role prefix, `r` narrows to one role, `F` filters, `s` changes since, the CPU and memory table
fills, and `l` goes back."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import DataTable, Label
from uikit import ready, wait_for

from console.screens.logs import LogsScreen
from console.screens.main import MainScreen
from widgets.app_logs import AppLogPane

SIZE = (100, 30)


@pytest.mark.asyncio
async def test_logs_screen_follows_filters_and_shows_resource_use(make_ui_app: Any) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen), "the logs screen")
        screen = app.screen
        pane = screen.query_one(AppLogPane)
        await wait_for(pilot, lambda: len(pane.view.lines) >= 4, "log lines", timeout=10)
        assert all(line.startswith(("[stable] ", "[canary] ")) for line in pane.view.lines)
        title = str(pane.query_one("#build-title", Label).render())
        assert "since 10m" in title and "stable + canary" in title
        table = screen.query_one("#resources-table", DataTable)
        await wait_for(pilot, lambda: table.row_count >= 1, "the resource table", timeout=10)

        await pilot.press("r")  # stable only
        await wait_for(pilot, lambda: "· stable ·" in str(pane.query_one("#build-title", Label).render()), "role")
        await wait_for(pilot, lambda: len(pane.view.lines) >= 2, "stable lines", timeout=10)
        assert all(line.startswith("[stable] ") for line in pane.view.lines)

        await pilot.press("F")
        await pilot.press(*"status=200", "enter")
        await wait_for(pilot, lambda: pane.needle == "status=200", "the filter")
        await wait_for(pilot, lambda: len(pane.view.lines) >= 1, "filtered lines", timeout=10)
        assert all("status=200" in line for line in pane.view.lines)

        await pilot.press("s")
        assert "since 1h" in str(pane.query_one("#build-title", Label).render())
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "back on the main screen")
