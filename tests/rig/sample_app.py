"""Build context for the sample app in tests/fixtures/sample-app.

The static busybox binary (Debian's busybox-static, /bin/busybox) is not
committed; `prepare_context` copies the fixture and the binary into a
directory that `docker build --network host` (or the docker SDK with
``network_mode="host"``) can use as its context.
"""

from __future__ import annotations

import io
import shutil
import struct
import tarfile
from pathlib import Path
from typing import Any

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "sample-app"
BUSYBOX = Path("/bin/busybox")

# Defaults baked into the image (see the Dockerfile).
DEFAULT_PORT = 3000
DEFAULT_NEXT_PUBLIC_API_URL = "http://127.0.0.1:3000/api"


def _is_static_elf(path: Path) -> bool:
    """True if `path` is a 64-bit little-endian ELF without a PT_INTERP header."""
    with path.open("rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return False
        phoff = struct.unpack_from("<Q", head, 0x20)[0]
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(
        struct.unpack_from("<I", table, i * phentsize)[0] != 3  # PT_INTERP
        for i in range(phnum)
    )


def prepare_context(dest: Path, busybox: Path = BUSYBOX) -> Path:
    """Copy the sample-app fixture plus a static busybox into `dest`; return `dest`.

    `dest` may exist (it must then be empty or hold a previous context).
    """
    dest = Path(dest)
    if not busybox.is_file():
        raise FileNotFoundError(f"{busybox} is missing: install busybox-static (tests/rig/run does)")
    if not _is_static_elf(busybox):
        raise RuntimeError(
            f"{busybox} is not a static binary: install busybox-static, an image FROM scratch has no libc"
        )
    shutil.copytree(FIXTURE_DIR, dest, symlinks=True, dirs_exist_ok=True)
    shutil.copy2(busybox, dest / "busybox")
    return dest


def build_derived(docker_client: Any, base: str, tag: str, dockerfile: str) -> None:
    """Build `tag` FROM base with a few more Dockerfile lines (a context of the Dockerfile alone)."""
    data = f"FROM {base}\n{dockerfile}\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    docker_client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True, network_mode="host")
