"""The Textual app: thin. It builds the services through the shared factory and pushes the main screen."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from console.screens.loading import LoadingScreen

if TYPE_CHECKING:
    from services.core.container import Services
    from services.environments.overview import EnvironmentRow

# The main screen, its widgets and the services (pydantic, plotext) are imported by the
# start-up worker, after the first frame: see LoadingScreen.
Loader = Callable[[], "Services"]
EXIT_CONFIG = 2


class ReleaseConsole(App[None]):
    CSS_PATH = "console.tcss"
    TITLE = "release-console"
    BINDINGS = [Binding("q", "quit", "Quit", id="app.quit")]

    def __init__(self, services: Services | Loader, *, sandbox: bool, seed: int = 7, time_scale: float = 30.0) -> None:
        super().__init__()
        self.services: Services | None = None if callable(services) else services
        self._loader = services if callable(services) else None
        self.sandbox, self.seed, self.time_scale = sandbox, seed, time_scale
        self.animation_level = "none"  # over SSH every frame costs bandwidth
        self.sub_title = "SANDBOX" if sandbox else ""

    def on_mount(self) -> None:
        if self.services is not None:
            self._show(self.services)
            return
        self.push_screen(LoadingScreen(self.sandbox, self.seed, self.time_scale))
        self.call_after_refresh(self._load)

    @work(thread=True, exclusive=True, group="startup", exit_on_error=False)
    def _load(self) -> None:
        from services.core.config import ConfigError

        assert self._loader is not None
        try:
            services = self._loader()
        except ConfigError as err:
            # Bad config: nothing runs; the error is printed once the terminal is restored.
            self.call_from_thread(self.exit, None, EXIT_CONFIG, f"config error:\n{err}")
            return
        # Imported and fetched off the UI thread, so the main screen's first frame has data.
        import console.screens.main  # noqa: F401
        from services.environments.overview import environment_rows

        rows = environment_rows(services, list(services.config.environments))
        self.call_from_thread(self._show, services, rows)

    def on_unmount(self) -> None:
        if self.services is not None:
            self.services.close()  # quitting: let go of every client and connection

    def _show(self, services: Services, overview: list[EnvironmentRow] | None = None) -> None:
        from console.screens.main import MainScreen

        self.services = services
        self.sub_title = services.config.app.name + (" [SANDBOX]" if services.sandbox else "")
        if isinstance(self.screen, LoadingScreen):
            self.switch_screen(MainScreen(services, self.seed, overview))
        else:
            self.push_screen(MainScreen(services, self.seed, overview))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        from console.screens.main import ACTION_KEYS, PANES, MainScreen
        from services.catalog import all_actions

        yield from super().get_system_commands(screen)
        if not isinstance(screen, MainScreen):
            return
        for kind, spec in sorted(all_actions().items()):
            key = ACTION_KEYS.get(kind, "")
            yield SystemCommand(f"{spec.title} ({key})", f"{kind} on the selected environment",
                                lambda kind=kind: screen.action_start(kind))
        for pane, key in PANES.items():
            yield SystemCommand(f"Show {pane} pane ({key})", f"switch to the {pane} pane",
                                lambda pane=pane: screen.action_show(pane))


def make_app(config: object, *, sandbox: bool, seed: int = 7, time_scale: float = 30.0,
             state: Path | str | None = None, origin: float | None = None) -> ReleaseConsole:
    """The one way the console is built with its services ready: used by the tests and benchmarks."""
    from services import factory
    from services.core.config import ReleaseConfig

    assert isinstance(config, ReleaseConfig)
    services = factory.build(config, sandbox_mode=sandbox, seed=seed, time_scale=time_scale,
                             state=Path(state) if state else None, origin=origin)
    return ReleaseConsole(services, sandbox=sandbox, seed=seed, time_scale=time_scale)


def run_app(config_path: str | None, *, sandbox: bool, seed: int, time_scale: float) -> int:
    """The CLI's path: paint first, then load config and services in a worker."""

    def load() -> Services:
        from services import factory

        config = factory.load_config(config_path, sandbox)
        return factory.build(config, sandbox_mode=sandbox, seed=seed, time_scale=time_scale)

    app = ReleaseConsole(load, sandbox=sandbox, seed=seed, time_scale=time_scale)
    app.run()
    return app.return_code or 0
