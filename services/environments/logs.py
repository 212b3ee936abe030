"""The app's logs and resource use, per environment: for `release-console logs` and `top`, the TUI's
logs screen, and any view that embeds the resource table (the environment's detail).

Every line from a container or a pod is untrusted: `shown` strips its terminal escape and control
sequences (services/core/log_lines.clean) and masks it (the one choke point, services/core/masking),
so an app that prints its DATABASE_URL shows it masked. Reads, like `status`, are not audited.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.core.log_lines import clean
from services.core.masking import mask_text
from services.core.observe import ROLES, LogRecord, Usage, UsageReport

if TYPE_CHECKING:
    from services.core.container import Services

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None) -> float | None:
    """`10m`, `30s`, `2h`, `1d`, `90` (seconds) -> seconds; None or "" or "all": everything kept."""
    if text is None or text.strip() in ("", "all"):
        return None
    found = _SINCE.match(text)
    if not found:
        raise ValueError(f"--since takes a duration such as 30s, 10m, 2h or 1d, got {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def check_role(role: str | None) -> str | None:
    if role in (None, "", "all"):
        return None
    if role not in ROLES:
        raise ValueError(f"role must be stable or canary, got {role!r}")
    return role


@dataclass(frozen=True)
class Line:
    """A log line fit to show: cleaned and masked."""

    source: str
    role: str
    when: str
    text: str

    def render(self, stamps: bool = True) -> str:
        stamp = f"{self.when[:19].replace('T', ' ')} " if stamps and self.when else ""
        return f"[{self.role}] {stamp}{self.source}: {self.text}"

    def as_json(self) -> dict[str, str]:
        return self.__dict__.copy()


def shown(record: LogRecord) -> Line:
    return Line(mask_text(clean(record.source)), record.role, clean(record.when), mask_text(clean(record.text)))


def follow_logs(services: Services, env: str, *, role: str | None = None, since_s: float | None = None,
                follow: bool = False, cancel: threading.Event | None = None) -> Iterator[Line]:
    """The environment's app log lines, cleaned and masked. Without `follow` they end with what is kept,
    in time order; with it they go on as they come until `cancel` is set."""
    cancel = cancel or threading.Event()
    records = services.observer(env).logs(check_role(role), since_s, follow, cancel)
    if follow:
        for record in records:
            yield shown(record)
        return
    yield from sorted((shown(r) for r in records), key=lambda line: line.when)


def matches(line: Line, needle: str) -> bool:
    """A filter: the needle in the rendered line, case-insensitively."""
    return not needle or needle.casefold() in line.render().casefold()


def resource_use(services: Services, env: str) -> UsageReport:
    """CPU and memory per container or pod of the environment, names cleaned and masked."""
    report = services.observer(env).usage()
    rows = tuple(Usage(mask_text(clean(u.source)), u.role, u.cpu_percent, u.memory_bytes, u.memory_limit)
                 for u in report.rows)
    return UsageReport(rows, report.source, mask_text(report.note))


def size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value}B"


def usage_cells(row: Usage) -> tuple[str, str, str, str]:
    """(name, role, CPU, memory) as the table and the CLI show them."""
    cpu = "-" if row.cpu_percent is None else f"{row.cpu_percent:.1f}%"
    memory = size(row.memory_bytes) + (f" / {size(row.memory_limit)}" if row.memory_limit else "")
    return row.source, row.role, cpu, memory


def usage_lines(report: UsageReport) -> list[str]:
    lines = [f"{'CONTAINER':<40} {'ROLE':<7} {'CPU':>7}  MEMORY"]
    lines += [f"{n:<40} {r:<7} {c:>7}  {m}" for n, r, c, m in map(usage_cells, report.rows)]
    if report.note:
        lines.append(report.note)
    elif not report.rows:
        lines.append("no running containers or pods")
    return lines


def usage_json(report: UsageReport) -> dict[str, object]:
    return {"source": report.source, "note": report.note, "rows": [u.__dict__ for u in report.rows]}
