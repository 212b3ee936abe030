"""The yardstick: a bare Textual app with the same five panes, empty."""

from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ContentSwitcher, Footer, Header, Label


class BareApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="environments"):
                yield Label("1 Environments")
            with ContentSwitcher(initial="build"):
                for pane in ("build", "migrations", "canary", "backups"):
                    with Vertical(id=pane):
                        yield Label(pane)
        yield Footer()


if __name__ == "__main__":
    BareApp().run()
