"""Swap a per-environment adapter of a built Services for a test's own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from services.core.container import Services


def rewire(services: Services, **makers: Callable[[str], Any]) -> None:
    """`rewire(services, metrics=lambda env: silent)`: made afresh on the next use."""
    services.per_env = replace(services.per_env, **makers)
    services.close()  # forgets the adapters already made
