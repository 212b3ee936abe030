"""Serve the emulator as a process of its own, behind a kubeconfig, as a cluster would be.

    cd tests && python -m rig.kube_emulator --kubeconfig /tmp/emu.kubeconfig --never-ready IMAGE

The behavioural tests can then run through the kubeconfig alone (RC_REAL_KUBE=1), with no access to the
emulator's store or request log: the check that they would run unchanged on kind or k3d.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import threading
from pathlib import Path

import yaml

from .server import KubeEmulator


def kubeconfig(url: str, token: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
    })


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m rig.kube_emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True, help="where to write the kubeconfig (0600)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--never-ready", action="append", default=[], metavar="IMAGE",
                        help="pods of this image never become ready (repeatable)")
    args = parser.parse_args()
    token = secrets.token_hex(16)
    emulator = KubeEmulator(port=args.port, token=token).start()
    for image in args.never_ready:
        emulator.never_ready(image)
    fd = os.open(args.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(kubeconfig(emulator.url, token))
    print(f"serving on {emulator.url}; kubeconfig {args.kubeconfig}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    emulator.stop()


if __name__ == "__main__":
    main()
