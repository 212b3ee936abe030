"""Old backups planted straight into a store (local directory or S3), for the retention tests.

A backup's age is its manifest's created_at (services.backups.catalog.taken_at), so a backup of 60
days ago is planted by the store's own put, in any store, without touching object times.
"""

from __future__ import annotations

import json
import time
from typing import Any

DAY = 86_400


def plant_backup(store: Any, env: str, days_ago: float, now: float, pinned: str = "") -> str:
    """A complete backup (a small dump and its manifest) taken `days_ago`; pinned to a release if given."""
    taken = now - days_ago * DAY
    backup_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(taken))
    prefix = f"{env}/{backup_id}/"
    store.put(prefix + "db.pgdump.zst", [b"planted"])
    manifest = {"format": 3, "id": backup_id, "env": env, "artifacts": {"db.pgdump.zst": {"size": 7}},
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(taken))}
    store.put(prefix + "manifest.json", [json.dumps(manifest).encode()])
    if pinned:
        store.put(prefix + "pin.json", [json.dumps({"release": pinned, "when": now}).encode()])
    return backup_id


def plant_history(store: Any, env: str, now: float) -> dict[str, str]:
    """Backups of 60 and 50 days ago (past a 30-day retention), 45 (past it, pinned), 40 (past it, but
    with the backup about to be taken one of the newest 3) and 10 days ago; by what retention does."""
    return {
        "gone-60": plant_backup(store, env, 60, now),
        "gone-50": plant_backup(store, env, 50, now),
        "pinned-45": plant_backup(store, env, 45, now, pinned="v1.3.9"),
        "newest-40": plant_backup(store, env, 40, now),
        "recent-10": plant_backup(store, env, 10, now),
    }
