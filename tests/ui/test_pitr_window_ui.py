"""The recovery window under the backups pane: read in its own worker, as a message, only for the
environment [backup.pitr] covers (the sandbox's production) and only while the backups pane shows;
and what it says of a window with a broken archive. The 80x24 picture is test_snapshots.py's
test_backups_pane."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Input
from uikit import Messages, choose_env, finished, highlight, modal_of, outcome, ready, runbook, text_of, wait_for

from console.app import ReleaseConsole
from console.screens.main import MainScreen
from services.backups.pitr import PitrCheck
from services.core.pitr_port import AppliedMigration, Archiver
from widgets.confirm import ConfirmModal
from widgets.migrations import MigrationsPane
from widgets.params import ParamsModal
from widgets.pitr_window import BAR, RecoveryWindow, timeline

pytestmark = pytest.mark.usefixtures("frozen_clock")
DAY = 86_400.0


@pytest.mark.asyncio
async def test_the_window_is_read_for_the_pitr_environment_only_while_the_backups_pane_shows(
        make_ui_app: Callable[..., ReleaseConsole], messages: Messages) -> None:
    async with make_ui_app(30.0).run_test(size=(80, 24), message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await wait_for(pilot, lambda: str(screen.query_one("#backups-title").render()).startswith(
            "5 Backups: production"), "production's panes")
        assert messages.of(MainScreen.WindowRead) == []  # the build log shows: nothing read for a hidden pane
        shown_at = len(messages.seen)
        await pilot.press("5")
        await wait_for(pilot, lambda: messages.of(MainScreen.WindowRead), "the recovery window")
        window = screen.query_one(RecoveryWindow)
        await wait_for(pilot, lambda: window.display, "the window shown")
        read = messages.of(MainScreen.WindowRead)
        assert {m.env for m in read} == {"production"}
        # At the pane's own cadence: never more reads than loads of the panes since it showed.
        loads = [m for m in messages.seen[shown_at:] if isinstance(m, MainScreen.Loaded)]
        assert 1 <= len(read) <= len(loads)
        said = text_of(window)
        assert said.startswith("PITR ") and "last WAL " in said and "◆ " in said
        assert [m.name for m in read[0].report.migrations][-1] in said
        await choose_env(pilot, screen, "staging")  # no [backup.pitr]: hidden, and nothing read
        await wait_for(pilot, lambda: not window.display, "the window hidden for staging")
        assert {m.env for m in messages.of(MainScreen.WindowRead)} == {"production"}


class OneWindow(App[None]):
    def compose(self) -> ComposeResult:
        yield RecoveryWindow()


@pytest.mark.asyncio
async def test_a_broken_archive_and_an_empty_stanza_are_said_in_the_window() -> None:
    now = 1_767_225_600.0
    failing = Archiver(12, "000000010000000000000009", now - 3600, 4, "00000001000000000000000A", now - 60, now)
    broken = PitrCheck("production", "pgBackRest stanza main", ("PostgreSQL's archive_command is failing",), None,
                       failing, now - 2 * DAY, now - 3600,
                       (AppliedMigration("20240801120000_add_expiry_date", now - DAY, now - DAY + 2),))
    empty = PitrCheck("production", "pgBackRest stanza main", ("stanza main has no backup yet",), None, None)
    async with OneWindow().run_test(size=(80, 24)) as pilot:
        window = pilot.app.query_one(RecoveryWindow)
        assert not window.display  # nothing shown before a read
        window.show(broken)
        await pilot.pause()
        said = text_of(window)
        assert "PITR 12-30 00:00 .. 12-31 23:00 UTC (1d)" in said
        assert "last WAL 1h ago: 000000010000000000000009" in said
        assert "◆ 12-31 00:00 20240801120000_add_expiry_date" in said
        assert "! PostgreSQL's archive_command is failing" in said
        window.show(empty)
        await pilot.pause()
        assert text_of(window).splitlines() == ["PITR: no restorable window", "! stanza main has no backup yet"]
        window.show(None)
        assert not window.display


def test_the_time_line_marks_each_migration_where_it_falls() -> None:
    bar = timeline(0.0, 100.0, [0.0, 50.0, 100.0, 250.0])  # one after the window's end: at its edge
    assert len(bar) == BAR and bar[0] == "├" and bar[-1] == "┤"
    inner = bar[1:-1]
    assert [i for i, cell in enumerate(inner) if cell == "◆"] == [0, round(0.5 * (len(inner) - 1)), len(inner) - 1]


@pytest.mark.asyncio
async def test_a_drill_from_the_highlighted_migration_runs_and_leaves_the_live_cluster_as_it_was(
        make_ui_app: Callable[..., ReleaseConsole]) -> None:
    """`J` with a migration highlighted that the recovery window does not hold (the first): the form
    is filled with "before" the window's newest instead, the confirmation says the live cluster is not
    stopped, and the runbook ends with what a restore would lose."""
    app = make_ui_app(300.0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await pilot.press("5")
        window = screen.query_one(RecoveryWindow)
        await wait_for(pilot, lambda: window.report is not None, "the recovery window")
        assert window.report is not None
        newest = window.report.migrations[-1]
        await pilot.press("3")
        pane = screen.query_one(MigrationsPane)
        await wait_for(pilot, lambda: str(screen.query_one("#migrations-title").render()).startswith(
            "3 Migrations: production,"), "production's migrations")
        first = pane.items[0]
        assert first.name not in {m.name for m in window.report.migrations}
        await highlight(pilot, screen, first.name)
        world = app.services.world.envs["production"]
        applied = [m.name for m in world.migrations]

        await pilot.press("J")
        form = await modal_of(pilot, ParamsModal, "the drill's form")
        assert form.query_one("#param-target", Input).value == f"before:{newest.name}"
        await pilot.press("enter")
        modal = await modal_of(pilot, ConfirmModal, "the confirmation")
        assert "into a scratch copy" in modal.prompt and "The live cluster is not stopped or written" in modal.prompt
        await pilot.press(*"production", "enter")
        await finished(pilot, screen)

        assert outcome(screen).startswith("SUCCEEDED"), outcome(screen)
        assert list(runbook(screen).status) == ["target", "confirm", "drill", "report"]
        assert f"a restore would undo {newest.name}" in runbook(screen).details["report"]
        assert [m.name for m in world.migrations] == applied  # the live cluster as it was
