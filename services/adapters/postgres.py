"""The Prisma migration database on a real PostgreSQL, through psycopg.

Applies each migration.sql as one simple-protocol script, as Prisma does: PostgreSQL runs a
multi-statement script in one implicit transaction, so a failing migration leaves nothing
half-applied. Scripts that cannot run in a transaction (CONCURRENTLY, VACUUM) run statement
by statement in autocommit. pg_dump, pg_restore and psql get the password through the environment,
each under a watchdog (a timeout, and the operator's cancel).
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from services.adapters import postgres_catalog, prisma
from services.adapters.bounded import Watchdog, never
from services.adapters.pg import KeptConnection, connect, count_rows, long_running, short_running
from services.core.masking import mask
from services.core.operations import Cancelled, StepFailed, pause
from services.core.ports import DumpTool, MigrationRecord, OnLine, Readable, TableSize, Writable
from services.core.private import open_private

# The console's own shared records are not the app's data: a restore must not roll back the audit
# trail or hand the release lock back to whoever held it when the backup was taken. Left out of the
# dump, they are also left alone by pg_restore --clean.
CONSOLE_TABLES = ("release_console_audit", "release_console_audit_id_seq", "release_console_lock")
NON_TRANSACTIONAL = re.compile(r"\b(CONCURRENTLY|VACUUM|ALTER\s+SYSTEM)\b", re.IGNORECASE)
CHUNK = 1 << 16
DUMP_CHUNK = 1 << 20  # dump and restore move 1 MiB at a time: fewer, larger compressor calls
F_SETPIPE_SZ = 1031  # Linux fcntl: a 1 MiB pipe lets pg_dump run ahead of the compressor
PG_BIN = Path("/usr/lib/postgresql")
RESTORE_SORT_MEM = "256MB"  # maintenance_work_mem of the restore's sessions only, for its index builds
# An explicit pg_dump to use instead of the server major's (/usr/lib/postgresql/<major>/bin).
PG_DUMP_ENV = "RELEASE_CONSOLE_PG_DUMP"
# The tables' heap (with TOAST): about the size of a plain dump of their rows.
ESTIMATE = """SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"""


class PostgresMigrations:
    def __init__(self, dsn: SecretStr, migrations_dir: Path, lock_wait_s: float = 30.0, connect_timeout_s: int = 5,
                 scratch_server: SecretStr | None = None, bounds: DumpBounds | None = None):
        self._dsn = dsn
        self.bounds = bounds or DumpBounds()
        self._scratch_server = scratch_server  # where trial restores create their database (default: this server)
        self.migrations_dir = migrations_dir
        self.lock_wait_s = lock_wait_s
        self.connect_timeout_s = connect_timeout_s
        self._session: tuple[psycopg.Connection[Any], dict[str, prisma.MigrationFile]] | None = None
        # Status reads, row counts, REINDEX: one connection kept for the adapter's life (a deploy made 19).
        self._kept = KeptConnection(dsn.get_secret_value(), connect_timeout_s)
        self._pg_dump: tuple[int, str, str] | None = None  # (server number, pg_dump's path, its --version)

    def _connect(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A connection of its own: for a session that holds a lock or runs long."""
        return connect(self._dsn.get_secret_value(), timeout_s=self.connect_timeout_s)

    def _short(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """The kept connection, for a short query."""
        return self._kept.use()

    def close(self) -> None:
        self._kept.close()

    def _rows(self, conn: psycopg.Connection[Any]) -> list[prisma.MigrationRow]:
        exists = conn.execute("SELECT to_regclass('_prisma_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []
        cursor = conn.execute(
            'SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at,'
            ' applied_steps_count FROM "_prisma_migrations" ORDER BY started_at')
        return [prisma.MigrationRow(*row) for row in cursor.fetchall()]

    # --- the port ---------------------------------------------------------------------------

    def scripts(self) -> list[tuple[str, str]]:
        return [(f.name, f.sql) for f in prisma.read_dir(self.migrations_dir)]

    def status(self) -> list[MigrationRecord]:
        files = prisma.read_dir(self.migrations_dir)
        with self._short() as conn:
            return prisma.merge_status(files, self._rows(conn))

    @contextmanager
    def lock(self, on_line: OnLine) -> Iterator[None]:
        """Prisma's advisory lock, waited for with a visible countdown, then a clear refusal."""
        with self._connect() as conn:
            deadline = time.monotonic() + self.lock_wait_s
            while not _scalar(conn, "SELECT pg_try_advisory_lock(%s)", (prisma.ADVISORY_LOCK_ID,)):
                left = deadline - time.monotonic()
                holder = self._lock_holder(conn)
                if left <= 0:
                    raise StepFailed(
                        f"Prisma's migration lock ({prisma.ADVISORY_LOCK_ID}) is held by {holder};"
                        f" waited {self.lock_wait_s:.0f}s",
                        ("wait for that deploy to finish, then retry", "ask its owner"))
                on_line(f"waiting for Prisma's migration lock, held by {holder}: {left:.0f}s left")
                pause(min(1.0, max(left, 0.05)))
            # While the lock is held, applies share its connection and one read of the folder.
            long_running(conn)  # a migration's SQL may rightly run long: the migration bounds
            conn.execute(prisma.TABLE_DDL)
            self._session = (conn, {f.name: f for f in prisma.read_dir(self.migrations_dir)})
            try:
                yield
            finally:
                self._session = None
                conn.execute("SELECT pg_advisory_unlock(%s)", (prisma.ADVISORY_LOCK_ID,))

    def _lock_holder(self, conn: psycopg.Connection[Any]) -> str:
        row = conn.execute(
            "SELECT a.pid, a.usename, a.application_name, a.client_addr::text, a.backend_start"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted LIMIT 1",
            (prisma.ADVISORY_LOCK_ID,)).fetchone()
        if row is None:
            return "another session"
        pid, user, app, addr, since = row
        return f"pid {pid} ({user}{' ' + app if app else ''} from {addr or 'local socket'}, since {since:%H:%M:%S})"

    def apply(self, name: str, on_line: OnLine) -> MigrationRecord:
        """Run one migration and record it with the rows prisma-engines writes.

        A transactional script runs in one transaction with its row: success commits both, a
        failure rolls the script back and records the failed row with its error, so nothing is
        ever half-applied or unrecorded. Other scripts follow Prisma's own sequence: row first,
        then the statements one by one, then the row finished.
        """
        if self._session is not None:
            conn, files = self._session
            return self._apply(conn, files.get(name), name, on_line)
        with self._connect() as conn:
            long_running(conn)
            return self._apply(conn, {f.name: f for f in prisma.read_dir(self.migrations_dir)}.get(name), name,
                               on_line)

    def _apply(self, conn: psycopg.Connection[Any], file: prisma.MigrationFile | None, name: str,
               on_line: OnLine) -> MigrationRecord:
        if file is None:
            raise StepFailed(f"no migration folder {name!r} in {self.migrations_dir}")
        if self._session is None:
            conn.execute(prisma.TABLE_DDL)
        migration_id, started, begun = str(uuid.uuid4()), time.monotonic(), datetime.now(UTC)
        insert = sql.SQL('INSERT INTO "_prisma_migrations" (id, checksum, started_at, migration_name)'
                         " VALUES ({}, {}, {}, {});\n").format(migration_id, file.checksum, begun, name)
        finish = sql.SQL('UPDATE "_prisma_migrations" SET applied_steps_count = applied_steps_count + 1,'
                         " finished_at = clock_timestamp() WHERE id = {};\n").format(migration_id)
        try:
            if NON_TRANSACTIONAL.search(file.sql):
                conn.execute(insert)
                self._run_statements(conn, file.sql, on_line)
                conn.execute(finish)
            else:
                # Row, script and finish as one simple-protocol query: one implicit transaction and
                # one round trip, so a deploy of many small migrations is as quick as psql.
                conn.execute(insert.as_string(conn) + file.sql + "\n;\n" + finish.as_string(conn))
        except psycopg.Error as err:
            logs = _error_text(err)
            conn.execute(
                'INSERT INTO "_prisma_migrations" (id, checksum, started_at, migration_name, logs) VALUES'
                " (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET logs = EXCLUDED.logs",
                (migration_id, file.checksum, begun, name, logs))
            raise StepFailed(
                f"{name} failed: {logs}",
                ("roll back: restore the backup taken before this deploy",
                 f"fix the database by hand, then: migrate resolve --applied {name}",
                 f"fix the SQL, then: migrate resolve --rolled-back {name} and deploy again")) from None
        took = time.monotonic() - started
        on_line(f"applied {name} in {took:.2f}s")
        return MigrationRecord(name, file.checksum, "applied", begun.timestamp(), begun.timestamp() + took)

    def _run_statements(self, conn: psycopg.Connection[Any], script: str, on_line: OnLine) -> None:
        from services.core.sql_text import split_statements

        on_line("this migration cannot run in a transaction (CONCURRENTLY/VACUUM): statement by statement")
        for statement in split_statements(script):
            conn.execute(statement.text)

    def resolve(self, name: str, applied: bool) -> str:
        """`prisma migrate resolve --applied/--rolled-back`, with Prisma's semantics."""
        files = {f.name: f for f in prisma.read_dir(self.migrations_dir)}
        with self._connect() as conn:
            conn.execute(prisma.TABLE_DDL)
            rows = [r for r in self._rows(conn) if r.migration_name == name]
            if applied:
                if name not in files:
                    raise StepFailed(f"no migration folder {name!r} to mark as applied")
                if any(r.finished_at is not None for r in rows):
                    raise StepFailed(f"{name} is already recorded as applied")
                for row in rows:
                    if row.failed:
                        conn.execute('UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE id = %s', (row.id,))
                conn.execute(
                    'INSERT INTO "_prisma_migrations" (id, checksum, logs, started_at, finished_at, migration_name)'
                    " VALUES (%s, %s, '', now(), now(), %s)", (str(uuid.uuid4()), files[name].checksum, name))
                return f"{name} marked as applied"
            failed = [r for r in rows if r.failed]
            if not failed:
                raise StepFailed(f"{name} is not a failed migration: only a failed one can be marked rolled back")
            for row in failed:
                conn.execute('UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE id = %s', (row.id,))
            return f"{name} marked as rolled back; deploy will apply it again"

    def row_counts(self, tables: Iterable[str]) -> dict[str, int]:
        """The rows of each table that exists, in two queries whatever the number of tables."""
        wanted = list(tables)
        if not wanted:  # no connection for nothing to count
            return {}
        with self._short() as conn:
            return count_rows(conn, wanted)

    def table_sizes(self, tables: Iterable[str]) -> dict[str, TableSize]:
        with self._short() as conn:
            return postgres_catalog.table_sizes(conn, tables)

    def reindex(self, table: str) -> None:
        with self._short() as conn:
            long_running(conn)
            try:
                # CONCURRENTLY (PostgreSQL 12+) rebuilds without blocking writes.
                concurrently = conn.info.server_version >= 120000
                verb = "REINDEX TABLE CONCURRENTLY {}" if concurrently else "REINDEX TABLE {}"
                conn.execute(sql.SQL(verb).format(sql.Identifier(table)))
                conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
            finally:
                if not conn.broken:
                    short_running(conn)  # the kept connection's next query has the ordinary bounds

    # --- dump and restore: streamed, the password in the environment only -----------------

    def _tool(self, name: str, server_version: int) -> str:
        versioned = PG_BIN / str(server_version // 10000) / "bin" / name
        found = str(versioned) if versioned.exists() else shutil.which(name)
        if not found:
            raise StepFailed(f"{name} is not installed on this host (apt-get install postgresql-client)")
        return found

    def _environment(self) -> dict[str, str]:
        params = conninfo_to_dict(self._dsn.get_secret_value())
        names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
                 "dbname": "PGDATABASE", "sslmode": "PGSSLMODE"}
        return {**os.environ, **{env: str(params[key]) for key, env in names.items() if params.get(key)}}

    def _server(self) -> tuple[int, str, int]:
        """The server's version number and text, and a rough size of its plain dump (the tables' heap)."""
        with self._short() as conn:
            number = conn.info.server_version
            shown = conn.execute("SHOW server_version").fetchone()
            # pg_table_size takes a share lock: bounded like pg_dump's own wait; the estimate is only for
            # the progress bar, so a table locked for longer gives no estimate rather than a wait. SET LOCAL:
            # the kept connection's own lock_timeout is back after it.
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                        int(self.bounds.lock_wait_timeout_s * 1000)))
                    size = conn.execute(ESTIMATE).fetchone()
            except psycopg.errors.LockNotAvailable:
                size = None
        return number, str(shown[0]).split()[0] if shown else str(number), int(size[0]) if size else 0

    def dump_tool(self) -> DumpTool:
        number, shown, estimate = self._server()
        return DumpTool(shown, self._checked_pg_dump(number, shown)[1], estimate)

    def _checked_pg_dump(self, number: int, shown: str) -> tuple[str, str]:
        """pg_dump's path and version; refuses one older than the server, before anything is dumped.
        Asked once for a server version (a backup asked it twice: before the dump, and for it)."""
        if self._pg_dump is not None and self._pg_dump[0] == number:
            return self._pg_dump[1], self._pg_dump[2]
        tool, text = self._pg_dump_version(number, shown)
        self._pg_dump = (number, tool, text)
        return tool, text

    def _pg_dump_version(self, number: int, shown: str) -> tuple[str, str]:
        tool = os.environ.get(PG_DUMP_ENV) or self._tool("pg_dump", number)
        try:
            answer = subprocess.run([tool, "--version"], capture_output=True, timeout=30, check=False)
        except OSError as err:
            raise StepFailed(f"cannot run {tool} --version: {err.strerror}",
                             ("apt-get install postgresql-client", f"or set {PG_DUMP_ENV} to a pg_dump")) from None
        text = answer.stdout.decode(errors="replace").strip()
        found = re.search(r"\b(\d+)(?:\.(\d+))?", text)
        if answer.returncode != 0 or not found:
            raise StepFailed(f"{tool} --version did not print a version: {text or answer.returncode}")
        major, minor = int(found.group(1)), int(found.group(2) or 0)
        tool_number = major * 10000 if major >= 10 else major * 10000 + minor * 100
        server_major = number // 10000 * 10000 if number >= 100000 else number // 100 * 100
        if tool_number < server_major:
            client = f"{major}" if major >= 10 else f"{major}.{minor}"
            raise StepFailed(
                f"{tool} is version {text.rpartition(')')[2].strip() or text} but the server runs PostgreSQL {shown}:"
                f" pg_dump {client} cannot dump a newer server; nothing was dumped",
                (f"install pg_dump {shown.split('.')[0]} or newer (postgresql-client-{shown.split('.')[0]})",
                 f"or set {PG_DUMP_ENV} to a pg_dump of that version"))
        return tool, text

    def dump(self, sink: Writable, cancelled: Callable[[], bool] = never) -> str:
        """A custom-format archive (pg_restore restores it; no psql meta-command can hide in it),
        uncompressed (-Z0): the console's own compressor streams, hashes and meters it."""
        number, shown, _ = self._server()
        tool, _ = self._checked_pg_dump(number, shown)
        argv = [tool, "--format=custom", "--compress=0", "--no-owner",
                f"--lock-wait-timeout={int(self.bounds.lock_wait_timeout_s * 1000)}",
                *(f"--exclude-table={table}" for table in CONSOLE_TABLES), "--dbname", self._dbname()]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self._environment())
        assert process.stdout is not None and process.stderr is not None
        errors = _drain(process.stderr)
        with Watchdog(process, "pg_dump", self.bounds.dump_timeout_s, cancelled) as watchdog:
            try:
                out = process.stdout.fileno()
                _grow_pipe(out)  # pg_dump runs ahead while this process compresses
                for chunk in iter(lambda: os.read(out, DUMP_CHUNK), b""):
                    sink.write(chunk)
            except BaseException:
                process.kill()  # the sink failed (disk full, cancelled): pg_dump must not linger
                process.wait()
                raise
            finally:
                process.stdout.close()
            returncode = process.wait()
        watchdog.check("nothing was stored")
        if returncode != 0:
            errors.join()
            text = mask(bytes(errors.tail).decode(errors="replace").strip())
            if "LOCK TABLE" in text and "timeout" in text:
                raise StepFailed(f"pg_dump could not get a table lock within {self.bounds.lock_wait_timeout_s:g}s"
                                 f" (something holds an exclusive lock): {text}",
                                 ("retry when the migration or maintenance holding it is done",
                                  "raise [backup] lock_wait_timeout_s"))
            raise StepFailed(f"pg_dump failed: {text}")
        return shown

    def _dbname(self) -> str:
        """The database named explicitly on the command line, as a conninfo holding only its name."""
        name = conninfo_to_dict(self._dsn.get_secret_value()).get("dbname")
        if not name:
            raise StepFailed("the database URL names no database: restores go only into an explicitly named one",
                             ("put the database name in database_url",))
        return make_conninfo("", dbname=str(name))

    def _pg_restore(self, version: int, extra: list[str], source: str | None = None) -> list[str]:
        # --no-owner/--no-privileges: the console's role owns what it restores; --exit-on-error: stop at
        # the first error rather than restore half a database.
        return [self._tool("pg_restore", version), "--dbname", self._dbname(), "--no-owner", "--no-privileges",
                "--exit-on-error", *extra, *([source] if source else [])]  # no file: its stdin

    def restore(self, source: Readable, on_line: OnLine, cancelled: Callable[[], bool] = never) -> None:
        """pg_restore of a custom archive streamed on its stdin, in one transaction (--single-transaction):
        a failure, a cut stream or a cancel leaves the database as it was."""
        with self._short() as conn:
            version = conn.info.server_version
        argv = self._pg_restore(version, ["--clean", "--if-exists", "--single-transaction"])
        restored = self._feed(argv, source, cancelled, "pg_restore", prefix=b"", suffix=b"")
        on_line(f"restored a {restored / 1e6:.1f} MB archive with pg_restore in one transaction")

    def restore_plain(self, source: Readable, on_line: OnLine, cancelled: Callable[[], bool] = never) -> None:
        """An older plain-SQL dump, already checked line by line (services.backups.plain_sql): psql with
        no psqlrc, stopping at the first error, in restricted mode under a key the dump cannot know,
        in one transaction."""
        with self._short() as conn:
            version = conn.info.server_version
        argv = [self._tool("psql", version), "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1",
                "--dbname", self._dbname()]
        # Not --single-transaction: psql COMMITs whatever it got when its input ends early (the
        # console killed mid-restore). An explicit BEGIN whose COMMIT we send only after the last
        # byte means a cut stream ends inside the transaction, which the server rolls back.
        restricted = restrict_line() if _has_restrict(argv[0]) else b""
        restored = self._feed(argv, source, cancelled, "psql", prefix=restricted + b"BEGIN;\n",
                              suffix=b"\nCOMMIT;\n")
        on_line(f"restored {restored / 1e6:.1f} MB of checked SQL with psql in one transaction")

    def _feed(self, argv: list[str], source: Readable, cancelled: Callable[[], bool], what: str,
              prefix: bytes, suffix: bytes) -> int:
        # --clean's DROP ... IF EXISTS would print a NOTICE per object: only warnings and errors. The
        # index and constraint builds that end a restore sort in memory with more than the 64 MB default
        # (PostgreSQL's own advice for restores): a 3.3M-row primary key took 1.2 s instead of 2.1 s.
        environment = {**self._environment(),
                       "PGOPTIONS": f"-c client_min_messages=warning -c maintenance_work_mem={RESTORE_SORT_MEM}"}
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env=environment)
        assert process.stdin is not None and process.stderr is not None
        errors = _drain(process.stderr)  # read as it comes: a full stderr pipe would stall the child
        _grow_pipe(process.stdin.fileno())  # decompress ahead while the child and the server work
        restored = 0
        with Watchdog(process, what, self.bounds.restore_timeout_s, cancelled) as watchdog:
            try:
                process.stdin.write(prefix)
                for chunk in iter(lambda: source.read(DUMP_CHUNK), b""):
                    process.stdin.write(chunk)
                    restored += len(chunk)
                process.stdin.write(suffix)
                process.stdin.close()
            except BrokenPipeError:
                pass  # the child stopped on an error (or was killed): its stderr or the watchdog says why
            except BaseException:
                # The source failed (a checksum mismatch, a refused line, cancel): the child must never
                # see an end of input, or it would COMMIT what it got. Killed, its transaction rolls back.
                process.kill()
                process.wait()
                raise
            returncode = process.wait()
        errors.join()
        watchdog.check("its transaction was rolled back: the database is as it was")
        if returncode != 0:
            text = bytes(errors.tail).decode(errors="replace").strip()
            raise StepFailed(f"restore failed, nothing changed (one transaction): {mask(text)}")
        return restored

    @contextmanager
    def scratch(self) -> Iterator[PostgresScratch]:
        """A new database on the scratch server (or this database's own), dropped afterwards, even on failure."""
        server = self._scratch_server or self._dsn
        name = scratch_name(self._dsn.get_secret_value())
        with connect(server.get_secret_value(), timeout_s=self.connect_timeout_s) as conn:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.Error as err:
                raise StepFailed(f"cannot create the scratch database {name} on {mask(server.get_secret_value())}:"
                                 f" {_error_text(err)}",
                                 ("grant CREATEDB to the console's role",
                                  "or set [backup] scratch_database_url to a server where it may create databases"),
                                 ) from None
        dsn = SecretStr(make_conninfo(server.get_secret_value(), dbname=name))
        scratch = PostgresScratch(name, dsn, self.migrations_dir, connect_timeout_s=self.connect_timeout_s,
                                  bounds=self.bounds)
        try:
            yield scratch
        finally:
            scratch.close()
            with connect(server.get_secret_value(), timeout_s=self.connect_timeout_s) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class PostgresScratch(PostgresMigrations):
    """The scratch database of a trial restore: restore into it, count, read a row."""

    def __init__(self, name: str, dsn: SecretStr, migrations_dir: Path, connect_timeout_s: int = 5,
                 bounds: DumpBounds | None = None) -> None:
        super().__init__(dsn, migrations_dir, connect_timeout_s=connect_timeout_s, bounds=bounds)
        self.name = name

    def restore(self, source: Readable, on_line: OnLine, cancelled: Callable[[], bool] = never) -> None:
        """Into a fresh database nothing else uses: no single transaction needed, so pg_restore -j runs
        jobs in parallel. That needs a seekable file: the archive is written to a private temp file."""
        with self._short() as conn:
            version = conn.info.server_version
        jobs = max(2, min(4, os.cpu_count() or 1))
        with tempfile.TemporaryDirectory(prefix="rc-restore-") as spool:  # 0700, removed on the way out
            path = Path(spool) / "db.pgdump"
            with open_private(path, "xb") as out:
                for chunk in iter(lambda: source.read(DUMP_CHUNK), b""):
                    out.write(chunk)
                    if cancelled():
                        raise Cancelled(f"cancelled by the operator while spooling the archive; {self.name}"
                                        " is dropped")
            argv = self._pg_restore(version, [f"--jobs={jobs}"], str(path))
            self._feed(argv, _Empty(), cancelled, "pg_restore", prefix=b"", suffix=b"")
        on_line(f"restored the archive into {self.name} with pg_restore -j {jobs}")

    def sample(self, table: str) -> int:
        with self._short() as conn:
            return len(conn.execute(sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier(table))).fetchall())


def restrict_line() -> bytes:
    """psql's restricted mode (15.14+) under a key no dump can know: psql then refuses every meta-command,
    even one in the middle of a line; only `\\unrestrict <key>` would end it."""
    return b"\\restrict " + secrets.token_hex(24).encode() + b"\n"


# The minor releases of August 2025 (CVE-2025-8714) that brought psql's \\restrict, by major.
RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}


def _has_restrict(psql: str) -> bool:
    answer = subprocess.run([psql, "--version"], capture_output=True, timeout=30, check=False)
    found = re.search(rb"\b(\d+)\.(\d+)", answer.stdout)
    if not found:
        return False
    major, minor = int(found.group(1)), int(found.group(2))
    return major >= 18 or minor >= RESTRICT_SINCE.get(major, 10**6)


def scratch_name(source_dsn: str) -> str:
    """rc_trial_<source database>_<time>_<6 hex>, at most 63 bytes: a leftover scratch names what it was a trial of."""
    source = re.sub(r"[^a-z0-9_]", "_", str(conninfo_to_dict(source_dsn).get("dbname") or "db").lower())[:32]
    return f"rc_trial_{source}_{time.strftime('%Y%m%d%H%M%S')}_{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class DumpBounds:
    """How long pg_dump waits for a table lock, and how long pg_dump and pg_restore/psql may run."""

    lock_wait_timeout_s: float = 60.0
    dump_timeout_s: float = 6 * 3600.0
    restore_timeout_s: float = 6 * 3600.0


class _Empty:
    def read(self, size: int = -1, /) -> bytes:
        return b""


class _Tail(threading.Thread):
    """Reads a pipe to its end in the background, keeping the last 64 KiB (an error message)."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.stream, self.tail = stream, bytearray()

    def run(self) -> None:
        for chunk in iter(lambda: self.stream.read1(CHUNK), b""):  # type: ignore[attr-defined]
            self.tail += chunk
            del self.tail[:-CHUNK]


def _drain(stream: IO[bytes]) -> _Tail:
    reader = _Tail(stream)
    reader.start()
    return reader


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, DUMP_CHUNK)
    except OSError:
        pass  # not Linux, or over /proc/sys/fs/pipe-max-size: the default 64 KiB works too


def _scalar(conn: psycopg.Connection[Any], query: str, params: tuple[object, ...]) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def _error_text(err: psycopg.Error) -> str:
    diag = err.diag
    parts = [str(diag.message_primary or err).strip()]
    if diag.sqlstate:
        parts.append(f"(SQLSTATE {diag.sqlstate})")
    if diag.statement_position:
        parts.append(f"at position {diag.statement_position}")
    return " ".join(parts)
