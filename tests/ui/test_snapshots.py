"""Snapshots of every pane at 80x24, over a sandbox world with a frozen clock (seed 7).

Regenerate with `uv run pytest tests/ui/test_snapshots.py --snapshot-update` and review each
changed SVG in tests/ui/__snapshots__/ as you would review code.

What keeps them repeatable: the sandbox clock starts at a fixed origin (seeded backup ids,
migration dates), the audit log is written beforehand with fixed times and user, toasts are
cleared (but for the one a snapshot shows), the input cursor does not blink, and each run_before
waits for the data it shows.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import ContentSwitcher, Input, OptionList
from uikit import FAST, ORIGIN, choose_env, finished, main_screen, modal_of, outcome, ready, submit_defaults, wait_for

import services.core.audit
from console.app import ReleaseConsole
from services.core.audit import AuditLog
from widgets.audit import AuditPane
from widgets.backups import BackupsPane
from widgets.canary import CanaryPane, MetricChart
from widgets.confirm import ConfirmModal
from widgets.migrations import MigrationsPane
from widgets.params import ParamsModal
from widgets.pitr_window import RecoveryWindow

SIZE = (80, 24)
CALM = 30.0  # the default time scale: nothing runs in these, and ages stay whole days

pytestmark = pytest.mark.usefixtures("frozen_clock")

Snap = Callable[..., bool]


async def select(pilot: Pilot[Any], env: str) -> None:
    screen = await ready(pilot)
    await pilot.press("1", *["down"] * ["development", "staging", "production"].index(env))
    await wait_for(
        pilot,
        lambda: (
            screen.query_one(MigrationsPane).items
            and str(screen.query_one("#migrations-title").render()).startswith(f"3 Migrations: {env},")
        ),
        f"{env}'s data",
    )


async def settle(pilot: Pilot[Any]) -> None:
    """No toasts over the panes; let pending refreshes land."""
    pilot.app.clear_notifications()
    await pilot.pause()


def still_app(make_ui_app: Callable[..., ReleaseConsole], monkeypatch: pytest.MonkeyPatch) -> ReleaseConsole:
    """A calm console whose picture does not move between runs: only the first overview poll (a later
    one could catch the operation's own lock, with a pid that differs every run), and the world's clock
    standing still (a backup's age, a target time and an RTO are measured on it)."""
    monkeypatch.setattr("console.screens.main.POLL_SECONDS", 3600.0)
    app = make_ui_app(CALM)
    monkeypatch.setattr(app.services.world.clock, "now", lambda: ORIGIN)
    return app


async def confirmation(pilot: Pilot[Any]) -> ConfirmModal:
    """The typed confirmation on top, its cursor still."""
    modal = await modal_of(pilot, ConfirmModal, "the confirmation")
    pilot.app.screen.query_one(Input).cursor_blink = False
    return modal


def test_start_environments_and_build(snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await settle(pilot)

    assert snap_compare(make_ui_app(CALM), terminal_size=SIZE, run_before=run_before)


def test_migrations_pane(snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await select(pilot, "production")
        await pilot.press("3")
        assert main_screen(pilot).query_one(MigrationsPane).items[-1].state == "pending"
        await settle(pilot)

    assert snap_compare(make_ui_app(CALM), terminal_size=SIZE, run_before=run_before)


def test_canary_pane_after_a_canary(snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await ready(pilot)
        await pilot.press("c")  # development: no confirmation before it starts
        await submit_defaults(pilot)  # version 1.5.0, the sandbox's bad release
        await finished(pilot, screen)
        pane = screen.query_one(CanaryPane)

        def drawn() -> bool:
            focus = pane.query("MetricChart.-focus").results(MetricChart)
            return any(not chart.dirty for chart in focus)

        await wait_for(pilot, drawn, "the last redraw of the canary chart")
        # The overview shows the lock released and the canary gone, not a poll from mid-run.
        rows = screen.query_one("#environments").rows  # type: ignore[attr-defined]
        await wait_for(  # an overview polled after the abort (the first one also had no lock, no canary)
            pilot,
            lambda: rows["development"].lock is None and rows["development"].canary_version is None
            and any("scaled to 0" in event for event in rows["development"].events),
            "the overview after the canary",
        )
        await settle(pilot)

    # 30x, not FAST's 3000x: the world's clock is scaled real time, so at 3000x (a 30 s check in 10 ms)
    # and still at 300x (100 ms; 1 run in 3 differed on a quiet machine) a scheduling delay decided
    # whether the canary's first checks had data, and the charts differed from run to run. At 30x a
    # check is 1 s of real time: 5 runs in a row gave the same screen.
    assert snap_compare(make_ui_app(FAST / 100), terminal_size=SIZE, run_before=run_before)


def test_canary_pane_showing_the_post_deploy_monitor(snap_compare: Snap,
                                                    make_ui_app: Callable[..., ReleaseConsole]) -> None:
    """A deploy of the sandbox's bad 1.5.0 to staging: the monitor rolls it back; the pane says whose
    charts these are (the post-deploy monitor's: the new version beside the previous one's baseline)."""

    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "staging")
        await pilot.press("t")
        form = await modal_of(pilot, ParamsModal, "the deploy's form")
        form.query_one("#param-version", Input).value = "1.5.0"
        await pilot.press("enter")
        await modal_of(pilot, ConfirmModal, "the deploy's confirmation")
        await pilot.press("y")
        # The monitor's checks are 1 s of real time each (30x), its rollback a few checks in: on a
        # loaded machine that is more than the default wait.
        await finished(pilot, screen, timeout=60)
        assert outcome(screen).startswith("FAILED") and "rolled back at check" in outcome(screen)
        # The world's clock stops just after the rollback's revision: the ages the list shows ("#4 1.5.0
        # deploy 3m ago") no longer depend on how long this machine takes over the waits below.
        clock = screen.services.world.clock  # type: ignore[attr-defined]
        revisions = screen.services.world.envs["staging"].revisions  # type: ignore[attr-defined]
        rollback, deploy = revisions[-1], revisions[-2]
        assert (rollback.action, deploy.action, deploy.image.rpartition(":")[2]) == ("rollback", "deploy", "1.5.0")
        # And the deploy is dated 3 min before it, as on an idle machine: at 30x, each second of load
        # between them was 30 s more of the world's time (the list read "4m ago" once under load).
        revisions[-2] = dataclasses.replace(deploy, when=rollback.when - 180)
        clock.go_on_from(rollback.when + 1, always=True)
        clock.scale = 1e-9
        await pilot.press("4")
        pane = screen.query_one(CanaryPane)
        assert pane.heading == "Post-deploy monitor"
        # (It timed out a few times on a loaded machine: what the screen was doing then is said.)
        await wait_for(pilot, lambda: pane.has_class("-small"), "the pane's one-chart layout at 80x24",
                       state=lambda: f"pane {screen.query_one('#panes', ContentSwitcher).current!r} shown, canary pane"
                       f" {pane.size} on {pilot.app.size}, screen {pilot.app.screen!r}, focus {pilot.app.focused!r}")

        def drawn() -> bool:  # redrawn since it showed: the layout and the chart nearest its limit
            focus = pane.query("MetricChart.-focus").results(MetricChart)
            return not pane.fresh and any(not chart.dirty for chart in focus)

        await wait_for(pilot, drawn, "the last redraw of the monitor's chart")
        rows = screen.query_one("#environments").rows  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: rows["staging"].lock is None and rows["staging"].version == "1.4.2",
                       "the overview after the rollback")
        await settle(pilot)

    # 30x, as the canary's snapshot: a check is 1 s of real time, so every check has its data.
    assert snap_compare(make_ui_app(FAST / 100, monitor="act"), terminal_size=SIZE, run_before=run_before)


def test_canary_pane_with_the_step_ladder(snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole]) -> None:
    """A 3-step canary paused (as ctrl+x does) in its second step: the ladder shows step 1 passed, the canary
    at 25 %, and what can be done from there."""

    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await ready(pilot)
        # development: no confirmation before it starts; 1.4.2 is healthy.
        screen.action_start("canary", {"version": "1.4.2", "steps": "10,25,50", "pause": "5m"})
        pane = screen.query_one(CanaryPane)
        # The pause lands as step 2 starts, before its first check (1 s of real time away): set at once,
        # not through ctrl+x's question (its own tests have it), whose round trip on a loaded machine
        # took long enough for that check to show.
        await wait_for(pilot, lambda: pane.ladder is not None and (pane.ladder.index, pane.ladder.status)
                       == (1, "running"), "the canary in its second step", timeout=30)
        screen.pump.cancel.set()
        await finished(pilot, screen)
        assert "paused at step 2/3 at 25%" in pane.ladder_text().plain

        def drawn() -> bool:
            focus = pane.query("MetricChart.-focus").results(MetricChart)
            return any(not chart.dirty for chart in focus)

        await wait_for(pilot, drawn, "the last redraw of the canary chart")
        rows = screen.query_one("#environments").rows  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: rows["development"].lock is None
                       and rows["development"].canary_version == "1.4.2", "the overview after the pause")
        await settle(pilot)

    # 30x, as the canary snapshot above: a check is 1 s of real time, so the pause lands before the
    # first check of step 2, with step 1's ten checks charted.
    assert snap_compare(make_ui_app(FAST / 100), terminal_size=SIZE, run_before=run_before)


async def backups_with_window(pilot: Pilot[Any], archived_at: float, **problem: Any) -> None:
    """Production's backups pane and, as it has [backup.pitr], its recovery window (read in its own
    worker). The sandbox's last archived WAL follows its running clock: the window is drawn again with
    the WAL archived at `archived_at` (and `problem`: failed_count, last_failed_at, problems)."""
    await select(pilot, "production")
    await pilot.press("5")
    await wait_for(pilot, lambda: len(main_screen(pilot).query_one(BackupsPane).items) == 5, "the backups")
    window = main_screen(pilot).query_one(RecoveryWindow)
    await wait_for(pilot, lambda: window.report is not None, "the recovery window")
    await wait_for(pilot, lambda: not [w for w in pilot.app.workers if w.group in ("pane-data", "pitr-window")
                                       and w.is_running], "the last reads")
    await pilot.pause()
    report = window.report
    assert report is not None and report.archiver is not None
    problems = problem.pop("problems", report.problems)
    archiver = dataclasses.replace(report.archiver, last_archived_wal="000000010000002A01C16DC0",
                                   last_archived_at=archived_at, server_now=ORIGIN, **problem)
    window.show(dataclasses.replace(report, archiver=archiver, window_to=archived_at, problems=problems))
    await settle(pilot)


def test_backups_pane(snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await backups_with_window(pilot, ORIGIN - 2)

    assert snap_compare(make_ui_app(CALM), terminal_size=SIZE, run_before=run_before)


def test_backups_pane_with_wal_archiving_broken(snap_compare: Snap,
                                                make_ui_app: Callable[..., ReleaseConsole]) -> None:
    """The window ends at the last WAL archived, an hour ago; the failure is said in the error colour."""
    async def run_before(pilot: Pilot[Any]) -> None:
        await backups_with_window(pilot, ORIGIN - 3600, failed_count=61, last_failed_wal="000000010000002A01C16DC1",
                                  last_failed_at=ORIGIN - 30, problems=(
                                      "PostgreSQL's archive_command is failing: 000000010000002A01C16DC1 failed"
                                      " 0 min ago, 61 failures in all",))

    assert snap_compare(make_ui_app(CALM), terminal_size=SIZE, run_before=run_before)


@pytest.fixture
def written_audit(ui_state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuditLog]:
    """An audit log written beforehand, each record a minute apart from 2026-01-01 09:00 UTC."""
    clock = iter(range(10))

    class FixedTime:
        strftime = staticmethod(time.strftime)

        @staticmethod
        def gmtime() -> time.struct_time:
            return time.gmtime(ORIGIN + 9 * 3600 + 60 * next(clock))

    audit = AuditLog(ui_state / "sandbox-audit.jsonl")
    with monkeypatch.context() as patch:
        patch.setattr(services.core.audit, "time", FixedTime)
        audit.append("production", "release", {"version": "1.5.0", "op_id": "a"}, "started")
        audit.append("production", "release", {"version": "1.5.0", "op_id": "a"}, "succeeded: 7 steps done")
        audit.append("staging", "restore", {"op_id": "b"}, "declined: not confirmed: Stop services and restore")
        audit.append(
            "production",
            "canary",
            {"op_id": "c"},
            "failed: rolled back at check 6: error_rate: 0.0128 vs threshold 0.0121 -> BREACH",
        )
        audit.append("production", "rollback", {"op_id": "d"}, "succeeded: 4 steps done", "hotfix window, INC-142")
    yield audit


def test_audit_pane(snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole], written_audit: AuditLog) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await ready(pilot)
        await pilot.press("6")
        await wait_for(
            pilot,
            lambda: screen.query_one(AuditPane).query_one("#audit-list", OptionList).option_count == 5,
            "the audit records",
        )
        await settle(pilot)

    assert written_audit.verify().ok
    assert snap_compare(make_ui_app(CALM), terminal_size=SIZE, run_before=run_before)


def test_production_typed_confirmation(
    snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the first overview poll runs: a later one could catch this rollback's own lock behind
    # the modal, with a pid that differs every run.
    monkeypatch.setattr("console.screens.main.POLL_SECONDS", 3600.0)

    async def run_before(pilot: Pilot[Any]) -> None:
        await select(pilot, "production")
        await pilot.press("R")
        await submit_defaults(pilot)
        await confirmation(pilot)
        await settle(pilot)

    assert snap_compare(make_ui_app(CALM), terminal_size=SIZE, run_before=run_before)


def test_disaster_recovery_confirmation_names_what_is_lost(
    snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DR restore's typed confirmation at 80x24: the backup, its time and age, that every write since
    is lost, and the integrity tables' rows now against in the backup (from its signed manifest)."""
    app = still_app(make_ui_app, monkeypatch)

    async def run_before(pilot: Pilot[Any]) -> None:
        await select(pilot, "production")
        await pilot.press("X")
        await submit_defaults(pilot)
        modal = await confirmation(pilot)
        assert "Every write to production since then will be LOST." in modal.prompt
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_point_in_time_restore_confirmation_names_the_target_and_the_migration_undone(
    snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`I` on production, "before" its newest migration: after the target step (the window checked), the
    typed confirmation names the time restored to and the migration it undoes; the runbook has the whole
    column, as a checklist (the recovery window is test_backups_pane's)."""
    app = still_app(make_ui_app, monkeypatch)

    async def run_before(pilot: Pilot[Any]) -> None:
        await select(pilot, "production")
        await pilot.press("5")
        window = pilot.app.screen.query_one(RecoveryWindow)
        await wait_for(pilot, lambda: window.report is not None, "the recovery window behind the form")
        await pilot.press("I")
        await modal_of(pilot, ParamsModal, "the parameters form")
        await pilot.press(*"before:20240618160000_recipe_tags", "enter")
        modal = await confirmation(pilot)
        assert "will be LOST, and migration 20240618160000_recipe_tags undone" in modal.prompt
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_runbook_with_its_toast_after_a_drill(
    snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the end of an operation its toast sits in the environments column: the runbook's last step
    (the drill's RTO) and its outcome stay in view beside it."""
    app = still_app(make_ui_app, monkeypatch)

    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "staging")
        await pilot.press("D")
        await submit_defaults(pilot)
        await modal_of(pilot, ConfirmModal, "the confirmation")
        await pilot.press("y")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        await wait_for(pilot, lambda: pilot.app._notifications, "the toast")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_no_color(
    snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_ui_app(CALM)
    assert app.no_color

    async def run_before(pilot: Pilot[Any]) -> None:
        await select(pilot, "production")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
