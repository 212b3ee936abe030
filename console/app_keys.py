"""The app's global bindings, in a leaf module: the keymap checks them without importing the app."""

from textual.binding import Binding, BindingType

APP_BINDINGS: list[BindingType] = [Binding("q", "quit", "Quit", id="app.quit"),
                                   Binding("question_mark", "help", "Keys", id="app.help")]
