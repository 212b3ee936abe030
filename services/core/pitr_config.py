"""`[backup.pitr]` in release.toml: point-in-time recovery through pgBackRest.

pgBackRest does all the WAL work (archive-push from PostgreSQL's archive_command, backup, restore);
the console only runs it, with argument lists built from these values. One cluster, of one named
environment, on this host: a remote pgBackRest host (`--pg1-host`, `--repo1-host`) is not driven yet.

    [backup.pitr]
    environment = "production"          # whose database this cluster is
    stanza = "main"
    config = "/etc/pgbackrest/pgbackrest.conf"
    data_dir = "/var/lib/postgresql/15/main"
    run_as = ["sudo", "-n", "-u", "postgres", "--"]   # pgBackRest runs as the cluster's owner

The point-in-time restore (`pitr-restore`, services/backups/pitr_restore.py) stops PostgreSQL, lets
pgBackRest restore data_dir, starts it again and waits for recovery to end. By default it runs pg_ctl
on data_dir, as run_as; `stop` and `start` (argument lists) replace that where a service manager owns
the cluster (["systemctl", "stop", "postgresql@15-main"]). pg_ctl never gets -o: the server's own
settings (port, sockets) come from its config files, which the restore keeps.

A drill (`pitr-drill`, services/backups/pitr_drill.py) restores into a directory of its own under
`scratch_dir` (as much free space as the database needs), starts it on a free local port with
archiving off and `drill_shared_buffers` (not the live cluster's memory), reads it, then stops and
removes it: the live cluster is never touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_STANZA = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_MEMORY = re.compile(r"[1-9][0-9]{0,6}(kB|MB|GB)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _argv(value: list[str] | None) -> list[str] | None:
    """An argument list run as it is (never through a shell): words with no NUL or newline."""
    for word in value or []:
        if not word or "\x00" in word or "\n" in word:
            raise ValueError(f"{word!r} is not a plain argument (empty, or with a NUL or a newline)")
    return value


def _shaped(pattern: re.Pattern[str], problem: str) -> Callable[[str], str]:
    """A check that `value` is all `pattern`; `problem` says why not ({value!r} in it)."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(problem.format(value=value))
        return value

    return check


def _absolute(value: str) -> str:
    if not value.startswith("/") or "\x00" in value or "\n" in value:
        raise ValueError(f"{value!r} must be an absolute path")
    return value


class PitrConfig(_Strict):
    environment: str = Field(description="the environment whose database this cluster is")
    stanza: str = Field(description="the pgBackRest stanza")
    config: str = Field("/etc/pgbackrest/pgbackrest.conf", description="pgBackRest's config file (--config)")
    repo_path: str | None = Field(None, description="--repo1-path, when not in the config file (a posix repo)")
    data_dir: str = Field("/var/lib/postgresql/15/main", description="the cluster's data directory")
    pgbackrest: str = Field("pgbackrest", description="the pgBackRest program")
    pg_ctl: str = Field("/usr/lib/postgresql/15/bin/pg_ctl", description="pg_ctl, for the default stop and start")
    run_as: list[str] = Field(default_factory=list,
                              description="prefix for pgBackRest and pg_ctl, e.g. sudo -n -u postgres --")
    stop: list[str] | None = Field(None, description="stops PostgreSQL (default: pg_ctl -D data_dir -m fast -w stop)")
    start: list[str] | None = Field(None, description="starts PostgreSQL (default: pg_ctl -D data_dir -l log_file"
                                                      " -w start)")
    log_file: str = Field("/var/log/postgresql/pitr-pg_ctl.log", description="pg_ctl -l of the default start")
    margin_s: float = Field(2.0, ge=0, description='"before migration X" restores to its started_at minus this')
    command_timeout_s: float = Field(6 * 3600, gt=0, description="each pgBackRest or pg_ctl run is stopped after this")
    recovery_timeout_s: float = Field(3600, gt=0, description="how long to wait for recovery to end after a restore")
    scratch_dir: str | None = Field(None, description="where a drill restores its copy (as much free space as the"
                                                      " database), owned by the cluster's owner")
    drill_shared_buffers: str = Field("128MB", description="the drill's copy's shared_buffers: not the live"
                                                           " cluster's, so a drill does not double its memory")

    _argvs = field_validator("run_as", "stop", "start")(_argv)
    _paths = field_validator("config", "data_dir", "pg_ctl", "log_file")(_absolute)
    _stanza = field_validator("stanza")(
        _shaped(_STANZA, "stanza {value!r} may use letters, digits, '_', '.' and '-' (64 at most)"))
    _memory = field_validator("drill_shared_buffers")(
        _shaped(_MEMORY, "drill_shared_buffers {value!r}: a size as PostgreSQL writes it, e.g. 128MB or 1GB"))

    @field_validator("repo_path", "scratch_dir")
    @classmethod
    def _optional_path(cls, value: str | None) -> str | None:
        return None if value is None else _absolute(value)

    @model_validator(mode="after")
    def _scratch_apart(self) -> PitrConfig:
        """A drill removes what it made under scratch_dir: never where the live cluster's data is."""
        if self.scratch_dir is not None:
            scratch, data = self.scratch_dir.rstrip("/") + "/", self.data_dir.rstrip("/") + "/"
            if scratch.startswith(data) or data.startswith(scratch):
                raise ValueError(f"scratch_dir {self.scratch_dir} and data_dir {self.data_dir} must not hold each"
                                 " other: a drill's copy goes beside the live cluster, not in it")
        return self

    @field_validator("stop", "start")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("an argument list with at least the program")
        return value
