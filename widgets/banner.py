"""The SANDBOX banner, shown on every screen while the console runs on the simulated world."""

from __future__ import annotations

from textual.widgets import Static


class SandboxBanner(Static):
    DEFAULT_CSS = """
    SandboxBanner {
        height: 1; width: 100%; background: $warning; color: $background; text-style: bold;
        content-align: center middle;
    }
    """

    def __init__(self, seed: int, time_scale: float) -> None:
        super().__init__(f"SANDBOX: simulated world, seed {seed}, time x{time_scale:g}; nothing real is touched")
