"""A private Debian redis-server for one test: its own port, dir and config; stopped afterwards.

For what a test must change or stop (CONFIG SET maxmemory, a stopped server) without touching
the rig's shared Redis ($RC_REDIS_URL).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from rig.helpers import free_port, wait_until


class PrivateRedis:
    def __init__(self, directory: Path, password: str = "private-redis-pw") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: run the tests through tests/rig/run, which installs it")
        self.port, self.password, self.directory = free_port(), password, directory
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "redis.log"
        config = directory / "redis.conf"
        config.write_text(f'bind 127.0.0.1\nport {self.port}\ndir {directory}\nsave ""\nappendonly no\n'
                          f"requirepass {password}\nlogfile {self.log}\n")
        self.process = subprocess.Popen([binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(self._answers, timeout=10, what=f"redis-server on port {self.port}")

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def cli(self, *words: str) -> str:
        """redis-cli against it (REDISCLI_AUTH: the password stays off the command line)."""
        done = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *words], capture_output=True,
                              text=True, timeout=10, env={"REDISCLI_AUTH": self.password}, check=False)
        return done.stdout.strip()

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.log.read_text() if self.log.exists() else ''}")
        return self.cli("PING") == "PONG"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
