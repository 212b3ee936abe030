"""Zero-downtime schema changes as expand/contract: one phase per run, the app deployed in between.

Two procedures, each an action run once per phase (param `phase`): expand, backfill, contract.

    add_column.py     expand-add-column: nullable, backfilled, then NOT NULL
    rename_column.py  expand-rename-column: a twin column kept equal by a trigger, then the old one dropped
    params.py         the parameters they share, checked; the names of the objects they create
    phase.py          what their phases are built from: retried DDL, table checks, the NOT NULL check
    backfill.py       the batched, resumable backfill they share

Aborts (phase = abort-expand | abort-backfill | abort-contract) put the schema back as it was
before that phase, losing no data. abort-backfill changes nothing: a running backfill stops on
cancel, and the rows already backfilled are harmless (the column is still nullable, a rename's
trigger still syncs). It reports how far the backfill got.

Every schema change runs under SET LOCAL lock_timeout (param lock_timeout_ms, 500) in its own short
transaction; when it cannot get its lock it is retried (lock_retries, 8) with exponential backoff and
jitter, each retry logged with the session holding the lock, then fails naming that session.

Identifiers only reach SQL through psycopg.sql.Identifier in the adapter. `type` must match a
conservative pattern. `backfill` is SQL typed by the operator, trusted like a migration file: the
adapter wraps it in sql.SQL as it is.
"""
