"""The confirm modal. Production needs the environment name typed exactly; elsewhere y/n."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ConfirmModal(ModalScreen[str | None]):
    """Dismisses with the typed text (or "yes"), or None when declined."""

    DEFAULT_CSS = """
    ConfirmModal { align: center middle; }
    ConfirmModal > Vertical {
        width: 70; max-width: 95%; height: auto; border: thick $error; background: $surface; padding: 1 2;
    }
    ConfirmModal .prompt { margin-bottom: 1; width: 100%; }
    ConfirmModal .hint { color: $text-muted; }
    ConfirmModal Horizontal { height: auto; margin-top: 1; }
    ConfirmModal Button { margin-right: 2; }
    """
    BINDINGS = [
        Binding("escape", "decline", "Cancel", id="confirm.decline"),
        Binding("y", "accept", "Yes", id="confirm.yes", show=False),
        Binding("n", "decline", "No", id="confirm.no", show=False),
    ]

    def __init__(self, prompt: str, expected: str | None = None, banner: str | None = None,
                 free_text: bool = False, timeout_s: float | None = None, default_yes: bool = False) -> None:
        """`expected`: the exact text to type. `free_text`: a reason to type (any non-empty text).
        `timeout_s`: a countdown, then the default answer (yes when `default_yes`)."""
        super().__init__()
        self.prompt = prompt
        self.expected = expected
        self.banner = banner
        self.free_text = free_text
        self.remaining = timeout_s
        self.default_yes = default_yes

    @property
    def typed(self) -> bool:
        return self.expected is not None or self.free_text

    def compose(self) -> ComposeResult:
        with Vertical():
            if self.banner:
                yield Static(self.banner, classes="sandbox-banner")
            yield Label(self.prompt, classes="prompt")
            if self.typed:
                hint = "the reason, recorded in the audit log" if self.free_text else f"type {self.expected}"
                yield Input(placeholder=hint, id="typed")
                yield Label("Enter to confirm, Esc to cancel", classes="hint")
            else:
                with Horizontal():
                    yield Button("Yes (y)", variant="error", id="yes")
                    yield Button("No (n)", variant="primary", id="no")
            if self.remaining is not None:
                yield Label(self._countdown(), id="countdown", classes="hint")

    def _countdown(self) -> str:
        return f"No answer: {'yes' if self.default_yes else 'no'} in {max(0, round(self.remaining or 0))}s"

    def tick(self) -> None:
        """Once a second: the countdown, then the default (the worker takes it at the same moment)."""
        assert self.remaining is not None
        self.remaining -= 1
        if self.remaining <= 0:
            self.dismiss("yes" if self.default_yes else None)
        else:
            self.query_one("#countdown", Label).update(self._countdown())

    def on_mount(self) -> None:
        if self.remaining is not None:
            self.set_interval(1, self.tick)
        if self.typed:
            self.query_one(Input).focus()
        else:
            self.query_one("#no", Button).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if (self.free_text and text) or (not self.free_text and text == self.expected):
            self.dismiss(text)
        elif self.free_text:
            self.notify("Give a reason, or Esc to cancel.", severity="error")
        else:
            event.input.value = ""
            self.notify(f"That is not {self.expected!r}. Type it exactly, or Esc to cancel.", severity="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss("yes" if event.button.id == "yes" else None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Typed confirmation: single keys must reach the input, not answer the question.
        return not (self.typed and action == "accept")

    def action_accept(self) -> None:
        self.dismiss("yes")

    def action_decline(self) -> None:
        self.dismiss(None)
