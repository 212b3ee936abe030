"""The Clock port: what time it is, and how long a span of that time really lasts.

The sandbox's clock runs faster than the wall clock; nothing else needs to know which one it has.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch, as the environment sees them."""
        ...

    def real_seconds(self, simulated: float) -> float:
        """How long to really wait for a span of this clock's time."""
        ...


class WallClock:
    def now(self) -> float:
        return time.time()

    def real_seconds(self, simulated: float) -> float:
        return simulated
