"""Stopping and starting an environment's services with the commands in release.toml.

For hosts without a deploy target the console drives: `[environments.X.services]` gives
`stop` and `start` as argument lists (never through a shell). Output is streamed line by
line to the operation's log, and a non-zero exit code fails the step with the last lines.
"""

from __future__ import annotations

import collections
import os
import shlex
import subprocess
import threading
from collections.abc import Mapping

from services.core import processes
from services.core.masking import mask
from services.core.operations import StepFailed
from services.core.ports import OnLine

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
        shown = shlex.join(str(mask(a)) for a in argv)
        on_line(f"$ {shown}")
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                                       start_new_session=True,  # its own group: a timeout kills its children
                                       env={**os.environ, **self.env} if self.env is not None else None)
        except OSError as err:  # not found, not executable
            raise StepFailed(f"the {what} command could not run: {argv[0]}: {err.strerror}",
                             (f"fix services.{what} in release.toml (an argument list, no shell)",
                              "install the command on this host, then retry this step")) from None
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        following = threading.Event()
        following.set()

        def follow() -> None:
            assert process.stdout is not None
            for line in process.stdout:  # drained to the end, so a server left running never blocks on it
                if following.is_set():
                    tail.append(line.rstrip("\n"))
                    on_line(line.rstrip("\n"))

        reader = threading.Thread(target=follow, name=f"services-{what}", daemon=True)
        reader.start()
        # A hung command must not hang the walkthrough, nor a cancel wait for it: its whole group goes.
        code = processes.wait(process, argv, self.timeout_s, what=f"the {what} command",
                              advice=("look at what it waits for, then retry this step",))
        # A start command may leave a server running that still holds the output pipe: the
        # command's own exit is what counts, so its output is followed only briefly after.
        reader.join(timeout=2)
        following.clear()
        if code != 0:
            said = "; ".join(t for t in tail if t.strip()) or "no output"
            raise StepFailed(f"the {what} command ({shown}) exited with {code}: {said}",
                             ("fix what the output says, then retry this step",
                              f"check services.{what} in release.toml"))
        on_line(f"{what} command finished (exit 0)")
