"""A private PostgreSQL 15 cluster archiving its WAL through pgBackRest, for the PITR tests.

Its own directory (under the rig dir, which the postgres user can reach), port, password and
stanza; `archive_command` is `pgbackrest archive-push` into a posix repo inside that directory, or
into S3 (S3Repo: the rig's moto behind rig.tls_proxy).
Safe beside other rig runs and xdist workers: nothing is shared but the binaries.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from rig.helpers import free_port

PGBIN = Path("/usr/lib/postgresql/15/bin")
AS_POSTGRES = ["runuser", "-u", "postgres", "--"]


@dataclass(frozen=True)
class S3Repo:
    """A repository in S3 instead of the posix one: the rig's moto behind rig.tls_proxy."""

    host: str
    port: int
    ca_file: Path
    bucket: str

    def settings(self) -> str:
        return (f"repo1-type=s3\nrepo1-path=/pitr\nrepo1-s3-bucket={self.bucket}\nrepo1-s3-endpoint={self.host}\n"
                f"repo1-storage-port={self.port}\nrepo1-storage-ca-file={self.ca_file}\nrepo1-s3-uri-style=path\n"
                "repo1-s3-region=us-east-1\nrepo1-s3-key=rig\nrepo1-s3-key-secret=rig\n")


class PitrCluster:
    def __init__(self, parent: Path, s3: S3Repo | None = None, config_outside: bool = False) -> None:
        """`config_outside`: Debian's layout, the config files in etc/ beside a data directory without them."""
        if shutil.which("pgbackrest") is None:
            raise RuntimeError("pgbackrest is missing: run the tests through tests/rig/run, which installs it")
        self.root = parent / f"pitr-{uuid.uuid4().hex[:10]}"
        self.data, self.repo, self.conf = self.root / "data", self.root / "repo", self.root / "pgbackrest.conf"
        self.drills = self.root / "drills"  # [backup.pitr] scratch_dir: a drill's copies
        self.log = parent / f"{self.root.name}-postgres.log"
        self.port, self.password, self.stanza = free_port(), uuid.uuid4().hex, f"rc-{uuid.uuid4().hex[:8]}"
        for sub in ("repo", "log", "lock", "spool", "drills"):
            (self.root / sub).mkdir(parents=True)
        (self.root / "pw").write_text(self.password + "\n")
        repo = s3.settings() if s3 else f"repo1-path={self.repo}\n"
        self.conf.write_text(
            f"[global]\n{repo}log-path={self.root}/log\nlock-path={self.root}/lock\n"
            f"spool-path={self.root}/spool\nstart-fast=y\ncompress-type=lz4\narchive-timeout=15\n"
            f"repo1-retention-full=10\nlog-level-console=info\n\n"
            f"[{self.stanza}]\npg1-path={self.data}\npg1-port={self.port}\npg1-socket-path={self.root}\n")
        self.log.touch()
        subprocess.run(["chown", "-R", "postgres:postgres", str(self.root), str(self.log)], check=True)
        self.root.chmod(0o700)
        self.as_postgres(str(PGBIN / "initdb"), "-D", str(self.data), "-U", "postgres", f"--pwfile={self.root}/pw",
                         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync")
        with (self.data / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n"
                       "archive_mode = on\nwal_level = replica\nfsync = off\narchive_timeout = 60\n"
                       f"archive_command = 'pgbackrest --config={self.conf} --stanza={self.stanza} archive-push %p'\n")
        self.config_dir = self._move_config() if config_outside else self.data
        self.start()
        try:
            self.pgbackrest("stanza-create")
            self.pgbackrest("--type=full", "backup")
        except BaseException:  # no fixture will remove a cluster it never got: stop it here
            self.remove()
            raise

    # --- what release.toml's [backup.pitr] gets -----------------------------------------------------
    def pitr_section(self, environment: str = "production") -> dict[str, object]:
        return {"environment": environment, "stanza": self.stanza, "config": str(self.conf),
                "data_dir": str(self.data), "run_as": AS_POSTGRES, "pg_ctl": str(PGBIN / "pg_ctl"),
                "log_file": str(self.log), "scratch_dir": str(self.drills)}

    def pg_ctl(self, *words: str) -> list[str]:
        """pg_ctl on this cluster as its owner: for [backup.pitr] stop and start given as argument lists."""
        return [*AS_POSTGRES, str(PGBIN / "pg_ctl"), "-D", str(self.data), *words]

    def system_id(self) -> int:
        return int(self.execute("SELECT system_identifier FROM pg_control_system()")[0][0])  # type: ignore[call-overload]

    def timelines(self) -> list[str]:
        """The timeline history files in the repository's archive: a promoted cluster that archived adds one."""
        return sorted(path.name for path in (self.repo / "archive").rglob("*.history"))

    def postmaster_started(self) -> float:
        """When the running server started: a restart changes it."""
        return float(self.execute("SELECT extract(epoch FROM pg_postmaster_start_time())")[0][0])  # type: ignore[arg-type]

    def new_database(self) -> str:
        """A database of the test's own in this cluster (a restore rolls the whole cluster back, this one with it)."""
        name = f"t_{uuid.uuid4().hex[:10]}"
        self.execute(f"CREATE DATABASE {name}")
        return name

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    # --- driving it -----------------------------------------------------------------------------------
    def as_postgres(self, *argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*AS_POSTGRES, *argv], capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stdout[-800:]} {done.stderr[-800:]}")
        return done

    def pgbackrest(self, *words: str) -> subprocess.CompletedProcess[str]:
        return self.as_postgres("pgbackrest", f"--config={self.conf}", f"--stanza={self.stanza}", *words)

    def _move_config(self) -> Path:
        etc = self.root / "etc"
        etc.mkdir()
        for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            shutil.move(self.data / name, etc / name)
        with (etc / "postgresql.conf").open("a") as conf:
            conf.write(f"data_directory = '{self.data}'\nhba_file = '{etc}/pg_hba.conf'\n"
                       f"ident_file = '{etc}/pg_ident.conf'\n")
        subprocess.run(["chown", "-R", "postgres:postgres", str(etc)], check=True)
        return etc

    def start(self) -> None:
        self.as_postgres(str(PGBIN / "pg_ctl"), "-D", str(self.config_dir), "-l", str(self.log), "-w", "-t", "60",
                         "start")

    def stop(self) -> None:
        subprocess.run([*AS_POSTGRES, str(PGBIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60, check=False)

    def execute(self, statement: str, database: str = "postgres") -> list[tuple[object, ...]]:
        with psycopg.connect(self.dsn(database), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def break_repo(self) -> None:
        """The repository's archive becomes unwritable for postgres: archive-push fails from now on."""
        (self.repo / "archive").chmod(0o000)

    def mend_repo(self) -> None:
        (self.repo / "archive").chmod(0o750)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
