"""SQLAlchemy engines for Backdrop's own tables: one per URL and per user, created once per process.

Two users share this set-up, the ledger (`backdrop.store.ledger`) and the database limiter
(`backdrop.pacing.database`). Each keeps its own `EngineCache`, so one URL serving both gets two engines: their
connections are set up differently, on purpose, and the differences are this cache's parameters:

- `postgresql://` means psycopg 3 (SQLAlchemy's default would be psycopg2). The ledger falls back to the URL
  as written when psycopg is not installed (`psycopg_fallback=True`): it must open wherever SQLAlchemy can. The
  limiter always rewrites: it was only ever used with psycopg, and a missing driver fails loudly there.
- The ledger pings pooled connections before use (`pre_ping=True`): its calls are rare, and a connection
  dropped between them must not fail a money-critical write. The limiter does not: it runs one short transaction
  per request, a ping would double its round trips, and a dropped connection fails the transaction, which the
  limiter tries again.
- SQLite connections run the caller's pragmas, in the caller's order. The limiter also hands transaction control
  to SQLAlchemy and opens every transaction with `BEGIN IMMEDIATE` (the write lock first), and sets session
  statements on PostgreSQL connections (`synchronous_commit = off`); the ledger needs neither.
- Tables are created when the engine is made. Processes starting together on a fresh PostgreSQL would race on
  CREATE TABLE (checked, then created), so there it runs under a transaction-scoped advisory lock whose key is
  the caller's (`create_lock`, the arguments of `pg_advisory_xact_lock`). Elsewhere the database's own lock
  serialises it, and a lost race is tried `create_tries` times in all (the ledger: twice; the limiter: once, its
  caller tries again). An engine whose tables could not be made is disposed and not kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

__all__ = ["EngineCache", "driver_url"]


def driver_url(url: str, *, psycopg_fallback: bool = False) -> str:
    """`postgresql://` as psycopg 3 (`postgresql+psycopg://`); with `psycopg_fallback`, the URL as written when
    psycopg is not installed. Any other URL is returned as it is."""
    if not url.startswith("postgresql://"):
        return url
    if psycopg_fallback:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return url
    return "postgresql+psycopg://" + url[len("postgresql://") :]


class EngineCache:
    """The engines of one user of the database, one per URL, each with its tables in place (see the module)."""

    def __init__(
        self,
        create: Callable[[Connection], None],
        *,
        create_lock: Sequence[Any],
        pre_ping: bool,
        psycopg_fallback: bool,
        sqlite_pragmas: Sequence[str],
        sqlite_begin_immediate: bool = False,
        postgres_session: Sequence[str] = (),
        create_tries: int = 1,
    ) -> None:
        self._create = create
        self._create_lock = tuple(create_lock)
        self._pre_ping = pre_ping
        self._psycopg_fallback = psycopg_fallback
        self._sqlite_pragmas = tuple(sqlite_pragmas)
        self._sqlite_begin_immediate = sqlite_begin_immediate
        self._postgres_session = tuple(postgres_session)
        self._create_tries = create_tries
        #: url -> engine (tests dispose of the engines of a database they drop)
        self.engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> Engine:
        """The engine for `url`, made once per process (and per cache) with the tables in place."""
        with self._lock:
            engine = self.engines.get(url)
            if engine is None:
                driver = driver_url(url, psycopg_fallback=self._psycopg_fallback)
                engine = create_engine(driver, pool_pre_ping=True) if self._pre_ping else create_engine(driver)
                if engine.dialect.name == "sqlite":
                    self._sqlite_hooks(engine)
                elif engine.dialect.name == "postgresql" and self._postgres_session:
                    self._postgres_hooks(engine)
                try:
                    self._create_tables(engine)
                except BaseException:
                    engine.dispose()
                    raise
                self.engines[url] = engine
            return engine

    def _sqlite_hooks(self, engine: Engine) -> None:
        pragmas, immediate = self._sqlite_pragmas, self._sqlite_begin_immediate

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            if immediate:
                dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" below issue BEGIN itself
            cur = dbapi_conn.cursor()
            for pragma in pragmas:
                cur.execute(pragma)
            cur.close()

        if immediate:

            @event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    def _postgres_hooks(self, engine: Engine) -> None:
        statements = self._postgres_session

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
            dbapi_conn.commit()

    def _create_tables(self, engine: Engine) -> None:
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                # a statement of its own, before the tables are inspected
                conn.execute(select(func.pg_advisory_xact_lock(*self._create_lock)))
                self._create(conn)
            return
        for attempt in range(1, self._create_tries + 1):
            try:
                with engine.begin() as conn:
                    self._create(conn)
                return
            except DBAPIError:
                if attempt == self._create_tries:
                    raise
