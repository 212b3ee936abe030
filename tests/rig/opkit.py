"""Running sandbox operations in unit tests: the services, a runner with canned answers, and
readers for the events an operation emitted."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.catalog import build_operation
from services.core.events import ConfirmationNeeded, Event, LogLine, OperationStarted, StepFinished, StepStarted
from services.core.operations import Result
from services.factory import EXAMPLE_CONFIG, Services, build, load_config

SCALE = 3000
IMAGE = "ghcr.io/example/food-management"


def sandbox_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, monitor: str = "off") -> Services:
    """`monitor`: [monitor] after_deploy. Off unless a test is about the post-deploy monitor (the
    example's default, act, would roll back every deploy of the sandbox's bad 1.5.0)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    config = load_config(str(EXAMPLE_CONFIG), True, {})
    config = config.model_copy(update={"monitor": config.monitor.model_copy(update={"after_deploy": monitor})})
    return build(config, sandbox_mode=True, state=tmp_path / "state", time_scale=SCALE)


def env_state(services: Services, env: str) -> Any:
    """The sandbox world's state of `env` (what runs there, its split, its events)."""
    assert services.world is not None
    return services.world.envs[env]


def run(services: Services, kind: str, env: str, params: dict[str, Any] | None = None, reason: str | None = None,
        typed: str | None = None, on_event: Callable[[Event], object] = lambda event: None,
        cancel_at: str | None = None) -> tuple[Result, list[Event], list[ConfirmationNeeded]]:
    """Run an action; confirmations get `typed`, free-text questions (override reasons) `reason`.
    `on_event` sees each event as it is emitted, on the operation's thread. `cancel_at`: the operator
    cancels as that step starts."""
    events: list[Event] = []
    asked: list[ConfirmationNeeded] = []
    cancel = threading.Event()

    def confirm(question: ConfirmationNeeded) -> str | None:
        asked.append(question)
        return reason if question.free_text else typed

    def emit(event: Event) -> None:
        events.append(event)
        on_event(event)
        if isinstance(event, StepStarted) and event.step_id == cancel_at:
            cancel.set()

    result = services.runner.run(build_operation(services, kind, env, params), emit, confirm, cancel)
    return result, events, asked


def steps(events: list[Event]) -> list[str]:
    started = next(e for e in events if isinstance(e, OperationStarted))
    return [step_id for step_id, _ in started.steps]


def logs(events: list[Event], step: str) -> list[tuple[str, str]]:
    return [(e.text, e.level) for e in events if isinstance(e, LogLine) and e.step_id == step]


def finished(events: list[Event]) -> dict[str, StepFinished]:
    return {e.step_id: e for e in events if isinstance(e, StepFinished)}
