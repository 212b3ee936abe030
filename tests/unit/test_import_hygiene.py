"""Rules of the house: services/ never imports textual; nothing runs a shell."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IMPORT_ALL = """
import importlib, json, pkgutil, sys
import services
names = ["services"] + [m.name for m in pkgutil.walk_packages(services.__path__, "services.")]
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.split(".")[0].startswith("textual"))
print(json.dumps({"imported": names, "textual": loaded}))
"""


def test_services_never_import_textual() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    on_disk = {p.stem for p in (ROOT / "services").rglob("*.py") if p.stem != "__init__"}
    imported = {name.rsplit(".", 1)[-1] for name in report["imported"]}
    assert on_disk <= imported, f"not imported: {on_disk - imported}"
    assert {"services.core.config", "services.core.operations", "services.sandbox.world"} <= set(report["imported"])
    assert report["textual"] == []


SHELL_TRUE = re.compile(r"shell\s*=\s*True")


def test_no_shell_true_anywhere() -> None:
    offenders = []
    scanned = 0
    for package in ("services", "console", "widgets"):
        for path in (ROOT / package).rglob("*.py"):
            scanned += 1
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if SHELL_TRUE.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert scanned > 10
    assert offenders == []


def test_shell_pattern_catches_variants() -> None:
    assert SHELL_TRUE.search("subprocess.run(cmd, shell=True)")
    assert SHELL_TRUE.search("Popen(cmd, shell = True)")
    assert not SHELL_TRUE.search("subprocess.run(argv, shell=False)")


SANDBOX_CHECK = re.compile(r"\.(sandbox|world)\b(?!\.)|\bSANDBOX_")


def test_no_capability_asks_whether_it_runs_in_the_sandbox() -> None:
    """The sandbox is a set of adapters the factory picks: the rest learns nothing of it (the Clock
    and SourceTree ports answer what the sandbox checks used to)."""
    allowed = {ROOT / "services" / "factory.py", ROOT / "services" / "core" / "container.py"}
    offenders, scanned = [], 0
    for path in (ROOT / "services").rglob("*.py"):
        if path in allowed or "sandbox" in path.relative_to(ROOT).parts[:2]:
            continue
        scanned += 1
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            if SANDBOX_CHECK.search(code) and "import" not in code:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert scanned > 40
    assert offenders == []


def test_no_two_test_modules_share_a_basename() -> None:
    """tests/unit, integration and ui have no __init__.py: pytest imports each of their test modules
    by its basename, so a second one of the same name stops the whole run's collection (twice so far:
    test_notify, test_dev_stack). A helper running only its own files never sees it; this does."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert not {name: paths for name, paths in seen.items() if len(paths) > 1}
