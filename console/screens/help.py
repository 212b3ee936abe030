"""`?`: the keys, as bound now (the keymap applied): the focused pane's first, then the global ones.

Read from the screen's active bindings, the same source as the footer, so a remapped key shows
here as it works. The actions whose progress shows in the focused pane are listed with it.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

from console.action_table import BY_KIND
from widgets.colours import tone

Section = tuple[str, list[tuple[str, str]]]
PANE_NAMES = {"environments": "Environments", "build": "Build log", "migrations": "Migrations",
              "canary": "Canary", "backups": "Backups", "audit": "Audit"}
KEY_WIDTH = 10


def focused_pane(screen: Screen[object]) -> str:
    """The pane holding the focus (the environments list when nothing has it)."""
    node = screen.focused
    while node is not None and node is not screen:
        if node.id in PANE_NAMES:
            return node.id
        node = node.parent  # type: ignore[assignment]
    return "environments"


def help_sections(screen: Screen[object]) -> list[Section]:
    """The focused pane's keys (with the actions whose progress shows there), the pane keys, the rest."""
    app, pane = screen.app, focused_pane(screen)
    keys: dict[str, list[str]] = {}  # binding id (or action) -> keys shown
    found: dict[str, tuple[Binding, bool]] = {}  # -> (binding, on the pane rather than screen or app)
    for active in screen.active_bindings.values():
        binding = active.binding
        name = binding.id or ("palette" if binding.action == "command_palette" else "")
        if not name:
            continue  # Textual's own navigation keys (arrows, page up ...): not ours to explain
        keys.setdefault(name, []).append(app.get_key_display(binding))
        found.setdefault(name, (binding, active.node not in (screen, app)))
    mine: list[tuple[str, str]] = []
    panes: list[tuple[str, str]] = [("click", "a pane's title focuses that pane")]
    everywhere: list[tuple[str, str]] = []
    for name, (binding, on_pane) in found.items():
        shown = "/".join(keys[name])
        kind = name.removeprefix("action.")
        if name.startswith("action."):
            entry = BY_KIND[kind]
            (mine if entry.pane == pane else everywhere).append((shown, entry.title))
        elif name.startswith("pane."):
            panes.append((shown, f"{binding.description} pane"))
        else:
            (mine if on_pane else everywhere).append((shown, binding.description))
    if pane == "environments":
        mine.insert(0, ("↑/↓", "choose the environment every action acts on"))
    return [(f"{PANE_NAMES[pane]} pane (focused)", mine), ("Panes", panes), ("Everywhere", everywhere)]


def render_sections(node: DOMNode, sections: list[Section]) -> Group:
    """Each section a heading over a two-column grid: a long description wraps beside its key."""
    parts: list[Text | Table] = []
    for heading, rows in sections:
        if not rows:
            continue
        parts.append(Text(heading, style=tone(node, "bold $accent")))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=KEY_WIDTH, style="bold", no_wrap=True)
        grid.add_column()
        for key, what in rows:
            grid.add_row(f" {key}", what)
        parts.append(grid)
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 76; max-width: 100%; height: 100%; max-height: 24; border: round $primary; background: $surface;
        padding: 0 1;
    }
    HelpScreen .title { text-style: bold; width: 100%; }
    HelpScreen .hint { color: $text-muted; }
    HelpScreen VerticalScroll { height: 1fr; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="help.close")]

    def __init__(self, sections: list[Section]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Keys, as bound now (keymap applied)", classes="title")
            yield Label("", classes="hint", id="help-hint")
            with VerticalScroll():
                yield Static(render_sections(self, self.sections), id="help-keys")

    def on_mount(self) -> None:
        close = [self.app.get_key_display(active.binding) for active in self.active_bindings.values()
                 if active.binding.id == "help.close"]  # as remapped
        self.query_one("#help-hint", Label).update(f"{' '.join(close)} closes · ↑/↓ scroll · remap: see Keys in "
                                                   "docs/operations.md", )

    def action_close(self) -> None:
        self.dismiss(None)
