"""One way to open a PostgreSQL connection: errors name the server and never the password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from services.masking import mask
from services.operations import StepFailed


@contextmanager
def connect(dsn: str, autocommit: bool = True, timeout_s: int = 5) -> Iterator[psycopg.Connection[Any]]:
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=timeout_s)
    except psycopg.OperationalError as err:
        text = str(err).strip()
        detail = str(mask(text.splitlines()[-1] if text else type(err).__name__))
        raise StepFailed(f"cannot connect to {mask(dsn)}: {detail}",
                         ("check the host, port and credentials in database_url", "retry")) from None
    with conn:
        yield conn
