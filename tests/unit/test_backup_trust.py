"""The pieces that make a restore safe, without services: the plain-SQL scan, signatures, backup ids,
console-made working dirs, the staged extraction of the app files, and the subprocess watchdog."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from services.adapters.app_files import DirectoryAppFiles
from services.adapters.bounded import Watchdog
from services.backups.plain_sql import CheckedSql, scan
from services.backups.trust import check_backup_id, sign, signature_problem
from services.backups.workdir import MARKER, make_work_dir, remove_work_dir
from services.core.operations import Cancelled, StepFailed

DUMP = b"""--
-- PostgreSQL database dump
--

\\restrict Ab12Cd34

SET statement_timeout = 0;
CREATE TABLE public.t (id integer, note text);
COPY public.t (id, note) FROM stdin;
1\t\\N
2\t\\\\! not a command: COPY data
\\.
SELECT 1;

\\unrestrict Ab12Cd34
"""


def read_all(data: bytes, chunk: int) -> bytes:
    checked = CheckedSql(io.BytesIO(data), "the dump", chunk=chunk)
    return b"".join(iter(lambda: checked.read(1 << 20), b""))


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])  # lines cut across reads at every place
def test_a_plain_dump_passes_with_copy_data_and_without_pg_dumps_restrict_lines(chunk: int) -> None:
    out = read_all(DUMP, chunk)
    assert b"\\restrict" not in out and b"\\unrestrict" not in out
    assert b"2\t\\\\! not a command: COPY data\n\\.\n" in out  # backslashes inside COPY data are data
    assert out.endswith(b"SELECT 1;\n\n")


@pytest.mark.parametrize("planted", [b"\\! touch /tmp/pwned", b"\\connect postgres", b"  \\c other",
                                     b"\\copy t from program 'id'", b"\\restrict Ab12Cd34 extra"])
def test_a_meta_command_outside_copy_data_is_refused_before_psql_sees_it(planted: bytes) -> None:
    data = DUMP.replace(b"SELECT 1;\n", b"SELECT 1;\n" + planted + b"\n")
    checked = CheckedSql(io.BytesIO(data), "backup X")
    passed = b""
    with pytest.raises(StepFailed, match=r"backup X holds a psql meta-command at line 14"):
        while chunk := checked.read(64):
            passed += chunk
    assert planted not in passed


def test_a_line_after_the_end_of_copy_data_is_checked_again() -> None:
    data = b"COPY public.t (id) FROM stdin;\n\\N\n\\.\n\\! id\n"
    with pytest.raises(StepFailed, match="line 4"):
        scan(io.BytesIO(data), "the dump")


def test_signatures_match_only_the_same_key_and_the_same_manifest() -> None:
    manifest = {"format": 3, "id": "20250101T000000Z", "artifacts": {"db.pgdump.zst": {"sha256": "ab", "size": 2}}}
    signed = sign(manifest, "k1")
    assert signature_problem(signed, "k1") == ("", "")
    assert signature_problem(signed, "k2")[0] == "mismatch"
    edited = {**signed, "artifacts": {"db.pgdump.zst": {"sha256": "cd", "size": 2}}}
    assert signature_problem(edited, "k1")[0] == "mismatch"
    assert signature_problem(manifest, "k1")[0] == "unsigned"
    assert signature_problem(signed, None)[0] == "unsigned"  # no key here: it cannot be checked


@pytest.mark.parametrize("bad", ["../etc", "20250101T000000Z/../x", "latest", "20250101T000000Z-0", "", "2025"])
def test_backup_ids_are_only_those_the_console_makes(bad: str) -> None:
    with pytest.raises(StepFailed, match="is not a backup id"):
        check_backup_id(bad)
    assert check_backup_id("20250101T000000Z") and check_backup_id("20250101T000000Z-2")


def test_only_a_work_dir_the_console_made_is_deleted(tmp_path: Path) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me\n")
    with pytest.raises(StepFailed, match="was not created by the console"):
        make_work_dir(precious)
    assert not remove_work_dir(precious) and (precious / "notes.txt").read_text() == "keep me\n"
    assert os.listdir(precious) == ["notes.txt"]

    old = os.umask(0o022)
    try:
        made = make_work_dir(tmp_path / "recovery" / "w")
    finally:
        os.umask(old)
    assert stat.S_IMODE(made.stat().st_mode) == 0o700 and (made / MARKER).is_file()
    assert make_work_dir(made) == made  # a resumed restore reuses its own
    assert remove_work_dir(made) and not made.exists()


# --- the app files: extracted into a staging dir with our own checks, then swapped in ------------


def archive(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    buffer.seek(0)
    return buffer


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "site" / "app"
    (root / "src").mkdir(parents=True)
    (root / "src" / "page.tsx").write_text("live\n")
    (root / "node_modules").mkdir()
    (root / "node_modules" / "kept.js").write_text("1\n")
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (p.read_text() if p.is_file() else "dir")
            for p in sorted(root.parent.rglob("*"))} if root.exists() else {}


BAD = {
    "absolute path": [(member("/etc/cron.d/x"), b"x")],
    "dot-dot": [(member("src/../../escaped"), b"x")],
    "symlink to an absolute path": [(member("ln", tarfile.SYMTYPE, "/etc/passwd"), b"")],
    "symlink out of the tree": [(member("src/ln", tarfile.SYMTYPE, "../../outside"), b"")],
    "symlink chain out of the tree": [(member("a", tarfile.DIRTYPE, mode=0o755), b""),
                                      (member("a/up", tarfile.SYMTYPE, ".."), b""),
                                      (member("hop", tarfile.SYMTYPE, "a/up/.."), b"")],
    "write through a symlink": [(member("dir", tarfile.SYMTYPE, "."), b""), (member("dir/x"), b"x")],
    "hard link out of the tree": [(member("hl", tarfile.LNKTYPE, "../../etc/passwd"), b"")],
    "hard link to nothing extracted": [(member("hl", tarfile.LNKTYPE, "src/missing"), b"")],
    "character device": [(member("dev", tarfile.CHRTYPE), b"")],
    "fifo": [(member("pipe", tarfile.FIFOTYPE), b"")],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_member_is_refused_and_the_app_dir_is_untouched(app: Path, case: str) -> None:
    before = snapshot(app)
    with pytest.raises(StepFailed, match="refused to restore the app files archive"):
        DirectoryAppFiles(app, ["."]).restore(archive(*BAD[case]), print)
    assert snapshot(app) == before  # nothing live touched, no staging dir left beside it
    assert not (app.parent.parent / "outside").exists()


def test_a_good_archive_is_swapped_in_keeping_what_it_does_not_hold_with_sane_modes(app: Path) -> None:
    good = archive((member("src", tarfile.DIRTYPE, mode=0o777), b""), (member("src/page.tsx", mode=0o4777), b"new\n"),
                   (member("src/alias.tsx", tarfile.SYMTYPE, "page.tsx"), b""),
                   (member("src/copy.tsx", tarfile.LNKTYPE, "src/page.tsx"), b""))
    lines: list[str] = []
    DirectoryAppFiles(app, ["."]).restore(good, lines.append)
    assert (app / "src" / "page.tsx").read_text() == "new\n" and (app / "src" / "alias.tsx").read_text() == "new\n"
    assert (app / "node_modules" / "kept.js").read_text() == "1\n"  # excluded from backups: carried over
    assert stat.S_IMODE((app / "src" / "page.tsx").stat().st_mode) == 0o755  # no setuid, no world-write
    assert stat.S_IMODE((app / "src").stat().st_mode) == 0o755
    assert sorted(p.name for p in app.parent.iterdir()) == ["app"]  # staging and replaced copy gone
    assert lines[-1] == f"restored 2 app files into {app}"


def test_the_app_dir_keeps_its_own_mode_and_a_new_one_is_0755(app: Path, tmp_path: Path) -> None:
    app.chmod(0o750)  # the operator's choice: the restore must not widen it
    DirectoryAppFiles(app, ["."]).restore(archive((member("a.txt"), b"a\n")), print)
    assert stat.S_IMODE(app.stat().st_mode) == 0o750
    new = tmp_path / "fresh" / "app"
    DirectoryAppFiles(new, ["."]).restore(archive((member("a.txt"), b"a\n")), print)
    assert stat.S_IMODE(new.stat().st_mode) == 0o755 and (new / "a.txt").read_text() == "a\n"


def test_the_watchdog_kills_a_child_on_cancel_and_on_its_deadline() -> None:
    flag = {"cancelled": False}
    child = subprocess.Popen(["sleep", "30"])
    with Watchdog(child, "sleep", 60, lambda: flag["cancelled"]) as watchdog:
        flag["cancelled"] = True
        assert child.wait(timeout=25) < 0  # killed by a signal, not its 30 s run out
    with pytest.raises(Cancelled, match="sleep was stopped; nothing left"):
        watchdog.check("nothing left")
    child = subprocess.Popen(["sleep", "30"])
    with Watchdog(child, "sleep", 0.3) as watchdog:
        assert child.wait(timeout=25) < 0
    with pytest.raises(StepFailed, match=r"sleep did not finish within 0.3s"):
        watchdog.check("nothing left")
