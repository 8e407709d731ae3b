"""Real services the tests may use: the PostgreSQL test server, and a fresh database on it per use.

Tests that need PostgreSQL skip, saying how to enable them, when `BACKDROP_TEST_POSTGRES_URL` is unset;
CI sets it and `BACKDROP_REQUIRE_SERVICES=1` (see `.ci/run` and the hook in `tests/conftest.py`), which
turns such a skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

__all__ = ["fresh_postgres_database", "postgres_url"]


def postgres_url() -> str:
    """The PostgreSQL test database, or skip with how to enable it."""
    url = os.environ.get("BACKDROP_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set BACKDROP_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test to run")
    return url


@contextmanager
def fresh_postgres_database(prefix: str = "backdrop_test") -> Iterator[str]:
    """A new database on the test PostgreSQL server (skips without one); dropped, with its engines, after."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(postgres_url())
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        from backdrop.store import ledger as _ledger

        for url in [u for u in _ledger._engines if name in u]:
            _ledger._engines.pop(url).dispose()
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
