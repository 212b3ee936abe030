"""pgBackRest, run with argument lists built from `[backup.pitr]`, and the cluster it archives.

Every run goes through services.core.processes: bounded by command_timeout_s, cancellable, its
output streamed to the step's log. pgBackRest's own `ERROR: [NNN]: ...` line is the reason a step
fails with. Only values validated by the config (paths, the stanza) and times this module formats
reach an argument; nothing read from pgBackRest's output does.
"""

from __future__ import annotations

import json
import re
from typing import Any

from services.adapters.pg_cluster import PostgresCluster
from services.core import processes
from services.core.operations import StepFailed
from services.core.pitr_config import PitrConfig
from services.core.pitr_port import BACKUP_TYPES, PitrBackup, StanzaInfo
from services.core.ports import OnLine

# What --target gets: only the shape services/backups/pitr_restore.py writes (UTC, explicit offset).
_TARGET = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?\+00")
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

    def _run(self, argv: list[str], on_line: OnLine, what: str, timeout_s: float | None = None) -> None:
        said: list[str] = []

        def line(text: str) -> None:
            said.append(text)
            del said[:-40]
            on_line(text)

        on_line(f"$ {processes.shown(argv)}")
        try:
            done = processes.run(argv, timeout_s or self.settings.command_timeout_s, on_line=line, what=what)
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

    def restore(self, target_time: str, on_line: OnLine) -> None:
        if not _TARGET.fullmatch(target_time):
            raise ValueError(f"recovery target {target_time!r} is not a UTC time as the console writes it")
        # --delta: files that match the backup stay; --pg1-path: the directory stop and start act on.
        self._run(self._argv("--delta", "--type=time", f"--target={target_time}", "--target-action=promote",
                             "restore", pg_path=self.settings.data_dir), on_line, "pgbackrest restore")

    # --- the cluster -------------------------------------------------------------------------------

    def live(self) -> PostgresCluster:
        return PostgresCluster(self.dsn, f"the live cluster ({self.settings.data_dir})", self.connect_timeout_s)

    def _pg_ctl(self, *words: str) -> list[str]:
        return [*self.settings.run_as, self.settings.pg_ctl, "-D", self.settings.data_dir, *words]

    def _running(self) -> bool:
        """pg_ctl status: 0 running, 3 not running; anything else is a problem to say."""
        argv = self._pg_ctl("status")
        try:
            done = processes.run(argv, INFO_TIMEOUT_S, what="pg_ctl status")
        except (FileNotFoundError, PermissionError) as err:
            raise StepFailed(f"cannot run {argv[0]}: {err.strerror}", ("check [backup.pitr] pg_ctl and run_as",)) \
                from None
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
            self._run(self._pg_ctl("-m", "fast", "-w", "-t", str(int(s.command_timeout_s)), "stop"), on_line,
                      "pg_ctl stop")
        else:
            on_line(f"PostgreSQL is not running in {s.data_dir}: nothing to stop")

    def start_database(self, on_line: OnLine) -> None:
        s = self.settings
        if s.start is not None:
            self._run(list(s.start), on_line, "the PostgreSQL start command")
        elif not self._running():
            # -l: the server's output goes to its log, not to our pipe (pg_ctl would return, the pipe not).
            self._run(self._pg_ctl("-l", s.log_file, "-w", "-t", str(int(s.recovery_timeout_s)), "start"), on_line,
                      "pg_ctl start")
        else:
            on_line(f"PostgreSQL already runs in {s.data_dir}")


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
