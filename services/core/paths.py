"""Where the console keeps its state: a leaf, so the TUI can find its theme before the services load."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP_DIR = "release-console"


def state_home(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_STATE_HOME/release-console (~/.local/state when unset); not created here."""
    env = os.environ if env is None else env
    return Path(env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")) / APP_DIR
