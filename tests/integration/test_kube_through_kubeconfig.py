"""The behavioural Kubernetes tests run through a kubeconfig alone, as they would on kind or k3d.

The emulator is served as a process of its own (python -m rig.kube_emulator), so the tests marked
``kube`` reach it only as a cluster, over HTTP with the kubeconfig's token: none of them can lean on the
emulator's store, request log or faults. This is what RC_REAL_KUBE=1 runs against a real cluster.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from rig.helpers import wait_until
from rig.kube_cluster import STUCK

TESTS = Path(__file__).resolve().parents[1]


def test_every_kube_test_passes_against_a_cluster_known_only_by_its_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    server = subprocess.Popen([sys.executable, "-m", "rig.kube_emulator", "--kubeconfig", str(kubeconfig),
                               "--never-ready", STUCK], cwd=TESTS, stdout=subprocess.PIPE, text=True)
    try:
        wait_until(kubeconfig.exists, timeout=30, interval=0.05, what="the emulator's kubeconfig")
        assert kubeconfig.stat().st_mode & 0o777 == 0o600
        env = {**os.environ, "RC_REAL_KUBE": "1", "KUBECONFIG": str(kubeconfig), "RC_KUBE_STUCK_TIMEOUT_S": "1"}
        run = subprocess.run([sys.executable, "-m", "pytest", str(TESTS / "integration"), "-m", "kube", "-q",
                              "-p", "no:cacheprovider", "-rs"],
                             cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=600, check=False)
    finally:
        server.terminate()
        server.wait(timeout=10)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    # What failed first (the rig logs appended to each failure would push it out of a plain tail).
    failures = [line for line in run.stdout.splitlines() if line.startswith(("FAILED", "ERROR", "E   "))]
    assert run.returncode == 0, "\n".join(failures[:60]) + "\n" + run.stdout[-3000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 20 and "skipped" not in summary and "deselected" in summary, summary
