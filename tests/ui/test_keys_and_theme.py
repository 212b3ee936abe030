"""Keys, help and theme: a keymap moves keys (footer, palette and help follow), a bad one stops the
console before it starts, `?` shows the keys, a click on a pane's title focuses it, and the theme
picked is kept across starts in a private file."""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static
from textual.widgets._footer import FooterKey
from uikit import OPERATION_TIMEOUT, ready, text_of, wait_for

from console.app import ReleaseConsole
from console.keymap import keymap_path, load_keymap
from console.last_seen import SeenRow, keep_last_seen, last_seen_path, read_last_seen
from console.screens.help import HelpScreen
from console.screens.loading import LoadingScreen
from console.theme import theme_path
from services import factory
from services.core.config import ConfigError, parse
from widgets.build_log import BuildLog

SIZE = (80, 24)


def write_keymap(ui_state: Path, text: str) -> Path:
    path = keymap_path()
    assert path.is_relative_to(ui_state)  # the test's XDG_CONFIG_HOME, never the operator's
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def footer_keys(app: ReleaseConsole) -> dict[str, str]:
    return {key.description: key.key_display for key in app.screen.query(FooterKey)}


# --- the keymap -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_keymap_moves_keys_and_the_footer_palette_and_help_show_them(
    ui_state: Path, make_ui_app: Callable[..., ReleaseConsole]
) -> None:
    write_keymap(ui_state, '"pane.environments" = "0"\npane.migrations = "M"\n')  # quoted and bare dotted ids
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        switcher = screen.query_one("#panes")
        await pilot.press("3")  # the old key: nothing
        assert switcher.current == "build"  # type: ignore[attr-defined]
        await pilot.press("M")  # the new one shows the migrations pane
        assert switcher.current == "migrations"  # type: ignore[attr-defined]
        assert app.focused is not None and app.focused.id == "migrations-table"
        await pilot.press("1")
        assert app.focused.id == "migrations-table"
        await pilot.press("0")
        assert app.focused is not None and app.focused.id == "env-table"
        await pilot.pause()
        assert footer_keys(app)["Envs"] == "0"
        titles = [command.title for command in app.get_system_commands(screen)]
        assert "Show migrations pane (M)" in titles and "Show migrations pane (3)" not in titles
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
        shown = text_of(app.screen.query_one("#help-keys", Static))
        assert " 0         Envs pane" in shown and " M         Migrations pane" in shown
        assert " 3 " not in shown


def test_keymap_toml_wins_over_release_toml_id_by_id(ui_state: Path) -> None:
    write_keymap(ui_state, '[action]\nrelease = "ctrl+r"\n')
    config = factory.load_config(None, True)
    team = config.model_copy(update={"keys": {"action.release": "f5", "action.backup": "ctrl+b"}})
    assert load_keymap(team) == {"action.release": "ctrl+r", "action.backup": "ctrl+b"}


@pytest.mark.parametrize(("keymap", "expected"), [
    ('"action.relase" = "x"', "keymap.toml: action.relase: unknown binding id; did you mean action.release?"),
    ('"action.release" = "m"', "keymap.toml: action.release: 'm' is also action.migrate's key on the main screen"),
    ('"action.release" = "f"', "action.release: 'f' is also buildlog.follow's key on the main screen"),
    ('"action.release" = "up"', "action.release: 'up' is taken by Textual (Cursor up in the tables)"),
    ('"action.release" = "ctlr+r"', "action.release: 'ctlr+r' is not a key name: use e.g."),
    ('"action.release" = 5', 'keymap.toml: keys: action.release: a key must be a string such as "ctrl+r", not int'),
    ('"action.release" = "x', "keymap.toml: syntax:"),
])
def test_a_bad_keymap_is_a_config_error_naming_the_key(ui_state: Path, keymap: str, expected: str) -> None:
    write_keymap(ui_state, keymap + "\n")
    with pytest.raises(ConfigError) as raised:
        load_keymap(factory.load_config(None, True))
    assert expected in str(raised.value)


def test_keys_in_release_toml_are_checked_there(ui_state: Path) -> None:
    config = factory.load_config(None, True)
    with pytest.raises(ConfigError) as raised:
        load_keymap(config.model_copy(update={"keys": {"action.release": "b"}}))
    assert "keys.action.release: 'b' is also action.backup's key" in str(raised.value)
    raw = {"app": {"name": "x", "image": "registry.example/x"},
           "environments": {"dev": {"target": {"kind": "none"}}}, "keys": {"action": {"release": 5}}}
    with pytest.raises(ConfigError) as raised:
        parse(raw, {})
    assert 'action.release: a key must be a string such as "ctrl+r", not int' in str(raised.value)


@pytest.mark.asyncio
async def test_a_bad_keymap_stops_the_console_with_exit_2_before_the_main_screen(
    ui_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_keymap(ui_state, '"action.release" = "m"\n')
    app = ReleaseConsole(lambda: factory.build(factory.load_config(None, True), sandbox_mode=True, state=ui_state),
                         sandbox=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.return_code is not None, "the console to stop")
    assert app.return_code == 2
    assert not any(type(screen).__name__ == "MainScreen" for screen in app.screen_stack)
    assert "action.release: 'm' is also action.migrate's key" in capsys.readouterr().err  # printed on exit


# --- help, clicks -------------------------------------------------------------------------------


@pytest.mark.usefixtures("frozen_clock")
def test_help_snapshot_build_log_focused(snap_compare: Callable[..., bool],
                                         make_ui_app: Callable[..., ReleaseConsole]) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("2", "question_mark")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "the help")
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(make_ui_app(30.0), terminal_size=SIZE, run_before=run_before)


@pytest.mark.asyncio
async def test_help_lists_the_focused_panes_keys_first_and_closes(make_ui_app: Callable[..., ReleaseConsole]) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("5", "question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
        shown = text_of(app.screen.query_one("#help-keys", Static))
        pane, rest = shown.split("Panes")
        assert pane.startswith("Backups pane (focused)") and "Verify a backup" in pane and "Verify a backup" not in rest
        assert "Release pipeline" in rest and "Keys" in rest and "Quit" in rest
        for key in ("escape", "q", "question_mark"):
            await pilot.press(key)
            await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen), f"{key} to close the help")
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "the help again")


@pytest.mark.asyncio
async def test_a_click_on_a_panes_title_focuses_that_pane(make_ui_app: Callable[..., ReleaseConsole]) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        assert isinstance(app.focused, DataTable) and app.focused.id == "env-table"
        await pilot.click("#build-title")
        assert isinstance(app.focused, BuildLog)
        await pilot.click("EnvironmentsPane .title")
        assert app.focused is screen.query_one("#env-table")
        await pilot.press("3")
        await pilot.click("EnvironmentsPane .title")
        await pilot.click("#migrations-title")
        assert app.focused is screen.query_one("#migrations-table")


# --- the theme ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_theme_picked_in_the_palette_is_kept_across_starts(
    ui_state: Path, make_ui_app: Callable[..., ReleaseConsole]
) -> None:
    kept = theme_path()
    assert kept.is_relative_to(ui_state) and not kept.exists()
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app.theme == "textual-dark"
        await pilot.press("ctrl+p")
        await pilot.press(*"theme", "enter")  # the palette's "Theme" command: the theme picker
        await pilot.pause()
        await pilot.press(*"nord", "enter")
        await wait_for(pilot, lambda: app.theme == "nord", "the theme picked")
        await wait_for(pilot, kept.exists, "the theme kept")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    again = make_ui_app()
    async with again.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        assert again.theme == "nord"
        # The panes' colours come from it: production's mark is nord's $error.
        label = screen.query_one("#env-table", DataTable).get_cell_at((2, 0))  # type: ignore[arg-type]
        assert again.theme_variables["error"] in str(label.style)


def test_an_unreadable_theme_file_is_ignored(ui_state: Path, make_ui_app: Callable[..., ReleaseConsole]) -> None:
    kept = theme_path()
    kept.parent.mkdir(parents=True, exist_ok=True)
    for junk in ("not json", '{"theme": "no-such-theme"}', '["nord"]'):
        kept.write_text(junk, encoding="utf-8")
        assert make_ui_app().theme == "textual-dark"



# --- start-up: the list as last seen, stale until the live poll answers -------------------------------


@pytest.mark.asyncio
async def test_startup_draws_the_last_seen_list_marked_stale_then_the_live_one(ui_state: Path) -> None:
    path = last_seen_path(None, True, 7)
    keep_last_seen(path, [SeenRow("staging", "1.3.9", "2/2", False), SeenRow("production", "1.3.8", "9/9", True)],
                   at=time.time() - 180)
    loading = threading.Event()

    def load() -> factory.Services:
        loading.wait(OPERATION_TIMEOUT)  # the live side holds back until the stale list is checked
        return factory.build(factory.load_config(None, True), sandbox_mode=True, state=ui_state)

    app = ReleaseConsole(load, sandbox=True, last_seen=path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, LoadingScreen)
        table = text_of(app.screen.query_one("#last-seen", Static))
        assert " staging       1.3.9     2/2" in table and " ⚠ production  1.3.8     9/9" in table
        assert text_of(app.screen.query_one("#stale", Static)) == "stale: seen 3m ago, checking…"
        loading.set()
        await ready(pilot)
        assert not app.screen.query("#stale")  # the live list replaced it
        await wait_for(pilot, lambda: (seen := read_last_seen(path)) is not None and seen.rows[-1].version == "1.4.1",
                       "the live list kept for the next start")
    seen = read_last_seen(path)
    assert seen is not None and abs(seen.at - time.time()) < 60
    assert [(r.env, r.production) for r in seen.rows] == [("development", False), ("staging", False),
                                                         ("production", True)]
