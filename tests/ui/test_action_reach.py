"""Every action is reachable three ways, all built from console/action_table.py: by its key on the
main screen, from the command palette, and as a CLI command. The table agrees with the catalog."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest
from textual.binding import Binding
from uikit import ready

from console.action_table import ACTIONS, PANES, commands
from console.app import ReleaseConsole
from console.cli import parser
from services.catalog import all_actions

SIZE = (80, 24)


def test_the_table_has_every_action_of_the_catalog_with_its_title() -> None:
    catalog = all_actions()
    assert sorted(entry.kind for entry in ACTIONS) == sorted(catalog)
    assert {entry.kind: entry.title for entry in ACTIONS} == {kind: spec.title for kind, spec in catalog.items()}
    assert all(entry.pane in PANES for entry in ACTIONS)


def sub_command(top: argparse.ArgumentParser, words: tuple[str, ...]) -> argparse.ArgumentParser:
    for word in words:
        choices = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices
        assert word in choices, f"{' '.join(words)}: no CLI command {word!r}"
        top = choices[word]
    return top


def test_every_action_is_a_cli_command_that_runs_it() -> None:
    top = parser()
    assert set(commands().values()) == {entry.kind for entry in ACTIONS}
    for words, kind in commands().items():
        assert sub_command(top, words).get_default("action_kind") == kind, words


@pytest.mark.asyncio
async def test_every_action_has_its_key_on_the_main_screen_and_a_palette_command(
    make_ui_app: Callable[..., ReleaseConsole]
) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        active = screen.active_bindings  # what a key press resolves to, the focused widget first
        palette = {command.title for command in app.get_system_commands(screen)}
        for entry in ACTIONS:
            bound = active.get(entry.key)
            assert bound is not None and bound.binding.action == f"start('{entry.kind}')", entry
            assert f"{entry.title} ({app.get_key_display(Binding(entry.key, ''))})" in palette, entry
