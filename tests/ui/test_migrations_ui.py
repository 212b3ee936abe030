"""Migrations in the console, driven with Pilot over the sandbox world at 80x24: the lint summary
and a pending migration's safer way, production's override reason (refused empty, declined, then
retried), expand/contract through its form phase by phase, the palette, and resolve's refusal.
Two snapshots (frozen clock): the add-column form, and the lint detail of a pending migration.

Regenerate the snapshots with `uv run pytest tests/ui/test_migrations_ui.py --snapshot-update`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input, Static
from textual.widgets._toast import Toast
from uikit import (
    Messages,
    confirm_modal,
    finished,
    highlight,
    main_screen,
    modal_of,
    notices,
    outcome,
    plain,
    ready,
    runbook,
    text_of,
    wait_for,
)
from uikit import choose_env as select_env

from console.app import ReleaseConsole
from console.screens.main import MainScreen
from services.catalog import all_actions
from services.core.events import Event, OperationStarted, Progress, StepStatus
from services.core.ports import Fill
from services.migrations.deploy import lint_pending
from widgets.migrations import MigrationsPane
from widgets.params import ParamsModal

SIZE = (80, 24)
CALM = 30.0  # the default time scale, for the snapshots: nothing runs in them
NULL = Fill(expression="NULL")  # counts rows whose column IS NULL

Snap = Callable[..., bool]


# --- helpers --------------------------------------------------------------------------------


def keys(text: str) -> list[str]:
    return ["space" if c == " " else c for c in text]


def record_events(screen: MainScreen, monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    """Every event the screen takes from the operation's pump (Progress never becomes a message)."""
    seen: list[Event] = []
    dispatch = screen.dispatch

    def recording(batch: list[Event]) -> None:
        seen.extend(batch)
        dispatch(batch)

    monkeypatch.setattr(screen, "dispatch", recording)
    return seen


async def choose_env(pilot: Pilot[Any], screen: MainScreen, env: str) -> None:
    """Select env in the list and wait for its migrations to be shown."""
    await select_env(pilot, screen, env)
    await wait_for(
        pilot,
        lambda: str(screen.query_one("#migrations-title").render()).startswith(f"3 Migrations: {env},"),
        f"{env}'s migrations",
    )


async def params_modal(pilot: Pilot[Any]) -> ParamsModal:
    return await modal_of(pilot, ParamsModal, "the parameters form")


def field(form: ParamsModal, name: str) -> Input:
    return form.query_one(f"#param-{name}", Input)


async def fill(pilot: Pilot[Any], form: ParamsModal, **values: str) -> None:
    """Type each value into its field, replacing what the field held."""
    for name, value in values.items():
        box = field(form, name)
        box.focus()
        box.value = ""
        await pilot.pause()
        await pilot.press(*keys(value))
        assert box.value == value, name


async def run_add_column(pilot: Pilot[Any], screen: MainScreen, **values: str) -> None:
    """e, fill the form, Enter; wait for the phase to finish."""
    await pilot.press("e")
    form = await params_modal(pilot)
    await fill(pilot, form, **values)
    await pilot.press("enter")
    await wait_for(pilot, lambda: pilot.app.screen is screen, "the form to close")
    await finished(pilot, screen)


# --- lint in the migrations pane --------------------------------------------------------------


@pytest.mark.asyncio
async def test_lint_summary_and_a_pending_migrations_safer_way(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await pilot.press("3")
        findings = lint_pending(app.services, "production")
        blocking = sum(f.blocking for f in findings)
        assert blocking and findings  # the sandbox's pending migrations have something to flag
        assert messages.of(MainScreen.Loaded)[-1].data.findings == findings

        summary = text_of(screen.query_one("#migrations-lint", Static))
        assert f"lint: {blocking} blocking, {len(findings) - blocking} warnings;" in summary
        for finding in findings:
            assert f"{'✗' if finding.blocking else '!'} {finding.rule} {finding.migration}:{finding.line}" in summary

        pane = screen.query_one(MigrationsPane)
        detail = screen.query_one("#migrations-detail", Static)
        applied = next(m for m in pane.items if m.state == "applied")
        await highlight(pilot, screen, applied.name)
        assert "safer:" not in text_of(detail) and "checksum" in text_of(detail)

        pending = [m.name for m in pane.items if m.state == "pending"]
        assert pending == app.services.world.envs["production"].pending
        for name in pending:
            await highlight(pilot, screen, name)
            shown = text_of(detail)
            assert shown.startswith(f"{name}\npending"), shown
            mine = [f for f in findings if f.migration == name]
            assert mine and shown.count("safer:") == len(mine)
            for finding in mine:
                assert f"{finding.rule} (line {finding.line}): {finding.message}" in shown
                assert f"safer: {finding.safer}" in shown
            # Blocking ones first, as in the summary: at 80x24 the last ones fall below the fold.
            marks = [line[0] for line in shown.splitlines() if line[:2] in ("✗ ", "! ")]
            assert marks == sorted(marks, key=lambda mark: mark != "✗") and len(marks) == len(mine)
        assert any(f.migration == pending[0] and not f.blocking for f in findings)  # the order mattered there


# --- production: the override reason ---------------------------------------------------------


@pytest.mark.asyncio
async def test_production_override_reason_refused_empty_declined_then_retried(
    make_ui_app: Any, messages: Messages
) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        world = app.services.world
        pending = list(world.envs["production"].pending)
        findings = lint_pending(app.services, "production")

        await pilot.press("m")
        modal = await confirm_modal(pilot)
        # First a reason, free text: the pending migrations have blocking findings.
        assert modal.free_text and modal.expected is None
        assert "blocking lint findings in PRODUCTION" in modal.prompt
        assert runbook(screen).status["lint"] is StepStatus.WAITING

        await pilot.press("enter")  # no reason: refused, the modal stays
        await pilot.pause()
        assert app.screen is modal
        assert "Give a reason, or Esc to cancel." in notices(app)
        assert runbook(screen).status["lint"] is StepStatus.WAITING

        await pilot.press("escape")
        await finished(pilot, screen)
        assert outcome(screen).startswith("DECLINED: no override reason given")
        assert runbook(screen).status["lint"] is StepStatus.FAILED
        assert {runbook(screen).status[s] for s in ("backup", "confirm", "apply")} == {StepStatus.PENDING}
        assert world.envs["production"].pending == pending  # nothing applied
        declined = app.services.journal.recent(1)[0]
        assert (declined.kind, declined.status) == ("migrate", "declined")
        last = app.services.audit.tail(1)[0]
        assert last["outcome"].startswith("declined") and last["override_reason"] is None

        await pilot.press("r")  # retry: from the lint step, so the reason is asked again
        reason = await confirm_modal(pilot)
        assert reason.free_text
        await pilot.press(*keys("INC-7 drill, lint reviewed"), "enter")
        await wait_for(pilot, lambda: runbook(screen).status.get("backup") is StepStatus.DONE, "the backup")
        typed = await confirm_modal(pilot)
        assert typed.expected == "production" and not typed.free_text
        assert world.envs["production"].pending == pending  # still nothing applied before the name
        await pilot.press(*"production", "enter")
        await finished(pilot, screen)

        assert outcome(screen).startswith("SUCCEEDED")
        blocking = sum(f.blocking for f in findings)
        assert runbook(screen).details["lint"] == f"{blocking} blocking, {len(findings) - blocking} warnings"
        assert world.envs["production"].pending == []
        assert app.services.journal.get(declined.id).status == "done"
        last = app.services.audit.tail(1)[0]
        assert (last["env"], last["action"]) == ("production", "migrate")
        assert last["outcome"].startswith("succeeded")
        assert last["override_reason"] == "INC-7 drill, lint reviewed"


# --- expand/contract --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_add_column_form_then_expand_backfill_contract_on_staging(
    make_ui_app: Any, messages: Messages, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "staging")
        events = record_events(screen, monkeypatch)
        schema = app.services.schema("staging")
        assert "expiresAt" not in schema.table("Ingredient").columns

        await pilot.press("e")
        form = await params_modal(pilot)
        assert form.title_text == "Expand/contract: add a column (expand, backfill, contract) on staging"
        names = [p.name for p in form.params]
        assert names[:5] == ["table", "column", "type", "backfill", "phase"] and "batch_size" in names
        assert {n: field(form, n).value for n in names[:5]} == {
            "table": "",
            "column": "",
            "type": "",
            "backfill": "",
            "phase": "expand",
        }
        assert app.focused is field(form, "table")

        # Required fields empty: refused with a notice, the form stays, nothing starts.
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is form
        assert "table, column is required" in notices(app)
        assert screen.running is None and not app.services.journal.recent()

        await fill(pilot, form, table="Ingredient", column="expiresAt", type="timestamp(3)")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen, "the form to close")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED"), outcome(screen)
        assert "Runbook: Expand/contract: add Ingredient.expiresAt: expand" in str(
            runbook(screen).query_one("#runbook-title").render()
        )
        assert runbook(screen).status == {"check": StepStatus.DONE, "expand": StepStatus.DONE}
        column = schema.table("Ingredient").columns["expiresAt"]
        assert (column.type, column.not_null) == ("timestamp(3)", False)
        rows, nulls = schema.count("Ingredient", "expiresAt", NULL)
        assert rows > 1000 and nulls == rows

        await run_add_column(pilot, screen, table="Ingredient", column="expiresAt", backfill="now()", phase="backfill")
        assert outcome(screen).startswith("SUCCEEDED"), outcome(screen)
        assert runbook(screen).details["backfill"].startswith(f"{rows} rows in 2 batches")
        progress = [e for e in events if isinstance(e, Progress) and e.step_id == "backfill"]
        assert progress and {e.unit for e in progress} == {"rows"}
        assert (progress[-1].done, progress[-1].total) == (rows, rows)
        assert text_of(runbook(screen).query_one("#runbook-progress", Static)).strip().endswith(f"{rows}/{rows} rows")
        assert schema.count("Ingredient", "expiresAt", NULL) == (rows, 0)
        assert not schema.table("Ingredient").columns["expiresAt"].not_null

        await run_add_column(pilot, screen, table="Ingredient", column="expiresAt", phase="contract")
        assert outcome(screen).startswith("SUCCEEDED"), outcome(screen)
        assert list(runbook(screen).status) == ["check", "add-check", "validate", "not-null"]
        info = schema.table("Ingredient")
        assert info.columns["expiresAt"].not_null and info.constraints == {}  # the check was dropped

        started = [e for e in events if isinstance(e, OperationStarted)]
        assert [e.title.rsplit(": ", 1)[-1] for e in started] == ["expand", "backfill", "contract"]
        assert [r.status for r in app.services.journal.recent(3)] == ["done"] * 3


@pytest.mark.asyncio
async def test_rename_column_form_escape_starts_nothing(
    make_ui_app: Any, messages: Messages, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages) as pilot:
        screen = await ready(pilot)
        events = record_events(screen, monkeypatch)
        await pilot.press("n")
        form = await params_modal(pilot)
        assert form.title_text.startswith("Expand/contract: rename a column")
        assert [p.name for p in form.params][:4] == ["table", "column", "new_column", "phase"]
        assert field(form, "new_column").value == "" and field(form, "phase").value == "expand"
        await fill(pilot, form, table="Ingredient", column="qty")  # half filled, then thought better of

        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, "the form to close")
        await pilot.pause()  # the form's result is handled: a launch would have set `running` by now
        assert screen.running is None
        assert app.services.journal.recent() == []
        assert not [e for e in events if isinstance(e, OperationStarted)]
        assert not runbook(screen).has_class("-active")
        assert "qty" in app.services.schema("development").table("Ingredient").columns


@pytest.mark.asyncio
async def test_palette_offers_add_column_and_opens_the_same_form(make_ui_app: Any) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), "the command palette")
        await pilot.press(*keys("add a column"))

        def top_hit() -> str:
            commands = app.screen.query_one(CommandList)
            if not commands.option_count or commands.highlighted is None:
                return ""
            return plain(commands.get_option_at_index(commands.highlighted).prompt)

        await wait_for(pilot, lambda: "Expand/contract: add a column" in top_hit(), "the add-column command")
        assert "(e)" in top_hit()
        await pilot.press("enter")
        form = await params_modal(pilot)
        assert form.title_text == "Expand/contract: add a column (expand, backfill, contract) on development"
        assert form.params == all_actions()["expand-add-column"].params
        assert field(form, "phase").value == "expand" and app.focused is field(form, "table")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, "the form to close")
        assert screen.running is None


# --- resolve ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_resolve_without_a_failed_migration_is_refused(make_ui_app: Any, messages: Messages) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, message_hook=messages, notifications=True) as pilot:
        screen = await ready(pilot)
        await pilot.press("3")
        pane = screen.query_one(MigrationsPane)
        assert pane.highlighted is not None and pane.highlighted.state == "applied"

        await pilot.press("V")
        form = await params_modal(pilot)
        assert [p.name for p in form.params] == ["applied", "rolled_back"]
        assert field(form, "applied").value == "" and field(form, "rolled_back").value == ""  # nothing failed
        await pilot.press("enter")  # nothing given: the form passes it on, the action refuses it
        await wait_for(pilot, lambda: app.screen is screen, "the form to close")
        problem = "resolve needs exactly one of --applied MIGRATION or --rolled-back MIGRATION"
        assert problem in notices(app)
        await wait_for(pilot, lambda: screen.query(Toast), "the toast")
        await pilot.pause()
        assert problem in " ".join(str(t.render()) for t in screen.query(Toast))
        assert screen.running is None and app.services.journal.recent() == []
        assert not runbook(screen).has_class("-active")

        # A failed migration highlighted: the form comes pre-filled to mark it rolled back.
        state = app.services.world.envs["development"]
        # Its logs as the database wrote them: brackets are shown, never read as markup (a "[/" crashed it).
        logs = 'ERROR: column "qty" does not exist [42703] at [/prisma/migrations/x/migration.sql:3]'
        failed = dataclasses.replace(state.migrations[-1], state="failed", logs=logs)
        state.migrations[-1] = failed
        await pilot.press("3")  # reloads the pane
        await wait_for(pilot, lambda: any(m.state == "failed" for m in pane.items), "the failed migration")
        await highlight(pilot, screen, failed.name)
        assert text_of(screen.query_one("#migrations-detail", Static)).endswith(logs)
        await pilot.press("V")
        form = await params_modal(pilot)
        assert field(form, "rolled_back").value == failed.name and field(form, "applied").value == ""
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, "the form to close")
        assert app.services.journal.recent() == []


# --- snapshots --------------------------------------------------------------------------------


async def settle(pilot: Pilot[Any]) -> None:
    """No toasts over the panes, no blinking cursor; let pending refreshes land."""
    pilot.app.clear_notifications()
    for box in pilot.app.screen.query(Input).results(Input):
        box.cursor_blink = False
    await pilot.pause()


@pytest.mark.usefixtures("frozen_clock")
def test_snapshot_add_column_form(snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "staging")
        await pilot.press("e")
        await params_modal(pilot)
        await settle(pilot)

    assert snap_compare(make_ui_app(CALM), terminal_size=SIZE, run_before=run_before)


@pytest.mark.usefixtures("frozen_clock")
def test_snapshot_pending_migration_lint_detail(snap_compare: Snap, make_ui_app: Callable[..., ReleaseConsole]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await pilot.press("3")
        pane = main_screen(pilot).query_one(MigrationsPane)
        await highlight(pilot, screen, next(m.name for m in pane.items if m.state == "pending"))
        assert "safer:" in text_of(screen.query_one("#migrations-detail", Static))
        await settle(pilot)

    assert snap_compare(make_ui_app(CALM), terminal_size=SIZE, run_before=run_before)
