"""Byte counts as the console says them in logs and reports: SI units (kB, MB, GB), one decimal.

Tables keep their own compact binary form (widgets/backups.py) and container memory follows
`docker stats` (MiB, services/environments/logs.py): those are columns, not sentences.
"""

from __future__ import annotations


def byte_size(count: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} B"
