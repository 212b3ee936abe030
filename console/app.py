"""The Textual app: thin. It builds the services through the shared factory and pushes the main screen."""

from __future__ import annotations

import os
from collections.abc import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from console.screens.main import ACTION_KEYS, PANES, MainScreen
from services import factory
from services.catalog import all_actions
from services.config import ReleaseConfig
from services.factory import Services


class ReleaseConsole(App[None]):
    CSS_PATH = "console.tcss"
    TITLE = "release-console"
    BINDINGS = [Binding("q", "quit", "Quit", id="app.quit")]

    def __init__(self, services: Services, seed: int = 7) -> None:
        super().__init__()
        self.services = services
        self.seed = seed
        self.animation_level = "none"  # over SSH every frame costs bandwidth
        self.sub_title = services.config.app.name + (" [SANDBOX]" if services.sandbox else "")

    def on_mount(self) -> None:
        self.push_screen(MainScreen(self.services, self.seed))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if not isinstance(screen, MainScreen):
            return
        for kind, spec in sorted(all_actions().items()):
            key = ACTION_KEYS.get(kind, "")
            yield SystemCommand(f"{spec.title} ({key})", f"{kind} on the selected environment",
                                lambda kind=kind: screen.action_start(kind))  # type: ignore[misc]
        for pane, key in PANES.items():
            yield SystemCommand(f"Show {pane} pane ({key})", f"switch to the {pane} pane",
                                lambda pane=pane: screen.action_show(pane))  # type: ignore[misc]


def make_app(config: ReleaseConfig, *, sandbox: bool, seed: int = 7, time_scale: float = 30.0,
             state: os.PathLike[str] | None = None) -> ReleaseConsole:
    """The one way the console is built: by the CLI, the tests and the benchmarks."""
    from pathlib import Path

    services = factory.build(config, sandbox_mode=sandbox, seed=seed, time_scale=time_scale,
                             state=Path(state) if state else None)
    return ReleaseConsole(services, seed)


def run_app(config: ReleaseConfig, *, sandbox: bool, seed: int, time_scale: float) -> int:
    make_app(config, sandbox=sandbox, seed=seed, time_scale=time_scale).run()
    return 0
