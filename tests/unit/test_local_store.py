"""The local backup store: writes land only when complete; a killed writer's leftovers are
cleaned, a live writer's are not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.adapters.local_store import LocalStore

HOLD = """
import sys, time
from pathlib import Path
from services.adapters.local_store import LocalStore
with LocalStore(Path(sys.argv[1])).open_write("staging/b1/db.sql.zst") as sink:
    sink.write(b"half")
    sink.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_write_lands_only_when_closed_cleanly(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(RuntimeError), store.open_write("staging/b1/db.sql.zst") as sink:
        sink.write(b"half")
        raise RuntimeError("pg_dump died")
    assert store.list() == [] and list(tmp_path.rglob("*")) == [tmp_path / "staging", tmp_path / "staging" / "b1"]
    with store.open_write("staging/b1/db.sql.zst") as sink:
        sink.write(b"whole")
    assert [(o.key, o.size) for o in store.list()] == [("staging/b1/db.sql.zst", 5)]


def test_clean_partials_removes_a_dead_writers_file_and_spares_a_live_one(tmp_path: Path) -> None:
    dead = tmp_path / "staging" / "b0" / "db.sql.zst.partial"
    dead.parent.mkdir(parents=True)
    dead.write_bytes(b"left by kill -9")
    live = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "writing"
        removed = LocalStore(tmp_path).clean_partials()
        assert removed == ["staging/b0/db.sql.zst.partial"]
        assert not dead.exists()
        assert (tmp_path / "staging" / "b1" / "db.sql.zst.partial").exists()  # still being written
    finally:
        live.kill()
        live.wait()
    assert LocalStore(tmp_path).clean_partials() == ["staging/b1/db.sql.zst.partial"]  # its writer is gone now


def test_deleting_a_backups_last_file_removes_its_folder(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "backups")
    store.put("staging/20250101T000000Z/db.pgdump.zst", [b"x"])
    store.put("staging/20250101T000000Z/manifest.json", [b"{}"])
    store.delete("staging/20250101T000000Z/manifest.json")
    assert (tmp_path / "backups" / "staging" / "20250101T000000Z").is_dir()  # still holds the dump
    store.delete("staging/20250101T000000Z/db.pgdump.zst")
    assert not (tmp_path / "backups" / "staging" / "20250101T000000Z").exists()
    assert (tmp_path / "backups" / "staging").is_dir()  # the environment's folder stays


def test_a_get_from_a_byte_reads_only_the_rest(tmp_path: Path) -> None:
    """What a resumed recovery download asks of the store (S3 answers it with a ranged GET)."""
    store = LocalStore(tmp_path)
    store.put("staging/b1/app.tar.gz", [b"0123456789"])
    assert b"".join(store.get("staging/b1/app.tar.gz", start=4)) == b"456789"
    assert b"".join(store.get("staging/b1/app.tar.gz")) == b"0123456789"
