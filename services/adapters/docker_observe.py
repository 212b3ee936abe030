"""The app's logs and resource use on a Docker host (unix:// or ssh://), through the docker SDK.

The containers are the Docker target's own (labels release-console.app/env); a container's role is
what the host's upstream file says it serves (a promoted canary serves as stable), else its role
label. Stopped ones (earlier revisions) are left out. CPU % is computed as `docker stats` does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from services.adapters.docker_fleet import APP, ENV, ROLE
from services.adapters.docker_target import DockerHostTarget
from services.core.config import ReleaseConfig
from services.core.log_lines import Stream, merged
from services.core.observe import LogRecord, Usage, UsageReport

LIVE = ("running", "restarting", "paused")


class DockerObserver:
    def __init__(self, config: ReleaseConfig, env: str) -> None:
        self.target = DockerHostTarget(config, env)  # its own: a follow holds its engine connection open
        self.labels = [f"{APP}={config.app.name}", f"{ENV}={env}"]

    def close(self) -> None:
        self.target.close()

    def _containers(self, api: Any, role: str | None) -> list[tuple[str, str, str]]:
        """(id, name, role) of the app's live containers, stable first."""
        _, servers = self.target.upstream.read()
        serving = {s.port: s.role for s in servers}
        found = []
        for summary in api.containers(filters={"label": self.labels}):
            if summary.get("State") not in LIVE:
                continue
            labels = summary.get("Labels") or {}
            port = str(labels.get("release-console.port", ""))
            each = serving.get(int(port)) if port.isdigit() and int(port) in serving else labels.get(ROLE, "stable")
            name = str((summary.get("Names") or ["?"])[0]).lstrip("/")
            if role in (None, each):
                found.append((summary["Id"], name, str(each)))
        return sorted(found, key=lambda c: (c[2] != "stable", c[1]))

    def logs(self, role: str | None, since_s: float | None, follow: bool,
             cancel: threading.Event) -> Iterator[LogRecord]:
        with ExitStack() as stack:
            api = stack.enter_context(self.target._reading("reading the app's logs"))
            since = None if since_s is None else int(time.time() - since_s)
            streams = []
            for cid, name, each in self._containers(api, role):
                opened: list[Any] = []

                def start(cid: str = cid, opened: list[Any] = opened) -> Any:
                    chunks = api.logs(cid, stream=True, follow=follow, timestamps=True, since=since)
                    opened.append(chunks)
                    return chunks

                def stop(opened: list[Any] = opened) -> None:
                    for chunks in opened:
                        chunks.close()

                streams.append(Stream(name, each, start, stop))
            yield from merged(streams, cancel)

    def usage(self) -> UsageReport:
        with self.target._reading("reading the app's resource use") as api:
            boxes = self._containers(api, None)
            with ThreadPoolExecutor(max_workers=max(1, min(8, len(boxes)))) as pool:
                stats = list(pool.map(lambda box: api.stats(box[0], stream=False), boxes))
        rows = tuple(Usage(name, role, cpu_percent(s), *memory(s))
                     for (_, name, role), s in zip(boxes, stats, strict=True))
        return UsageReport(rows, "docker stats")


def cpu_percent(stats: dict[str, Any]) -> float | None:
    """As `docker stats`: the container's CPU time over the host's in the sampled span, times the CPUs."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    try:
        used = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        system = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    except (KeyError, TypeError):
        return None
    cpus = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or ()) or 1
    return round(used / system * cpus * 100.0, 2) if system > 0 and used >= 0 else 0.0


def memory(stats: dict[str, Any]) -> tuple[int | None, int | None]:
    """(used, limit) as `docker stats`: usage less the page cache (cgroup v1 cache, v2 inactive_file)."""
    mem = stats.get("memory_stats") or {}
    if "usage" not in mem:
        return None, None
    detail = mem.get("stats") or {}
    cache = detail.get("total_inactive_file", detail.get("inactive_file", detail.get("cache", 0)))
    limit = mem.get("limit")
    return int(mem["usage"]) - int(cache or 0), int(limit) if limit and limit < (1 << 62) else None
