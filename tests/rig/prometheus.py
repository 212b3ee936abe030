"""A private Prometheus for the tests that stop it or want their own targets: its file_sd directory
(`targets`), scraped every 0.5 s. The `prometheus` fixture (tests/conftest.py) starts one per test."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from rig.helpers import free_port, wait_until


class Prometheus:
    """A private Prometheus (a test may stop it mid-canary), scraping file_sd targets every 0.5 s."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.targets = root / "targets"
        self.targets.mkdir(parents=True)
        (root / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 500ms, scrape_timeout: 500ms, evaluation_interval: 1s}}
scrape_configs:
  - job_name: app
    file_sd_configs: [{{files: ["{self.targets}/*.json"], refresh_interval: 1s}}]
""")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.root / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={self.root / 'prometheus.yml'}", f"--storage.tsdb.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: _ok(f"{self.url}/-/ready"), timeout=60, what="the private Prometheus")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def has_data(self, query: str) -> bool:
        """Does the instant `query` give a value above 0 now?"""
        try:
            found = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        return any(float(r["value"][1]) > 0 for r in found["data"]["result"])


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
