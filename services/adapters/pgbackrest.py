"""pgBackRest, run with argument lists built from `[backup.pitr]`, and the cluster it archives.

Every run goes through services.core.processes: bounded by command_timeout_s, cancellable, its
output streamed to the step's log. pgBackRest's own `ERROR: [NNN]: ...` line is the reason a step
fails with. Only values validated by the config (paths, the stanza) and times this module formats
reach an argument; nothing read from pgBackRest's output does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from collections.abc import Iterator
from typing import Any

from psycopg.conninfo import make_conninfo

from services.adapters.pg_cluster import PostgresCluster
from services.core import processes
from services.core.operations import StepFailed, shielded
from services.core.pitr_config import PitrConfig
from services.core.pitr_port import BACKUP_LABEL, BACKUP_TYPES, PitrBackup, RecoveryTarget, StanzaInfo
from services.core.ports import OnLine
from services.core.units import byte_size

# What --target gets: only the shape services/backups/pitr_restore.py writes (UTC, explicit offset).
_TARGET = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?\+00")
_SCRATCH_NAME = re.compile(r"drill-[0-9a-z-]{1,40}")
# A drill's copy: its own port on loopback, no Unix socket (nothing to collide with the live one's),
# and never archiving into the live cluster's stanza. pgBackRest writes these into its
# postgresql.auto.conf, after the live settings it restored, so they win; pg_ctl needs no -o.
_SCRATCH_SETTINGS = ("listen_addresses=127.0.0.1", "unix_socket_directories=")
# The copy's own config when the restored directory has none. Its port, socket, archiving and recovery
# settings are in postgresql.auto.conf (pgBackRest's lines). hot_standby off: the copy is read once
# promoted, so the live cluster's max_connections and friends need not be known to start it.
_MINIMAL_CONFIG = {
    "postgresql.conf": "# release-console: a point-in-time drill's copy; the live cluster's config is not used.\n"
                       "hot_standby = off\n",
    "pg_hba.conf": "local all all peer\nhost all all 127.0.0.1/32 md5\n",  # md5 takes SCRAM passwords too
    "pg_ident.conf": "",
}
INFO_TIMEOUT_S = 120.0


class PgBackRest:
    def __init__(self, settings: PitrConfig, dsn: str, connect_timeout_s: int = 5) -> None:
        self.settings, self.dsn, self.connect_timeout_s = settings, dsn, connect_timeout_s

    def describe(self) -> str:
        return f"pgBackRest stanza {self.settings.stanza} ({self.settings.config})"

    # --- pgBackRest ------------------------------------------------------------------------------

    def _argv(self, *words: str, pg_path: str | None = None) -> list[str]:
        s = self.settings
        repo = [f"--repo1-path={s.repo_path}"] if s.repo_path else []
        pg1 = [f"--pg1-path={pg_path}"] if pg_path else []
        return [*s.run_as, s.pgbackrest, f"--config={s.config}", f"--stanza={s.stanza}", *repo, *pg1, *words]

    def _run(self, argv: list[str], on_line: OnLine, what: str, timeout_s: float | None = None,
             stdin_text: str | None = None) -> None:
        said: list[str] = []

        def line(text: str) -> None:
            said.append(text)
            del said[:-40]
            on_line(text)

        on_line(f"$ {processes.shown(argv)}")
        try:
            done = processes.run(argv, timeout_s or self.settings.command_timeout_s, on_line=line, what=what,
                                 stdin_text=stdin_text)
        except (FileNotFoundError, PermissionError) as err:
            raise StepFailed(f"{what}: cannot run {argv[0]}: {err.strerror}",
                             ("install pgBackRest (apt-get install pgbackrest) and pg_ctl on this host",
                              "check [backup.pitr] run_as, pgbackrest, pg_ctl, stop and start in release.toml")) \
                from None
        if done.code != 0:
            errors = [t.split("ERROR:", 1)[1].strip() for t in said if "ERROR:" in t]
            reason = errors[-1] if errors else "; ".join(t for t in said[-3:] if t.strip()) or "no output"
            raise StepFailed(f"{what} failed (exit {done.code}): {reason}", _advice(reason))

    def info(self) -> StanzaInfo:
        argv = self._argv("--output=json", "info")
        try:
            done = processes.run(argv, INFO_TIMEOUT_S, what="pgbackrest info")
        except (FileNotFoundError, PermissionError) as err:
            raise StepFailed(f"cannot run {argv[0]}: {err.strerror}",
                             ("install pgBackRest (apt-get install pgbackrest)",)) from None
        if done.code != 0:
            raise StepFailed(f"pgbackrest info failed (exit {done.code}): {done.stderr.strip()[-300:] or 'no output'}",
                             _advice(done.stderr))
        return parse_info(done.stdout, self.settings.stanza)

    def check(self, on_line: OnLine) -> None:
        self._run(self._argv("check"), on_line, "pgbackrest check")

    def backup(self, backup_type: str, on_line: OnLine) -> None:
        if backup_type not in BACKUP_TYPES:
            raise ValueError(f"backup type {backup_type!r}: one of {', '.join(BACKUP_TYPES)}")
        # Detail: one line per file with the share done, which the operation turns into progress.
        self._run(self._argv(f"--type={backup_type}", "--log-level-console=detail", "backup"), on_line,
                  f"pgbackrest {backup_type} backup")

    def restore(self, target: RecoveryTarget, on_line: OnLine) -> None:
        # --delta: files that match the backup stay; --pg1-path: the directory stop and start act on.
        self._run(self._argv("--delta", *_target_words(target), "restore", pg_path=self.settings.data_dir), on_line,
                  "pgbackrest restore")

    @contextlib.contextmanager
    def scratch(self, target: RecoveryTarget, name: str, needed: int, on_line: OnLine) -> Iterator[PostgresCluster]:
        s = self.settings
        if s.scratch_dir is None:
            raise StepFailed("a drill needs [backup.pitr] scratch_dir: where its copy of the cluster goes",
                             ("set scratch_dir to a directory the cluster's owner owns, with the database's size"
                              " free, then retry",))
        if not _SCRATCH_NAME.fullmatch(name):
            raise ValueError(f"scratch name {name!r}: drill- and letters, digits, '-'")
        directory = f"{s.scratch_dir.rstrip('/')}/{name}"
        log = f"{directory}.log"
        self._clear(directory, log, on_line)  # a resumed drill's leftover from a run cut short
        _room(s.scratch_dir, needed)
        port = _free_port()
        try:
            self._run([*s.run_as, "mkdir", "-m", "0700", "--", directory], on_line, "making the drill's directory")
            settings = (f"port={port}", f"shared_buffers={s.drill_shared_buffers}", *_SCRATCH_SETTINGS)
            self._run(self._argv("--archive-mode=off", *_target_words(target),
                                 *(f"--recovery-option={kv}" for kv in settings), "restore", pg_path=directory),
                      on_line, "pgbackrest restore (drill)")
            self._own_config(directory, on_line)
            self._run(self._pg_ctl(directory, "-l", log, "-w", "-t", str(int(s.recovery_timeout_s)), "start"),
                      on_line, "pg_ctl start (drill)")
            dsn = make_conninfo(self.dsn, host="127.0.0.1", port=str(port))
            yield PostgresCluster(dsn, f"the drill's copy ({directory}, port {port})", self.connect_timeout_s)
        except BaseException:
            with shielded():  # the server's own words, before its log goes with the directory
                self._tail(log, on_line)
            raise
        finally:
            with shielded():  # removed even when the drill was cancelled
                self._clear(directory, log, on_line)

    # --- the cluster -------------------------------------------------------------------------------

    def live(self) -> PostgresCluster:
        return PostgresCluster(self.dsn, f"the live cluster ({self.settings.data_dir})", self.connect_timeout_s)

    def _pg_ctl(self, data_dir: str, *words: str) -> list[str]:
        return [*self.settings.run_as, self.settings.pg_ctl, "-D", data_dir, *words]

    def _clear(self, directory: str, log: str, on_line: OnLine) -> None:
        """Stop a drill's copy if it runs, then remove its directory and log (only those: names it made)."""
        if self._running(directory):
            self._run(self._pg_ctl(directory, "-m", "immediate", "-w", "stop"), on_line, "pg_ctl stop (drill)")
        self._run([*self.settings.run_as, "rm", "-rf", "--", directory, log], lambda line: None,
                  "removing the drill's directory")

    def _own_config(self, directory: str, on_line: OnLine) -> None:
        """A cluster whose config lives outside its data directory (Debian's /etc/postgresql) restores
        without one: the copy gets a minimal config of its own, never the live one, whose
        data_directory would name the live cluster's directory."""
        run_as = self.settings.run_as
        if processes.run([*run_as, "test", "-e", f"{directory}/postgresql.conf"], INFO_TIMEOUT_S).code == 0:
            return
        on_line("the restored directory has no postgresql.conf (the cluster's config lives outside its data"
                " directory): the copy gets a minimal one of its own")
        for name, text in _MINIMAL_CONFIG.items():
            path = f"{directory}/{name}"
            self._run([*run_as, "dd", f"of={path}", "status=none"], on_line, f"writing the drill's {name}",
                      stdin_text=text)
            self._run([*run_as, "chmod", "0600", "--", path], on_line, f"making the drill's {name} private")

    def _tail(self, log: str, on_line: OnLine) -> None:
        with contextlib.suppress(StepFailed, OSError):
            done = processes.run([*self.settings.run_as, "tail", "-n", "15", "--", log], INFO_TIMEOUT_S,
                                 what="reading the drill's server log")
            for line in done.stdout.splitlines():
                on_line(f"drill server log: {line}")

    def _running(self, data_dir: str | None = None) -> bool:
        """pg_ctl status: 0 running, 3 not running (4: no such directory); anything else is a problem to say."""
        argv = self._pg_ctl(data_dir or self.settings.data_dir, "status")
        try:
            done = processes.run(argv, INFO_TIMEOUT_S, what="pg_ctl status")
        except (FileNotFoundError, PermissionError) as err:
            raise StepFailed(f"cannot run {argv[0]}: {err.strerror}", ("check [backup.pitr] pg_ctl and run_as",)) \
                from None
        if done.code == 4 and data_dir is not None:
            return False  # a drill's directory not made yet, or removed
        if done.code not in (0, 3):
            raise StepFailed(f"pg_ctl status exited {done.code}: {(done.stdout + done.stderr).strip()[-300:]}",
                             ("check [backup.pitr] data_dir, pg_ctl and run_as",))
        return done.code == 0

    def stop_database(self, on_line: OnLine) -> None:
        s = self.settings
        if s.stop is not None:
            self._run(list(s.stop), on_line, "the PostgreSQL stop command")
        elif self._running():
            # -m fast: sessions are ended, a shutdown checkpoint is written; the wait is bounded by -t.
            self._run(self._pg_ctl(s.data_dir, "-m", "fast", "-w", "-t", str(int(s.command_timeout_s)), "stop"),
                      on_line, "pg_ctl stop")
        else:
            on_line(f"PostgreSQL is not running in {s.data_dir}: nothing to stop")

    def start_database(self, on_line: OnLine) -> None:
        s = self.settings
        if s.start is not None:
            self._run(list(s.start), on_line, "the PostgreSQL start command")
        elif not self._running():
            # -l: the server's output goes to its log, not to our pipe (pg_ctl would return, the pipe not).
            self._run(self._pg_ctl(s.data_dir, "-l", s.log_file, "-w", "-t", str(int(s.recovery_timeout_s)),
                                   "start"), on_line, "pg_ctl start")
        else:
            on_line(f"PostgreSQL already runs in {s.data_dir}")


def _target_words(target: RecoveryTarget) -> list[str]:
    """pgBackRest's words for a target; only the shapes the console writes get through."""
    if target.backup is not None:
        if not BACKUP_LABEL.fullmatch(target.backup):
            raise ValueError(f"backup label {target.backup!r} is not one pgBackRest writes")
        return [f"--set={target.backup}", "--type=immediate", "--target-action=promote"]
    if target.time is None or not _TARGET.fullmatch(target.time):
        raise ValueError(f"recovery target {target.time!r} is not a UTC time as the console writes it")
    return ["--type=time", f"--target={target.time}", "--target-action=promote"]


def _room(directory: str, needed: int) -> None:
    """Refuse a drill that would fill the disk under a live host: free space first, with the figures."""
    try:
        stats = os.statvfs(directory)
    except OSError as err:
        raise StepFailed(f"scratch_dir {directory}: {err.strerror}",
                         ("create it, owned by the cluster's owner (0700), or point [backup.pitr] scratch_dir"
                          " elsewhere",)) from None
    free = stats.f_bavail * stats.f_frsize
    if free < needed:
        raise StepFailed(f"scratch_dir {directory} has {byte_size(free)} free; the copy needs about"
                         f" {byte_size(needed)} (the database's size in the backup)",
                         ("free space there, or point [backup.pitr] scratch_dir at a larger disk",))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _advice(reason: str) -> tuple[str, ...]:
    if "archive" in reason.lower():
        return ("look at PostgreSQL's archive_command and pg_stat_archiver's last failure",
                "check the repository's space and permissions", "then run `pitr check` again")
    if "stanza" in reason.lower():
        return ("create the stanza: pgbackrest --stanza=NAME stanza-create", "check [backup.pitr] stanza")
    return ("fix what pgBackRest says, then retry this step",)


def parse_info(text: str, stanza: str) -> StanzaInfo:
    """`pgbackrest info --output=json` for one stanza. Only numbers and labels are taken from it."""
    try:
        entries: list[dict[str, Any]] = json.loads(text)
        entry = next(e for e in entries if e.get("name") == stanza)
    except (ValueError, StopIteration, AttributeError) as err:
        raise StepFailed(f"pgbackrest info did not describe stanza {stanza}: {type(err).__name__}") from None
    status = entry.get("status", {})
    backups = tuple(PitrBackup(str(b["label"]), str(b["type"]), float(b["timestamp"]["start"]),
                               float(b["timestamp"]["stop"]), int(b["info"]["size"]),
                               int(b["info"]["repository"]["size"]))
                    for b in entry.get("backup", []) if not b.get("error"))
    archives = entry.get("archive", [])
    databases = entry.get("db", [])
    return StanzaInfo(stanza, str(status.get("message", "unknown")), status.get("code") == 0, backups,
                      archives[-1].get("min") if archives else None, archives[-1].get("max") if archives else None,
                      int(databases[-1]["system-id"]) if databases else None)
