"""Packaging: `uv tool install` of this tree into a fresh tool environment, then the installed
`release-console` runs with nothing of the source tree on its path: `--version`, and `--sandbox`
on the example config that ships inside the wheel, opened on a pseudo-terminal and quit with `q`.

Needs uv on PATH (it fails, never skips, without it) and either uv's cache or PyPI.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import struct
import subprocess
import termios
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[=>]")
ROWS, COLUMNS = 24, 80

# Covers the install in the first test (its fixture): ~1.5 s from uv's cache, ~15 s from PyPI (measured).
pytestmark = pytest.mark.timeout(400)


@dataclass(frozen=True)
class Installed:
    executable: Path
    env: dict[str, str]  # a fresh tool dir, private XDG dirs, no virtualenv or PYTHONPATH
    home: Path  # the working directory: no release.toml here


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH: the packaging test needs it (pip install uv)"
    home = tmp_path_factory.mktemp("install")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(UV_TOOL_DIR=str(home / "tools"), UV_TOOL_BIN_DIR=str(home / "bin"),
               XDG_STATE_HOME=str(home / "state"), XDG_CONFIG_HOME=str(home / "config"))
    # Offline from uv's cache when it holds everything (fast); else from PyPI. Always rebuilt from
    # this tree: uv keys a local project's cached wheel on pyproject.toml, not on the code.
    install = [uv, "tool", "install", "--reinstall-package", "release-console", str(ROOT)]
    tries = [install[:3] + ["--offline"] + install[3:], install]
    for argv in tries:
        done = subprocess.run(argv, env=env, cwd=home, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            break
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    executable = home / "bin" / "release-console"
    assert executable.is_file(), f"no executable after install:\n{done.stderr}"
    return Installed(executable, env, home)


def test_version_is_the_projects(installed: Installed) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    done = subprocess.run([str(installed.executable), "--version"], env=installed.env, cwd=installed.home,
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout.strip()) == (0, f"release-console {project['version']}"), done.stderr


def test_sandbox_config_comes_from_the_installed_package(installed: Installed) -> None:
    done = subprocess.run([str(installed.executable), "--sandbox", "config", "check"], env=installed.env,
                          cwd=installed.home, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"config OK: {installed.env['UV_TOOL_DIR']}/"), first  # not the source tree's copy
    assert first.endswith("/services/sandbox/release.toml"), first


def test_sandbox_console_opens_and_quits_cleanly(installed: Installed) -> None:
    main, child = os.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    screen_env = {**installed.env, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(ROWS)}
    process = subprocess.Popen([str(installed.executable), "--sandbox"], stdin=child, stdout=child, stderr=child,
                               env=screen_env, cwd=installed.home, start_new_session=True)
    os.close(child)
    output = bytearray()

    def read_until(done: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            if select.select([main], [], [], 0.1)[0]:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # the child closed the terminal
                    return
                output.extend(chunk)

    def shown() -> str:
        return ANSI.sub(b"", bytes(output)).decode(errors="replace")

    try:
        # The environments pane with the packaged config's environments and the sandbox's data.
        read_until(lambda: all(text in shown() for text in ("Environments", "staging", "production", "1.4.1")), 45)
        assert "production" in shown() and "1.4.1" in shown(), f"the console did not open:\n{shown()[-2000:]}"
        os.write(main, b"q")
        read_until(lambda: process.poll() is not None, 45)  # a loaded CI machine has taken over 15 s
        assert process.poll() == 0, f"exit {process.poll()} after q:\n{shown()[-2000:]}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)
    assert "Traceback" not in shown() and "error:" not in shown(), shown()[-2000:]
    assert not list((installed.home / "state").rglob("crash-*.log")), "the console wrote a crash log"
