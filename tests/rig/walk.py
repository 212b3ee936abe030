"""An operation run to its end through the runner, its events kept: the rig tests' view of a walkthrough."""

from __future__ import annotations

from typing import Any

from services.catalog import build_operation
from services.core.events import ConfirmationNeeded, Event, Finished, LogLine, StepFinished, StepStarted
from services.core.operations import Result


class Walk:
    """`kind` run in production; every question answered with `answer`: the typed name of a production
    confirmation, and also a reason where one is asked (a lint override). None declines."""

    def __init__(self, services: Any, kind: str, answer: str | None = "production",
                 **params: Any) -> None:
        self.events: list[Event] = []
        self.asked: list[ConfirmationNeeded] = []

        def confirm(question: ConfirmationNeeded) -> str | None:
            self.asked.append(question)
            return answer

        op = build_operation(services, kind, "production", params)
        self.result: Result = services.runner.run(op, self.events.append, confirm)

    def detail(self, step: str) -> str:
        return next(e.detail for e in self.events if isinstance(e, StepFinished) and e.step_id == step)

    def started(self) -> list[str]:
        return [e.step_id for e in self.events if isinstance(e, StepStarted)]

    def lines(self, step: str) -> list[str]:
        return [e.text for e in self.events if isinstance(e, LogLine) and e.step_id == step]

    def finished(self) -> Finished:
        final = self.events[-1]
        assert isinstance(final, Finished)
        return final
