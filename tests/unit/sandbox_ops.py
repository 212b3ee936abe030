"""An operation of the sandbox run to its end in production, its events and questions kept."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from services.catalog import build_operation
from services.core.events import ConfirmationNeeded, Event, StepStarted
from services.core.operations import Result
from services.factory import EXAMPLE_CONFIG, Services, build, load_config


def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, time_scale: float) -> Services:
    """The sandbox's services on its example config, with state and XDG dirs of the test's own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    return build(load_config(str(EXAMPLE_CONFIG), True, {}), sandbox_mode=True, state=tmp_path / "state",
                 time_scale=time_scale)


def run(services: Services, kind: str, params: dict[str, Any] | None = None, typed: str | None = "production",
        cancel_at: str | None = None) -> tuple[Result, list[Event], list[ConfirmationNeeded]]:
    events: list[Event] = []
    asked: list[ConfirmationNeeded] = []
    cancel = threading.Event()

    def emit(event: Event) -> None:
        events.append(event)
        if isinstance(event, StepStarted) and event.step_id == cancel_at:
            cancel.set()

    def confirm(question: ConfirmationNeeded) -> str | None:
        asked.append(question)
        return typed

    op = build_operation(services, kind, "production", params or {})
    return services.runner.run(op, emit, confirm, cancel), events, asked
