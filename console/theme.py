"""The operator's chosen theme, kept across starts in a small private file in the state dir.

Read before the first frame (so the loading screen already wears it): only the light leaves of the
core are imported here, the rest of the services costs ~0.3 s.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from services.core.paths import state_home
from services.core.private import private_dir, replace_private

THEME_FILE = "ui.json"


def theme_path(env: Mapping[str, str] = os.environ) -> Path:
    return state_home(env) / THEME_FILE


def saved_theme(path: Path) -> str | None:
    """The theme kept last time; None when there is none, or the file is unreadable (a preference
    never stops the console from starting)."""
    try:
        theme = json.loads(path.read_text(encoding="utf-8")).get("theme")
    except (OSError, ValueError, AttributeError):
        return None
    return theme if isinstance(theme, str) else None


def keep_theme(path: Path, theme: str) -> None:
    """Written atomically, 0600 in a 0700 dir; OSError is left to the caller to show."""
    private_dir(path.parent, owned=True)
    replace_private(path, json.dumps({"theme": theme}) + "\n")
