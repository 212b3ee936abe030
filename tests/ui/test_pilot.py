"""The console driven with Pilot over the sandbox world: every pane, every action, the
confirmations, cancel, the command palette and resume on start.

Each test asserts on the screen (widget contents) and on the messages the app processed.
Operations run at a high time scale and are awaited by polling, never by fixed sleeps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from functools import partial
from typing import Any

import pytest
from rig.helpers import wait_until
from textual.command import CommandList, CommandPalette
from textual.coordinate import Coordinate
from textual.widgets import ContentSwitcher, DataTable, Input, Label, OptionList, Static
from textual.widgets._toast import Toast
from textual.worker import Worker, WorkerState
from uikit import (
    FAST,
    Messages,
    cancel_confirmed,
    choose_env,
    confirm_modal,
    finished,
    main_screen,
    modal_of,
    notices,
    outcome,
    plain,
    ready,
    runbook,
    submit_defaults,
    text_of,
    wait_for,
)

from console.screens.main import MainScreen
from console.screens.resume import ResumeModal
from services import factory
from services.backups.catalog import list_backups, prune_candidates
from services.catalog import build_operation
from services.core.events import Outcome, StepStatus
from services.core.locks import LockInfo
from widgets.audit import AuditPane
from widgets.backups import BackupsPane
from widgets.banner import SandboxBanner
from widgets.build_log import BuildLogPane
from widgets.canary import CanaryPane, MetricChart
from widgets.confirm import ConfirmModal
from widgets.environments import EnvironmentsPane
from widgets.params import ParamsModal

pytestmark = pytest.mark.asyncio

SIZE = (80, 24)


def current_pane(screen: MainScreen) -> str | None:
    return screen.query_one("#panes", ContentSwitcher).current


def build_log(screen: MainScreen) -> list[str]:
    return screen.query_one(BuildLogPane).lines


def modal_banner(modal: ConfirmModal) -> str:
    return " ".join(text_of(s) for s in modal.query(".sandbox-banner").results(Static))


def more_loaded(messages: Messages, before: int) -> bool:
    return len(messages.of(MainScreen.Loaded)) > before


def operation_workers(messages: Messages, state: WorkerState) -> list[Worker[Any]]:
    return [m.worker for m in messages.of(Worker.StateChanged) if m.worker.group == "operation" and m.state is state]


# --- panes ----------------------------------------------------------------------------------


async def test_number_keys_switch_panes_and_data_arrives(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        assert messages.of(MainScreen.Overview)
        assert messages.of(MainScreen.Loaded)
        assert current_pane(screen) == "build"
        assert app.focused is not None and app.focused.id == "env-table"

        for key, pane, focus in (
            ("2", "build", "build-log"),
            ("3", "migrations", "migrations-table"),
            ("4", "canary", None),
            ("5", "backups", "backups-table"),
            ("6", "audit", "audit-list"),
        ):
            loaded = len(messages.of(MainScreen.Loaded))
            await pilot.press(key)
            assert current_pane(screen) == pane, key
            if focus:
                assert app.focused is not None and app.focused.id == focus, (key, app.focused)
            # Showing a pane reloads its data.
            await wait_for(pilot, partial(more_loaded, messages, loaded), f"data for {pane}")

        await pilot.press("1")
        assert app.focused is not None and app.focused.id == "env-table"
        assert current_pane(screen) == "audit"  # 1 focuses the list; the pane stays


async def test_sandbox_banner_and_environments(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        banner = screen.query_one(SandboxBanner)
        assert banner.region.height == 1 and banner.region.width == SIZE[0]  # on screen, not collapsed
        assert "SANDBOX" in text_of(banner) and "seed 7" in text_of(banner) and f"x{FAST:g}" in text_of(banner)

        table = screen.query_one("#env-table", DataTable)
        assert table.row_count == 3
        labels = [table.get_cell_at(Coordinate(row, 0)).plain for row in range(3)]
        assert labels[:2] == ["development", "staging"]
        # Production is marked apart: in the theme's error colour (red), and by more than colour (a sign or
        # PROD) for NO_COLOR terminals.
        prod = table.get_cell_at(Coordinate(2, 0))
        assert prod.plain.startswith(("produc", "⚠")) and prod.plain not in ("production", "produc")
        assert pilot.app.theme_variables["error"] in str(prod.style) and "reverse" in str(prod.style)
        versions = [table.get_cell_at(Coordinate(row, 1)).plain for row in range(3)]
        assert versions == ["1.5.0-r…", "1.4.2", "1.4.1"]  # cut to the column, the detail shows it whole
        assert table.get_cell_at(Coordinate(2, 2)).plain == "9/9"
        overview = messages.of(MainScreen.Overview)[-1]
        assert [(r.env, r.production) for r in overview.rows] == [
            ("development", False),
            ("staging", False),
            ("production", True),
        ]

        selected = len(messages.of(EnvironmentsPane.Selected))
        await choose_env(pilot, screen, "production")
        assert [m.env for m in messages.of(EnvironmentsPane.Selected)[selected:]][-1] == "production"
        detail = text_of(screen.query_one("#env-detail", Static))
        assert "production (PRODUCTION)" in detail and "lock    free" in detail
        # Selecting reloads the panes for that environment.
        await wait_for(pilot, lambda: messages.of(MainScreen.Loaded)[-1].data.env == "production", "production data")
        await pilot.pause()
        assert "production, 5 applied, 2 pending" in str(screen.query_one("#migrations-title").render())


# --- actions --------------------------------------------------------------------------------


async def test_release_on_development(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        assert screen.selected_env == "development"
        await pilot.press("d")
        assert current_pane(screen) == "build"
        await finished(pilot, screen)
        assert "Runbook: Release 1.5.0 to development" in str(
            runbook(screen).query_one("#runbook-title").render()
        )

        assert outcome(screen).startswith("SUCCEEDED")
        steps = runbook(screen).status
        assert list(steps) == ["check-test", "check-type-check", "check-lint", "build", "policy", "push", "confirm",
                              "deploy", "record", "health"]
        assert set(steps.values()) == {StepStatus.DONE}
        lines = build_log(screen)
        assert lines[0] == "--- Release 1.5.0 to development ---"
        assert len(lines) > 100 and any("compiling module" in line for line in lines)
        assert app.services.world.envs["development"].version == "1.5.0"
        assert operation_workers(messages, WorkerState.SUCCESS)
        assert any(n.startswith("succeeded") for n in notices(app))


async def test_migrate_production_applies_pending(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await wait_for(pilot, lambda: messages.of(MainScreen.Loaded)[-1].data.env == "production", "production data")
        pending = [m.name for m in messages.of(MainScreen.Loaded)[-1].data.migrations if m.state == "pending"]
        assert len(pending) == 2

        await pilot.press("m")
        assert current_pane(screen) == "migrations"
        # Production: the sandbox's pending migrations have blocking lint findings, so a reason first.
        reason = await confirm_modal(pilot)
        assert reason.free_text and "blocking lint findings" in reason.prompt
        await pilot.press(*"drill", "enter")
        # Then the backup runs, then the name must be typed before anything is applied.
        await wait_for(pilot, lambda: runbook(screen).status.get("backup") is StepStatus.DONE, "the backup")
        modal = await confirm_modal(pilot)
        assert modal.expected == "production" and "SANDBOX" in modal_banner(modal)
        assert runbook(screen).status["backup"] is StepStatus.DONE
        assert app.services.world.envs["production"].pending == pending
        await pilot.press(*"production", "enter")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        assert "2 applied" in runbook(screen).details["apply"]
        assert any(line.endswith(f"applying {pending[0]}") for line in build_log(screen))

        # The finish reloads the panes: nothing pending any more, on screen and in the message.
        await wait_for(
            pilot,
            lambda: "0 pending" in str(screen.query_one("#migrations-title").render()),
            "the migrations pane to refresh",
        )
        assert "production, 7 applied, 0 pending" in str(screen.query_one("#migrations-title").render())
        table = screen.query_one("#migrations-table", DataTable)
        assert table.row_count == 7
        assert {table.get_cell_at(Coordinate(r, 1)).plain for r in range(7)} == {"applied"}
        assert not [m for m in messages.of(MainScreen.Loaded)[-1].data.migrations if m.state == "pending"]


async def test_backup_lists_the_new_backup(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        assert screen.query_one(BackupsPane).items == []  # development starts without backups
        await pilot.press("b")
        assert current_pane(screen) == "backups"
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        await wait_for(pilot, lambda: screen.query_one("#backups-table", DataTable).row_count == 1, "the new backup")
        entry = screen.query_one(BackupsPane).items[0]
        assert entry.complete and entry.env == "development"
        assert f"backup {entry.id} complete" == runbook(screen).details["backup"]
        assert "development, 1 found" in str(screen.query_one("#backups-title").render())
        assert "development/" + entry.id in text_of(screen.query_one("#backups-detail", Static))


async def test_a_production_backup_asks_before_retention_deletes(make_ui_app: Any, messages: Messages) -> None:
    """Deleting backups after a backup is confirmed as any destructive action: the name typed; declined
    (esc), the new backup is kept and nothing deleted."""
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        [oldest] = prune_candidates(app.services, "production")

        await pilot.press("b")
        modal = await confirm_modal(pilot)
        assert modal.expected == "production" and modal.prompt.startswith("Delete 1 backup past 30 days")
        assert runbook(screen).status["backup"] is StepStatus.DONE
        await pilot.press("escape")
        await finished(pilot, screen)
        assert outcome(screen).startswith("DECLINED")
        assert any("is complete and kept; nothing deleted" in n for n in notices(app))
        assert oldest.id in {b.id for b in list_backups(app.services, "production")}

        await pilot.press("b")
        modal = await confirm_modal(pilot)
        await pilot.press(*"production", "enter")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        assert runbook(screen).details["retention"] == "1 of 1 past 30 days deleted from sandbox"
        assert oldest.id not in {b.id for b in list_backups(app.services, "production")}


async def test_unpinning_the_highlighted_backup_asks_and_declined_keeps_the_pin(make_ui_app: Any,
                                                                               messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await pilot.press("5")
        await wait_for(pilot, lambda: screen.query_one(BackupsPane).highlighted is not None, "a backup highlighted")
        backup = screen.query_one(BackupsPane).highlighted
        assert backup is not None and backup.env == "production"
        pinned = app.services.runner.run(build_operation(app.services, "backup-pin", "production", {
            "backup_id": backup.id, "release": "v1.4.1"}), lambda event: None, lambda question: None)
        assert pinned.outcome is Outcome.SUCCEEDED, pinned.detail

        await pilot.press("p")  # the form has the highlighted backup; an empty release unpins it
        await submit_defaults(pilot)
        modal = await confirm_modal(pilot)
        assert modal.expected == "production" and "Retention may then delete it" in modal.prompt
        assert modal.prompt.startswith(f"Unpin backup {backup.id} (pinned to v1.4.1")
        await pilot.press("escape")
        await finished(pilot, screen)
        assert outcome(screen).startswith("DECLINED")
        assert next(b for b in list_backups(app.services, "production") if b.id == backup.id).pinned == "v1.4.1"


async def test_canary_in_production_rolls_back(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await pilot.press("c")
        await submit_defaults(pilot)  # version 1.5.0: the sandbox's bad release
        assert current_pane(screen) == "canary"
        modal = await confirm_modal(pilot)  # production: typed before the canary starts
        assert modal.expected == "production"
        assert app.services.world.envs["production"].canary_version is None
        await pilot.press(*"production", "enter")
        await finished(pilot, screen)

        assert outcome(screen).startswith("FAILED: rolled back at check")
        assert runbook(screen).status["monitor"] is StepStatus.FAILED
        # At 80x24 the outcome sits below the steps: the runbook scrolls it into view.
        await wait_for(pilot, lambda: runbook(screen).scroll_y > 0, "the runbook to show the outcome")
        assert "FAILED:&#160;rolled&#160;back" in app.export_screenshot()
        assert runbook(screen).status["apply"] is StepStatus.PENDING  # the promotion: never reached
        world = app.services.world
        assert world.envs["production"].canary_version is None
        assert any("automatic rollback" in n for n in world.notifications)

        pane = screen.query_one(CanaryPane)
        charts = {c.metric: c for c in pane.query(MetricChart)}
        assert set(charts) == {"error_rate", "p95_ms", "cpu_percent", "memory_percent"}
        for chart in charts.values():
            assert len(chart.series["canary"]) >= 3 and len(chart.series["stable"]) >= 3, chart.metric
            assert chart.threshold is not None
        assert charts["error_rate"].pressure() >= 1.0  # the breach that rolled it back
        # The values table redraws within a second: measured values beside their thresholds.
        await wait_for(
            pilot,
            lambda: (
                "errors %" in text_of(pane.query_one("#canary-values", Static))
                and " - " not in text_of(pane.query_one("#canary-values", Static))
            ),
            "the canary values",
        )
        values = text_of(pane.query_one("#canary-values", Static))
        assert "limit" in values and "p95 ms" in values
        # At 80x24 one chart shows: the one closest to its threshold.
        assert pane.has_class("-small")
        await wait_for(pilot, lambda: charts["error_rate"].has_class("-focus"), "the breached chart in focus")
        assert "Canary 1.5.0 in production" in str(
            pane.query_one("#canary-title").render()
        )


async def test_rollback_in_production_needs_the_name_typed(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await pilot.press("R")
        await submit_defaults(pilot)  # the revision: the one before the current
        modal = await confirm_modal(pilot)
        assert modal.expected == "production"
        assert "SANDBOX" in modal_banner(modal)
        assert modal.prompt.startswith("Roll back to revision 2 (1.4.0) in PRODUCTION.\nPlan: update replicas image")
        assert runbook(screen).status["confirm"] is StepStatus.WAITING

        # y must not answer a typed confirmation; a wrong name is refused and the modal stays.
        await pilot.press(*"prod", "enter")
        await pilot.pause()
        assert app.screen is modal
        assert modal.query_one("#typed", Input).value == ""
        assert any("That is not 'production'" in n for n in notices(app))
        assert runbook(screen).status["confirm"] is StepStatus.WAITING

        await pilot.press(*"production", "enter")
        await wait_for(pilot, lambda: app.screen is screen, "the modal to close")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        digest = app.services.registry.digest("ghcr.io/example/food-management:1.4.0")
        assert runbook(screen).details["choose"] == (
            f"revision 2: ghcr.io/example/food-management:1.4.0 at {digest[:19]}")
        assert app.services.world.envs["production"].version == "1.4.0"
        assert app.services.audit.tail(1)[0]["outcome"].startswith("succeeded")


async def test_breaking_a_production_lock_shows_the_holder_asks_why_then_the_name(make_ui_app: Any,
                                                                             messages: Messages) -> None:
    app = make_ui_app()
    locks = app.services.locks
    held = LockInfo("production", "alice@bastion-2", "", 1, 0.0, "deploy 1.4.2", "bastion-2", "boot-2", 7)
    locks._path("production").write_text(json.dumps(dataclasses.asdict(held)))  # another bastion's lock
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await pilot.press("L")
        reason = await confirm_modal(pilot)
        assert reason.free_text and "held by alice@bastion-2" in reason.prompt
        await pilot.press(*"alice is off shift", "enter")
        modal = await confirm_modal(pilot)
        assert modal.expected == "production" and "alice@bastion-2 (pid 1)" in modal.prompt
        assert locks.holder("production") == held  # nothing deleted before the name is typed
        await pilot.press(*"production", "enter")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        assert locks.holder("production") is None
        breaking = next(r for r in app.services.audit.records() if r["outcome"] == "breaking")
        assert breaking["override_reason"] == "alice is off shift"
        assert breaking["params"]["holder"]["boot_id"] == "boot-2"


async def test_restore_staging_after_yes(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "staging")
        await pilot.press("X")
        # The walkthrough asks for its parameters first (backup, health tries): the defaults go on.
        await modal_of(pilot, ParamsModal, "the parameters form")
        await pilot.press("enter")
        modal = await confirm_modal(pilot)
        assert modal.expected is None and "in staging?" in modal.prompt
        assert "SANDBOX" in modal_banner(modal)
        await pilot.press("y")
        await finished(pilot, screen)

        assert outcome(screen).startswith("SUCCEEDED")
        assert set(runbook(screen).status.values()) == {StepStatus.DONE}
        assert runbook(screen).details["verify"] == "2 of 2 sha256 match"
        assert any("db.sql.gz: sha256" in line and "matches" in line for line in build_log(screen))
        assert app.services.world.envs["staging"].running


async def test_prune_lists_first_then_deletes_after_confirming(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await wait_for(pilot, lambda: len(screen.query_one(BackupsPane).items) == 5, "production's backups")
        oldest = screen.query_one(BackupsPane).items[-1].id
        await pilot.press("P")
        modal = await confirm_modal(pilot)
        # The dry run listed what would go before anything is asked, let alone deleted.
        await wait_for(pilot, lambda: any("would delete" in line for line in build_log(screen)), "the dry-run list")
        doomed = [line for line in build_log(screen) if "would delete" in line]
        assert len(doomed) == 1 and f"production/{oldest} in sandbox (41 days old)" in doomed[0]
        assert runbook(screen).details["plan"] == "1 past 30 days; the newest 3 and pinned ones are kept"
        assert modal.expected == "production"

        await pilot.press(*"production", "enter")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        await wait_for(pilot, lambda: len(screen.query_one(BackupsPane).items) == 4, "the pruned list")
        assert oldest not in [e.id for e in screen.query_one(BackupsPane).items]
        assert screen.query_one("#backups-table", DataTable).row_count == 4


async def test_abort_canary_after_yes(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        app.services.world.envs["development"].canary_version = "1.5.0"  # a canary to abort
        await pilot.press("A")
        assert current_pane(screen) == "canary"
        modal = await confirm_modal(pilot)
        assert modal.prompt.startswith("Abort the canary in development?\nPlan: update replicas canary")
        await pilot.press("y")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        assert runbook(screen).details["apply"] == "canary aborted: weight 0, scaled to 0"
        assert app.services.world.envs["development"].canary_version is None


async def test_declining_records_declined(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await pilot.press("R")
        await submit_defaults(pilot)  # the revision: the one before the current
        await confirm_modal(pilot)
        await pilot.press("escape")
        await finished(pilot, screen)

        assert outcome(screen).startswith("DECLINED")
        assert runbook(screen).status["confirm"] is StepStatus.FAILED
        assert runbook(screen).status["apply"] is StepStatus.PENDING  # nothing rolled back
        assert app.services.world.envs["production"].version == "1.4.1"
        last = app.services.audit.tail(1)[0]
        assert (last["env"], last["action"]) == ("production", "rollback")
        assert last["outcome"].startswith(Outcome.DECLINED.value)

        await pilot.press("6")
        # started, the two notifications the sandbox sent (started, cancelled), declined: newest first
        await wait_for(pilot, lambda: screen.query_one("#audit-list", OptionList).option_count == 4, "the audit list")
        shown = [plain(screen.query_one("#audit-list", OptionList).get_option_at_index(i).prompt) for i in range(3)]
        assert "production rollback declined" in shown[0] and "(operator@vm)" in shown[0]
        assert "production notify sent: webhook operation.cancelled" in shown[1]
        assert "production notify sent: webhook operation.started" in shown[2]
        title = str(screen.query_one(AuditPane).query_one("#audit-title").render())
        assert "6 Audit · local: chain verified (unkeyed)" in title  # the sandbox has no shared trail


async def test_r_retries_a_declined_operation_from_its_step(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await pilot.press("R")
        await submit_defaults(pilot)  # the revision: the one before the current
        await confirm_modal(pilot)
        await pilot.press("escape")
        await finished(pilot, screen)
        declined = app.services.journal.recent(1)[0]
        assert declined.status == "declined"

        await pilot.press("r")
        modal = await confirm_modal(pilot)  # back at the confirmation: the step that stopped
        assert modal.expected == "production"
        assert runbook(screen).status["choose"] is StepStatus.DONE and "choose" not in runbook(screen).details
        await pilot.press(*"production", "enter")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        assert app.services.journal.get(declined.id).status == "done"
        assert app.services.world.envs["production"].version == "1.4.0"

        await pilot.press("r")  # nothing left to retry
        assert "nothing to retry: the last operation did not fail" in notices(app)


# --- palette, cancel, errors ----------------------------------------------------------------


async def test_command_palette_starts_a_backup(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), "the command palette")
        await pilot.press(*["space" if c == " " else c for c in "Take a backup"])

        def top_hit() -> str:
            commands = app.screen.query_one(CommandList)
            if not commands.option_count or commands.highlighted is None:
                return ""
            return plain(commands.get_option_at_index(commands.highlighted).prompt)

        await wait_for(pilot, lambda: "Take a backup" in top_hit(), "the backup command")
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: screen.running is not None or runbook(screen).outcome is not None, "the backup to start"
        )
        await finished(pilot, screen)
        assert "Runbook: Back up development" in str(runbook(screen).query_one("#runbook-title").render())
        assert outcome(screen).startswith("SUCCEEDED")
        assert app.services.journal.recent(1)[0].kind == "backup"


async def test_ctrl_x_cancels_a_running_canary(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app(time_scale=30.0)  # a check every second: the canary runs long enough to cancel
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await pilot.press("c")
        await submit_defaults(pilot)
        await wait_for(pilot, lambda: runbook(screen).status.get("monitor") is StepStatus.RUNNING, "monitoring")
        await pilot.press("ctrl+x")
        modal = await confirm_modal(pilot)
        assert modal.prompt.startswith("Cancel canary on development?")
        assert "SANDBOX" in modal_banner(modal)
        await cancel_confirmed(pilot, screen, "monitor")
        assert any("cancelling" in n for n in notices(app))


async def test_ctrl_x_with_nothing_running_says_so(make_ui_app: Any) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+x")
        assert not isinstance(app.screen, ConfirmModal)
        assert "no operation is running" in notices(app)


async def test_worker_error_is_notified_not_fatal(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages, notifications=True) as pilot:
        screen = await ready(pilot)
        # Brackets as an error's text may hold them: shown as they are, never read as markup.
        problem = "audit log unreadable: [/var/lib/audit] [environments.production]"

        def broken() -> None:
            raise RuntimeError(problem)

        app.services.audit.verify = broken
        await pilot.press("6")  # reloads the panes in the pane-data worker
        await wait_for(pilot, lambda: any("audit log unreadable" in n for n in notices(app)), "the error notice")
        assert f"pane-data: RuntimeError: {problem}" in notices(app)
        await wait_for(pilot, lambda: screen.query(Toast), "the toast")
        await pilot.pause()
        assert problem in " ".join(str(t.render()) for t in screen.query(Toast))
        errors = [m for m in messages.of(Worker.StateChanged) if m.state is WorkerState.ERROR]
        # Only the pane-data worker failed; a poll may reload the panes once more before the test reads it.
        assert errors and {m.worker.group for m in errors} == {"pane-data"}
        assert app.is_running and app.screen is screen
        await pilot.press("2")  # still responsive
        assert current_pane(screen) == "build"


async def test_quitting_during_a_confirmation_stops_the_worker(make_ui_app: Any) -> None:
    """Regression: the worker blocked on a confirmation kept the process from exiting."""
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "staging")
        await pilot.press("X")
        await modal_of(pilot, ParamsModal, "the parameters form")
        await pilot.press("enter")
        await confirm_modal(pilot)
        op_id = app.services.journal.recent(1)[0].id
        pump = screen.pump
    assert pump.cancel.is_set()
    journal = app.services.journal
    status = wait_until(lambda: journal.get(op_id).status != "running" and journal.get(op_id).status, timeout=10,
                        interval=0.05, what="the worker to notice the cancel (it polls every 0.2 s)")
    assert status == Outcome.DECLINED.value


# --- resume on start ------------------------------------------------------------------------


def interrupted_migration(state: Any) -> str:
    """Journal a production migration whose process died during 'apply', as a SIGKILL leaves it."""
    services = factory.build(factory.load_config(None, True), sandbox_mode=True, seed=7, state=state)
    op = build_operation(services, "migrate", "production", {})
    journal = services.journal
    journal.begin(op.id, op.kind, op.env, op.title, op.params, [(s.id, s.title) for s in op.steps])
    tables = services.config.migrations.integrity_tables
    journal.save_state(
        op.id, {"counts_before": services.database("production").row_counts(tables), "backup_id": "20260101T000000Z"}
    )
    apply = [s.id for s in op.steps].index("apply")
    for index in range(apply):  # the backup (and, in production, the confirmation) had finished
        journal.step(op.id, index, StepStatus.DONE, "done before the crash")
    journal.step(op.id, apply, StepStatus.RUNNING)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    with sqlite3.connect(journal.path) as db:
        db.execute("UPDATE operations SET pid = ? WHERE id = ?", (int(dead.stdout), op.id))
    assert [r.id for r in journal.interrupted()] == [op.id]
    assert os.getpid() != int(dead.stdout)
    return op.id


async def test_resume_on_start_continues_from_the_step(make_ui_app: Any, ui_state: Any, messages: Messages) -> None:
    op_id = interrupted_migration(ui_state)
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ResumeModal), "the resume offer")
        offer = app.screen
        assert isinstance(offer, ResumeModal) and offer.record.id == op_id
        shown = "\n".join(text_of(s) for s in offer.query(Static).results(Static))
        assert "Interrupted: Migrate production [production]" in shown  # the env, not swallowed as markup
        assert "✓ Back up the database (done)" in shown and "Resume at: Apply pending migrations" in shown

        await pilot.press("r")
        screen = main_screen(pilot)
        await wait_for(pilot, lambda: operation_workers(messages, WorkerState.RUNNING), "the resumed operation")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        assert runbook(screen).status["backup"] is StepStatus.DONE  # not run again
        assert "backup" not in runbook(screen).details
        assert not isinstance(app.screen, ConfirmModal)  # choosing resume was the go-ahead
        assert "2 applied" in runbook(screen).details["apply"]
        record = app.services.journal.get(op_id)
        assert record.status == "done"
        assert app.services.world.envs["production"].pending == []
        verbs = [r["outcome"] for r in app.services.audit.tail(5) if r["params"].get("op_id") == op_id]
        assert verbs[0] == "resumed" and verbs[-1].startswith("succeeded")
        assert app.services.journal.interrupted() == []


async def test_abandon_on_start(make_ui_app: Any, ui_state: Any, messages: Messages) -> None:
    op_id = interrupted_migration(ui_state)
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ResumeModal), "the resume offer")
        await pilot.press("a")
        screen = main_screen(pilot)
        await wait_for(pilot, lambda: app.screen is screen, "the offer to close")
        assert screen.running is None
        record = app.services.journal.get(op_id)
        assert record.status == "abandoned"
        statuses = {s.step_id: s.status for s in record.steps if s.step_id != "lint"}
        assert statuses == {
            "backup": StepStatus.DONE,
            "confirm": StepStatus.DONE,
            "apply": StepStatus.SKIPPED,
            "integrity": StepStatus.SKIPPED,
            "reindex": StepStatus.SKIPPED,
        }
        last = app.services.audit.tail(1)[0]
        assert (last["action"], last["outcome"], last["params"]["op_id"]) == ("abandon", "abandoned", op_id)
        assert any("abandoned Migrate production" in n for n in notices(app))
        assert app.services.world.envs["production"].pending  # nothing was applied


async def test_config_diff_compares_the_highlighted_environment(make_ui_app: Any) -> None:
    from console.screens.config_diff import ConfigDiffScreen

    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "staging")
        await pilot.press("equals_sign")
        diff = app.screen
        assert isinstance(diff, ConfigDiffScreen) and (diff.left, diff.right) == ("staging", "production")
        table = diff.query_one("#diff-table", DataTable)
        shown = {str(table.get_row(key)[1]): [str(cell) for cell in table.get_row(key)] for key in table.rows}
        assert shown["production"][0] == "≠" and shown["production"][2:] == ["no", "yes"]
        assert shown["features.analytics"][0] == " "
        assert "sandbox-secret" not in "".join(cell for row in shown.values() for cell in row)
        everything = table.row_count
        await pilot.press("c")
        assert 0 < table.row_count < everything
        await pilot.press("right_square_bracket")
        assert diff.right == "development"
        assert "development" in str(diff.query_one("#diff-title", Label).render())
        await pilot.press("escape")
        assert app.screen is screen
