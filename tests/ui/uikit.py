"""Helpers for driving the console with Pilot: waiting without fixed sleeps, reading widgets."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from rich.console import Console, RenderableType
from textual.content import Content
from textual.message import Message
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, Static

from console.screens.main import MainScreen
from widgets.environments import EnvironmentsPane
from widgets.migrations import MigrationsPane
from widgets.runbook import RunbookPanel

SEED = 7
FAST = 3000.0  # simulated seconds per real second: a whole sandbox operation takes well under a second
# 2026-01-01 00:00:00 UTC: the frozen sandbox clock for snapshots (seeded backup ids, migration dates).
ORIGIN = 1_767_225_600.0
OPERATION_TIMEOUT = 20.0

M = TypeVar("M", bound=Message)


class Messages:
    """A message_hook that keeps every message the app processed."""

    def __init__(self) -> None:
        self.seen: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.seen.append(message)

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.seen if isinstance(m, kind)]


async def wait_for(
    pilot: Pilot[Any], predicate: Callable[[], object], what: str, timeout: float = OPERATION_TIMEOUT,
    state: Callable[[], object] | None = None,
) -> None:
    """Let the app run until predicate() holds; fail naming `what` (and what `state` says then) after
    timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}" + (f"; {state()}" if state else ""))
        await pilot.pause(0.05)


def main_screen(pilot: Pilot[Any]) -> MainScreen:
    return next(s for s in pilot.app.screen_stack if isinstance(s, MainScreen))


async def ready(pilot: Pilot[Any]) -> MainScreen:
    """Wait for the main screen with its first overview and pane data shown."""
    app = pilot.app
    # Composed, not only on the stack: a screen switched to is on the stack before its widgets exist.
    await wait_for(pilot, lambda: any(isinstance(s, MainScreen) and s.query(EnvironmentsPane)
                                      for s in app.screen_stack), "the main screen")
    screen = main_screen(pilot)
    await wait_for(pilot, lambda: len(screen.query_one(EnvironmentsPane).rows) == 3, "the environments overview")
    await wait_for(pilot, lambda: screen.query_one(MigrationsPane).items, "the pane data")
    await wait_for(pilot, lambda: len(screen.health.latest) == 3, "the first health poll")
    return screen


async def finished(pilot: Pilot[Any], screen: MainScreen, timeout: float = OPERATION_TIMEOUT) -> None:
    """Wait until the running operation finished and its outcome reached the screen."""
    await wait_for(pilot, lambda: screen.running is None, "the operation to finish", timeout)
    await pilot.pause()


def plain(renderable: RenderableType | Any, width: int = 100) -> str:
    """What a renderable (a Static's content, a rich Table, Text) reads as, without styles."""
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def text_of(static: Static) -> str:
    """A Static's text as shown: strings through the widget's own markup setting, rich objects rendered."""
    if isinstance(static.content, (str, Content)):
        return str(static.render())
    return plain(static.content)


ModalT = TypeVar("ModalT", bound=Screen[Any])


async def modal_of(pilot: Pilot[Any], kind: type[ModalT], what: str) -> ModalT:
    """The modal on top once it is on screen with its widgets composed, not merely pushed."""

    def ready() -> bool:
        top = pilot.app.screen
        return isinstance(top, kind) and top.is_mounted and bool(top.query("Label"))

    await wait_for(pilot, ready, what)
    top = pilot.app.screen
    assert isinstance(top, kind)
    return top


async def confirm_modal(pilot: Pilot[Any]) -> Any:
    """The confirmation on top (a widgets.confirm.ConfirmModal)."""
    from widgets.confirm import ConfirmModal

    return await modal_of(pilot, ConfirmModal, "a confirmation")


async def cancel_confirmed(pilot: Pilot[Any], screen: MainScreen, step: str, timeout: float = 10) -> None:
    """Answer ctrl+x's confirmation yes: the operation ends cancelled at `step`, which the journal
    keeps for resume."""
    from services.core.events import StepStatus

    await pilot.press("y")
    await finished(pilot, screen, timeout=timeout)
    assert outcome(screen).startswith("CANCELLED")
    assert runbook(screen).status[step] is StepStatus.FAILED
    record = pilot.app.services.journal.recent(1)[0]
    assert record.status == "cancelled"
    assert record.steps[record.resume_index].step_id == step  # resumable at that step


async def submit_defaults(pilot: Pilot[Any]) -> None:
    """An action with optional parameters opens its form first: take the defaults (Enter)."""
    from widgets.params import ParamsModal

    form = await modal_of(pilot, ParamsModal, "the parameters form")
    await pilot.press("enter")
    await wait_for(pilot, lambda: pilot.app.screen is not form, "the form to close")


ENVS = ["development", "staging", "production"]  # the sandbox's, in list order


def runbook(screen: MainScreen) -> RunbookPanel:
    return screen.query_one(RunbookPanel)


def outcome(screen: MainScreen) -> str:
    text = runbook(screen).outcome
    return text.plain if text is not None else ""


def notices(app: Any) -> list[str]:
    return [n.message for n in app._notifications]


async def choose_env(pilot: Pilot[Any], screen: MainScreen, env: str) -> None:
    """Select env in the environments list with the keyboard, as an operator would."""
    await pilot.press("1")
    table = screen.query_one("#env-table", DataTable)
    moves = ENVS.index(env) - table.cursor_row
    await pilot.press(*(["down"] * moves if moves > 0 else ["up"] * -moves))
    assert screen.selected_env == env


async def highlight(pilot: Pilot[Any], screen: MainScreen, name: str) -> None:
    """Move the migrations table's cursor to the named migration (the table has focus)."""
    pane = screen.query_one(MigrationsPane)
    table = pane.query_one(DataTable)
    assert pilot.app.focused is table
    moves = [m.name for m in pane.items].index(name) - table.cursor_row
    await pilot.press(*(["down"] * moves if moves > 0 else ["up"] * -moves))
    assert pane.highlighted is not None and pane.highlighted.name == name
