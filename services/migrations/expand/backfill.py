"""The backfill both procedures share: batches by primary key, each its own short transaction,
until no row is pending; resumable, and reporting its rate and ETA as it goes.
"""

from __future__ import annotations

import functools
import time

from services.core.operations import StepContext, StepFailed
from services.migrations.expand.phase import Phase

MAX_SWEEPS = 3  # passes over the table before a backfill gives up on rows that keep arriving NULL
REPORT_EVERY = 10  # batches between rate/ETA log lines (and at most 5 s)
REPORT_EVERY_S = 5.0


def backfill_in_batches(phase: Phase, ctx: StepContext) -> str:
    """Fills `phase.target` with `phase.fill` until no row is pending; idempotent, so a resume just goes on."""
    p, column, fill = phase.p, phase.target, phase.fill
    _, key = phase.keyed()
    rows, pending = phase.count(ctx, column, fill)
    already = rows - pending
    ctx.log(f"{p.table}: {rows} rows, {already} already backfilled, {pending} to go; "
            f"batches of {p.batch_size} by {key}")
    after: str | int | None = ctx.state.get("last_key")
    if after is not None:
        ctx.log(f"continuing after {key} {after}; rows before it are swept at the end")
    total = max(rows, 1)
    done = batches = sweeps = 0
    started = last_report = time.monotonic()
    while True:
        ctx.check_cancelled()
        batch = phase.retrying(ctx, f"batch after {key} {after}", functools.partial(
            phase.schema.backfill_batch, p.table, key, column, fill, after, p.batch_size, p.lock_timeout_ms))
        if batch.last_key is None:  # the end of the table: anything left (new rows, or before a resume point)?
            sweeps += 1
            rows, pending = phase.count(ctx, column, fill)
            if pending == 0:
                break
            if sweeps >= MAX_SWEEPS:
                raise StepFailed(
                    f"{pending} rows of {p.table} still need {column} after {sweeps} passes: rows keep "
                    f"arriving without it, or the backfill value is NULL for them",
                    ("deploy the app version that writes the new column, then run backfill again",
                     "check the backfill expression", "run phase=abort-backfill"))
            ctx.log(f"{pending} rows still pending (written during the pass, or before the resume point); "
                    "another pass from the start")
            after = None
            ctx.state["last_key"] = None
            total = max(total, already + done + pending)
            continue
        done += batch.rows
        batches += 1
        after = batch.last_key
        ctx.state["last_key"] = after  # journaled with the step; idempotency covers a mid-step stop
        ctx.state["backfilled"] = int(ctx.state.get("backfilled", 0)) + batch.rows
        total = max(total, already + done)
        ctx.progress(already + done, total, "rows")
        now = time.monotonic()
        if batches % REPORT_EVERY == 0 or now - last_report >= REPORT_EVERY_S:
            last_report = now
            rate = done / max(now - started, 1e-6)
            left = max(total - already - done, 0)
            ctx.log(f"{already + done}/{total} rows ({100 * (already + done) // total}%), {rate:,.0f} rows/s, "
                    f"ETA {left / rate if rate else 0:,.0f} s, last {key} {after}")
        if p.batch_delay_ms:
            ctx.sleep(phase.services.real_seconds(p.batch_delay_ms / 1000))
    elapsed = time.monotonic() - started
    ctx.state["last_key"] = None
    ctx.progress(total, total, "rows")
    rate = done / elapsed if elapsed > 0 else 0.0
    return f"{done} rows in {batches} batches ({rate:,.0f} rows/s); {already} were already done"
