"""`7`: the development stack's screen on the sandbox: the compose services with state and health,
restart and down through the confirm modal (declined changes nothing), a service's log, and
prisma-studio's URL shown and handed to open_url."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import DataTable, Log
from uikit import modal_of, ready, wait_for

from console.screens.dev_stack import DevStackScreen
from widgets.confirm import ConfirmModal

pytestmark = pytest.mark.asyncio


def rows(screen: DevStackScreen) -> dict[str, tuple[str, str]]:
    table = screen.query_one(DataTable)
    return {str(row[0]): (str(row[1]), str(row[2])) for row in (table.get_row_at(i) for i in range(table.row_count))}


async def test_the_dev_stack_screen(make_ui_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_ui_app()
    opened: list[str] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        monkeypatch.setattr(app, "open_url", lambda url, **kw: opened.append(url))  # no browser in a test
        await pilot.press("7")
        await wait_for(pilot, lambda: isinstance(app.screen, DevStackScreen) and rows(app.screen), "the dev stack")
        screen = app.screen
        assert isinstance(screen, DevStackScreen)
        assert rows(screen) == {"app": ("running", "-"), "postgres": ("running", "healthy"),
                                "redis": ("running", "healthy"), "prisma-studio": ("running", "-")}
        log = screen.query_one(Log)

        await pilot.press("X")  # down: confirmed first
        modal = await modal_of(pilot, ConfirmModal, "the down confirmation")
        assert "Stop and remove every container of the compose project food-management" in modal.prompt
        await pilot.press("n")
        await wait_for(pilot, lambda: "--- declined" in "\n".join(log.lines), "the declined down")
        assert rows(screen)["postgres"][0] == "running"

        await pilot.press("X")
        await modal_of(pilot, ConfirmModal, "the down confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: {state for state, _ in rows(screen).values()} == {"absent"}, "the stack down")

        await pilot.press("down", "R")  # restart the second row: postgres
        modal = await modal_of(pilot, ConfirmModal, "the restart confirmation")
        assert modal.prompt == "Restart postgres of the development stack in development?"
        await pilot.press("y")
        await wait_for(pilot, lambda: rows(screen)["postgres"][0] == "running", "postgres restarted")

        await pilot.press("l")
        await wait_for(pilot, lambda: any("ready to accept connections" in line for line in log.lines),
                       "postgres's log")
        await pilot.press("o")
        assert opened == ["http://localhost:5555"]
        assert any("prisma-studio: http://localhost:5555" in line for line in log.lines)
        audited = [(r["action"], r["outcome"].split(":")[0]) for r in app.services.audit.tail(50)
                   if r["action"].startswith("dev-") and not r["outcome"].startswith("started")]
        assert audited == [("dev-down", "declined"), ("dev-down", "succeeded"), ("dev-restart", "succeeded")]
        await pilot.press("escape")
        assert not isinstance(app.screen, DevStackScreen)
