"""Stopping and starting an environment's services with the commands in release.toml.

For hosts without a deploy target the console drives: `[environments.X.services]` gives
`stop` and `start` as argument lists (never through a shell). Output is streamed line by
line to the operation's log, and a non-zero exit code fails the step with the last lines.
"""

from __future__ import annotations

import collections
import os
import subprocess
import threading
from collections.abc import Mapping

from services.audit import mask
from services.operations import StepFailed
from services.ports import OnLine

TAIL_LINES = 5


class CommandServices:
    def __init__(self, stop: list[str], start: list[str], timeout_s: float = 600.0,
                 env: Mapping[str, str] | None = None) -> None:
        self.stop_argv = list(stop)
        self.start_argv = list(start)
        self.timeout_s = timeout_s
        self.env = dict(env) if env is not None else None  # None: the console's own environment

    def stop(self, on_line: OnLine) -> None:
        self._run("stop", self.stop_argv, on_line)

    def start(self, on_line: OnLine) -> None:
        self._run("start", self.start_argv, on_line)

    def _run(self, what: str, argv: list[str], on_line: OnLine) -> None:
        shown = " ".join(str(mask(a)) for a in argv)
        on_line(f"$ {shown}")
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                                       env={**os.environ, **self.env} if self.env is not None else None)
        except OSError as err:  # not found, not executable
            raise StepFailed(f"the {what} command could not run: {argv[0]}: {err.strerror}",
                             (f"fix services.{what} in release.toml (an argument list, no shell)",
                              "install the command on this host, then retry this step")) from None
        # A hung command must not hang the walkthrough: kill it after the timeout.
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(self.timeout_s, kill)
        timer.daemon = True
        timer.start()
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        try:
            assert process.stdout is not None
            for line in process.stdout:
                text = line.rstrip("\n")
                tail.append(text)
                on_line(text)
            code = process.wait()
        finally:
            timer.cancel()
        if timed_out.is_set():
            raise StepFailed(f"the {what} command ({shown}) did not finish within {self.timeout_s:.0f}s; killed",
                             ("look at what it waits for, then retry this step",))
        if code != 0:
            said = "; ".join(t for t in tail if t.strip()) or "no output"
            raise StepFailed(f"the {what} command ({shown}) exited with {code}: {said}",
                             ("fix what the output says, then retry this step",
                              f"check services.{what} in release.toml"))
        on_line(f"{what} command finished (exit 0)")
