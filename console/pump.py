"""Carries events from an operation's worker thread to the UI thread, in batches.

The worker appends to a deque (thread-safe); the screen drains it on a timer (every 100 ms
while the build log shows, 250 ms otherwise), so a firehose of log lines costs one UI update per
tick, not one per line. Confirmations block the worker on a queue until the operator answers in a
modal; a question wakes the screen at once (`wake`) rather than waiting for the next tick.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from services.core.events import ConfirmationNeeded, Event


class EventPump:
    def __init__(self, wake: Callable[[], object] | None = None) -> None:
        """`wake`: called on the worker thread when a question is put (it must be thread-safe)."""
        self._events: deque[Event] = deque()
        self._answers: queue.Queue[str | None] = queue.Queue()
        self.cancel = threading.Event()
        self.wake = wake

    def put(self, event: Event) -> None:
        self._events.append(event)

    def drain(self) -> list[Event]:
        batch = []
        while self._events:
            batch.append(self._events.popleft())
        return batch

    def ask(self, question: ConfirmationNeeded) -> str | None:
        """Called on the worker thread: wait for the operator, waking on cancel; a question with
        a timeout takes its default when nobody answers in time."""
        while not self._answers.empty():  # a late answer to a question that already timed out
            self._answers.get_nowait()
        self.put(question)
        if self.wake is not None:
            self.wake()
        deadline = None if question.timeout_s is None else time.monotonic() + question.timeout_s
        while True:
            try:
                return self._answers.get(timeout=0.2)
            except queue.Empty:
                if self.cancel.is_set():
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    return "yes" if question.default_yes else None

    def answer(self, text: str | None) -> None:
        self._answers.put(text)
