"""What the PITR benches share: the rig's archiving cluster (tests/rig/pitr_cluster.py) and the console's
services on it, built as the rig tests build them (tests/integration/test_pitr.py).

Both need the rig (`bash tests/rig/run --exec ...`): RC_RIG_DIR, pgBackRest and PostgreSQL 15.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _common  # noqa: F401 - puts tests/ on sys.path, for rig
from rig import config_builder as toml
from rig.pitr_cluster import PitrCluster

from services import factory
from services.core import config as config_module
from services.core.container import Services
from services.core.events import Event, StepFinished, StepStarted


@contextmanager
def pitr_cluster() -> Iterator[PitrCluster]:
    """A private cluster archiving through pgBackRest, in the rig's directory; removed after."""
    rig_dir = os.environ.get("RC_RIG_DIR")
    if not rig_dir:
        raise SystemExit("run it in the rig: bash tests/rig/run --exec uv run --frozen python bench/...")
    cluster = PitrCluster(Path(rig_dir))
    try:
        yield cluster
    finally:
        cluster.remove()


def console_services(work: Path, cluster: PitrCluster, database: str, **production: Any) -> Services:
    """The console's services for a `production` on `database` of the cluster, [backup.pitr] on it;
    `production` adds keys to the environment (stop, start, api_url)."""
    environment = toml.environment(database_url=toml.secret("PITR_DB"), production=True, **production)
    (work / "migrations").mkdir(exist_ok=True)
    path = toml.release({"production": environment},
                        backup=toml.backup(str(work / "store"), compression="zstd",
                                           signing_key=toml.secret("BENCH_SIGNING_KEY"),
                                           pitr=cluster.pitr_section()),
                        recovery={"health_interval_s": 0.1},
                        migrations={"dir": str(work / "migrations"), "integrity_tables": ["bench_rows"]},
                        ).write(work / "release.toml")
    # In this process's environment, as a console's: the restore walkthrough loads release.toml again.
    os.environ.update(PITR_DB=cluster.dsn(database), BENCH_SIGNING_KEY="bench-key")
    return factory.build(config_module.load(path, dict(os.environ)), state=work / "state")


def wal_bytes(cluster: PitrCluster) -> int:
    """WAL written since the cluster started (pg_stat_wal): not the LSN's advance, which also counts the
    unused rest of each segment a WAL switch skips."""
    return int(scalar(cluster, "SELECT wal_bytes FROM pg_stat_wal"))


def scalar(cluster: PitrCluster, statement: str, database: str = "postgres") -> Any:
    """The first column of the first row: a number or a text, as the bench reads it."""
    return cluster.execute(statement, database)[0][0]


def step_seconds(events: list[Event]) -> dict[str, float]:
    """Each step's wall time, from its StepStarted to its StepFinished event."""
    began = {e.step_id: e.at for e in events if isinstance(e, StepStarted)}
    return {e.step_id: e.at - began[e.step_id] for e in events if isinstance(e, StepFinished) and e.step_id in began}


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share 0.95: p95) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summary(values: list[float]) -> tuple[float, float, float, float]:
    """min, median, p95, max."""
    return min(values), statistics.median(values), percentile(values, 0.95), max(values)
