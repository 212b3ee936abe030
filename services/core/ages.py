"""An age in its largest unit, as the narrow lists show it ("3d", "2h", "5m")."""

from __future__ import annotations

UNITS = (("d", 86_400), ("h", 3_600), ("m", 60))


def short_age(seconds: float) -> str | None:
    """"3d", "2h", "5m", rounded down; None under a minute (each caller says that its own way)."""
    for unit, size in UNITS:
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return None
