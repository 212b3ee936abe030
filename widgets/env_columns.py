"""The environments list's columns: the live table and the last-seen list drawn at start-up share them."""

from __future__ import annotations

COLUMNS = (("env", 12), ("version", 8), ("up", 4), ("h", 1))  # h: dependency health ✓ ! ✗


def cut(text: str, width: int) -> str:
    """The list's cells are narrow: a longer value ends in … (the detail below shows it whole)."""
    return text if len(text) <= width else f"{text[:width - 1]}…"


def env_label(env: str, production: bool) -> str:
    # The sign as well as the colour: NO_COLOR terminals still mark production.
    return f"⚠ {env[:10]}" if production else env[:12]
