"""Private PostgreSQL 15 clusters for one test: a primary, and a streaming replica of it.

For what a test must not do to the rig's shared cluster (make it a primary with a replica, pause its
replay). Each runs as the `postgres` user (initdb refuses root) on its own free loopback port, with
trust on loopback: nothing but the test reaches it. The directory must be one the postgres user can
reach (not under a 0700 pytest tmp_path): see `cluster_dir`."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rig.helpers import free_port

PGBIN = Path("/usr/lib/postgresql/15/bin")
AS_POSTGRES = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextmanager
def cluster_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory under /tmp the postgres user may enter (0755, ours), removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        directory.chmod(0o755)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class PrivateCluster:
    def __init__(self, directory: Path, replica_of: PrivateCluster | None = None) -> None:
        self.directory, self.port = directory, free_port()
        self.data, self.log = directory / "data", directory / "postgres.log"
        directory.mkdir(parents=True, exist_ok=True)
        if AS_POSTGRES:
            shutil.chown(directory, "postgres", "postgres")
        if replica_of is None:
            self._run(PGBIN / "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--no-locale", "--no-sync")
        else:  # -R: standby.signal and primary_conninfo, so it starts streaming from the primary
            self._run(PGBIN / "pg_basebackup", "-D", str(self.data), "-h", "127.0.0.1", "-p", str(replica_of.port),
                      "-U", "postgres", "-R", "-X", "stream", "-c", "fast")
        self._run(PGBIN / "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {directory} -c fsync=off", "start")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run([*AS_POSTGRES, str(PGBIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                       check=False, capture_output=True, timeout=60)

    def _run(self, *argv: str | Path) -> None:
        done = subprocess.run([*AS_POSTGRES, *map(str, argv)], capture_output=True, text=True, timeout=120,
                              check=False)
        if done.returncode:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr}{log}")
