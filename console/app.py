"""The Textual app: thin. It builds the services through the shared factory and pushes the main screen."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.theme import Theme

from console.app_keys import APP_BINDINGS
from console.last_seen import SeenKeeper, last_seen_path, read_last_seen, seen_rows
from console.screens.loading import LoadingScreen
from console.theme import keep_theme, saved_theme, theme_path

if TYPE_CHECKING:
    from services.core.container import Services
    from services.environments.overview import EnvironmentRow

# The main screen, its widgets and the services (pydantic) are imported by the
# start-up worker, after the first frame: see LoadingScreen.
Loader = Callable[[], "Services"]
EXIT_CONFIG = 2


class ReleaseConsole(App[None]):
    CSS_PATH = "console.tcss"
    TITLE = "release-console"
    BINDINGS = APP_BINDINGS

    def __init__(self, services: Services | Loader, *, sandbox: bool, seed: int = 7, time_scale: float = 30.0,
                 keymap: dict[str, str] | None = None, last_seen: Path | None = None) -> None:
        """`keymap`: checked by console.keymap.load_keymap; with a loader, it is loaded with the config.
        `last_seen`: where the environments list is kept between sessions (console/last_seen.py)."""
        super().__init__()
        self.keymap = keymap or {}
        self.theme_file = theme_path()
        kept = saved_theme(self.theme_file)
        if kept in self.available_themes:
            self.theme = kept
        self.services: Services | None = None if callable(services) else services
        self._loader = services if callable(services) else None
        self.sandbox, self.seed, self.time_scale = sandbox, seed, time_scale
        self.keeper = SeenKeeper(last_seen) if last_seen else None
        self.animation_level = "none"  # over SSH every frame costs bandwidth
        self.sub_title = "SANDBOX" if sandbox else ""

    def on_mount(self) -> None:
        self.set_keymap(self.keymap)
        self.theme_changed_signal.subscribe(self, self._keep_theme)
        if self.services is not None:
            self._show(self.services)
            return
        seen = read_last_seen(self.keeper.path) if self.keeper and self.keeper.path else None
        self.push_screen(LoadingScreen(self.sandbox, self.seed, self.time_scale, seen))
        self.call_after_refresh(self._load)

    @work(thread=True, exclusive=True, group="startup", exit_on_error=False)
    def _load(self) -> None:
        from console.keymap import load_keymap
        from services.core.config import ConfigError

        assert self._loader is not None
        try:
            services = self._loader()
            keymap = load_keymap(services.config)
        except ConfigError as err:
            # Bad config: nothing runs; the error is printed once the terminal is restored.
            self.call_from_thread(self.exit, None, EXIT_CONFIG, f"config error:\n{err}")
            return
        # Imported and fetched off the UI thread, so the main screen's first frame has data.
        import console.screens.main  # noqa: F401
        from services.environments.overview import environment_rows

        rows = environment_rows(services, list(services.config.environments))
        problem = self.keeper.keep(seen_rows(rows)) if self.keeper else None
        self.call_from_thread(self.set_keymap, keymap)
        self.call_from_thread(self._show, services, rows)
        if problem:
            self.call_from_thread(self.notify, problem, severity="warning", markup=False)

    def on_unmount(self) -> None:
        if self.services is not None:
            self.services.close()  # quitting: let go of every client and connection

    def _show(self, services: Services, overview: list[EnvironmentRow] | None = None) -> None:
        from console.screens.main import MainScreen

        self.services = services
        main = MainScreen(services, self.seed, overview, self.keeper)
        if isinstance(self.screen, LoadingScreen):
            self.call_later(self._replace_loading, main)
        else:
            self.push_screen(main)
            self._name_app(services)

    async def _replace_loading(self, main: Screen[None]) -> None:
        # The title changes once the loading screen is gone: Textual's Header updates its title from a
        # watcher, and one on a screen being removed raises NoMatches (seen as a crash at start-up).
        await self.switch_screen(main)
        assert self.services is not None
        self._name_app(self.services)

    def _name_app(self, services: Services) -> None:
        self.sub_title = services.config.app.name + (" [SANDBOX]" if services.sandbox else "")

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        from console.action_table import ACTIONS, PANES
        from console.screens.main import MainScreen

        yield from super().get_system_commands(screen)
        if not isinstance(screen, MainScreen):
            return
        for entry in sorted(ACTIONS, key=lambda entry: entry.kind):
            key = self.key_of(f"action.{entry.kind}", entry.key)
            yield SystemCommand(f"{entry.title} ({key})", f"{entry.kind} on the selected environment",
                                lambda kind=entry.kind: screen.action_start(kind))
        for pane, key in PANES.items():
            yield SystemCommand(f"Show {pane} pane ({self.key_of(f'pane.{pane}', key)})",
                                f"switch to the {pane} pane", lambda pane=pane: screen.action_show(pane))
        yield SystemCommand(f"Development stack ({self.key_of('screen.dev', '7')})",
                            "compose services: status, up, down, restart, logs, prisma-studio", screen.action_dev_stack)
        yield SystemCommand(f"Show app logs ({self.key_of('screen.logs', 'l')})",
                            "the selected environment's container or pod logs, with CPU and memory",
                            screen.action_logs)
        yield SystemCommand(f"Dependency health ({self.key_of('environments.health', 'h')})",
                            "the selected environment's API, PostgreSQL and Redis in full", screen.action_health_detail)

    def key_of(self, binding_id: str, default: str) -> str:
        """The first key bound to a binding id, as the footer shows it (the keymap applied)."""
        key = self.keymap.get(binding_id, default).split(",")[0]
        return self.get_key_display(Binding(key, "")) if key else ""

    def action_help(self) -> None:
        from console.screens.help import HelpScreen, help_sections

        self.push_screen(HelpScreen(help_sections(self.screen)))

    def _keep_theme(self, theme: Theme) -> None:
        if saved_theme(self.theme_file) == theme.name:
            return  # the one kept already (the start-up theme, or picked again)
        try:
            keep_theme(self.theme_file, theme.name)
        except OSError as err:
            self.notify(f"theme not kept for next time: {self.theme_file}: {err.strerror or err}",
                        severity="warning", markup=False)


def make_app(config: object, *, sandbox: bool, seed: int = 7, time_scale: float = 30.0,
             state: Path | str | None = None, origin: float | None = None) -> ReleaseConsole:
    """The one way the console is built with its services ready: used by the tests and benchmarks."""
    from console.keymap import load_keymap
    from services import factory
    from services.core.config import ReleaseConfig

    assert isinstance(config, ReleaseConfig)
    keymap = load_keymap(config)  # a bad keymap: ConfigError before anything is built
    services = factory.build(config, sandbox_mode=sandbox, seed=seed, time_scale=time_scale,
                             state=Path(state) if state else None, origin=origin)
    return ReleaseConsole(services, sandbox=sandbox, seed=seed, time_scale=time_scale, keymap=keymap)


def run_app(config_path: str | None, *, sandbox: bool, seed: int, time_scale: float, reset: bool = False) -> int:
    """The CLI's path: paint first, then load config and services in a worker."""

    def load() -> Services:
        from services import factory

        config = factory.load_config(config_path, sandbox)
        return factory.build(config, sandbox_mode=sandbox, seed=seed, time_scale=time_scale, reset=reset)

    app = ReleaseConsole(load, sandbox=sandbox, seed=seed, time_scale=time_scale,
                         last_seen=last_seen_path(config_path, sandbox, seed))
    app.run()
    return app.return_code or 0
