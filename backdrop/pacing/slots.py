"""The database limiter's tables, `backdrop_rate_slots` and `backdrop_polls_owed`, and what reaches them: the
engines, the per-key locks (in the process and in PostgreSQL) and the text of its errors. `backdrop.pacing.database`
decides the slots.

The engines are `backdrop.store.engine`'s, set up for one short transaction per request: psycopg always on
PostgreSQL (no fallback: the limiter was only ever run with it), no pre-ping (a dropped connection fails the
transaction, which the limiter tries again; a ping would double its round trips), SQLite taking its write lock
first (`BEGIN IMMEDIATE`), and durability traded for speed (`synchronous=NORMAL` on SQLite,
`synchronous_commit = off` on PostgreSQL: see `backdrop.pacing.database`). Processes starting together would
race on CREATE TABLE: on PostgreSQL it runs under the per-key advisory lock of a reserved key.
`booked_in_thread` books off the event loop without losing a booking to a cancelled waiter.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    inspect,
    select,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from backdrop.errors import ConfigError
from backdrop.store.engine import EngineCache

__all__ = ["RETRY_PAUSES", "booked_in_thread", "engine_for", "engines", "failure", "key_lock", "opened", "owed",
           "redacted", "serialise", "slots", "transient"]

#: First key of the two-key advisory lock, so our locks never collide with another application's.
LOCK_NAMESPACE = 0x0BAC_D409

T = TypeVar("T")
#: A database that failed is tried this many times (pauses in seconds) before the error is raised.
RETRY_PAUSES = (0.05, 0.25)

metadata = MetaData()
slots = Table(
    "backdrop_rate_slots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", String(200), nullable=False),
    Column("slot_at", Double, nullable=False),  # when the server may have counted it (see `cells.Slot`)
    Column("booked_at", Double, nullable=False),  # the time it was given
    Column("in_flight", Boolean, nullable=False),  # given and not yet answered
    Index("ix_backdrop_rate_slots_key_slot", "key_id", "slot_at"),
)
#: The tasks a key (or an egress address) owes polls: `ref` is the vendor's task id, or `slot:<row id>` for a create
#: in flight; `seen_at` is when it was last said running (rows not seen for a few poll rounds no longer count).
owed = Table(
    "backdrop_polls_owed",
    metadata,
    Column("key_id", String(200), primary_key=True),
    Column("ref", String(200), primary_key=True),
    Column("seen_at", Double, nullable=False),
)

#: One transaction at a time per (url, key) in a process: waiters queue here, not on the database.
_key_locks: dict[tuple[str, str], threading.Lock] = {}
_key_locks_lock = threading.Lock()


def serialise(conn: Connection, key: str) -> None:
    """Hold the per-key lock until the transaction ends (SQLite already holds the write lock)."""
    if conn.dialect.name == "postgresql":
        # a statement of its own: in READ COMMITTED the next statement's snapshot is taken after
        # the lock is granted, so it sees every slot the previous holder committed
        conn.execute(select(func.pg_advisory_xact_lock(LOCK_NAMESPACE, func.hashtext(key))))


def _create_tables(conn: Connection) -> None:
    _drop_old_shape(conn)
    metadata.create_all(conn)


def _drop_old_shape(conn: Connection) -> None:
    """A slots table from before in-flight tracking is dropped: it holds only the last few minutes' slots,
    and losing them costs at most one window's worth of 429s, once."""
    found = inspect(conn)
    if found.has_table(slots.name):
        columns = {c["name"] for c in found.get_columns(slots.name)}
        if not {c.name for c in slots.columns} <= columns:
            slots.drop(conn)


_engine_cache = EngineCache(
    _create_tables,
    create_lock=(LOCK_NAMESPACE, func.hashtext("__create__")),  # what `serialise(conn, "__create__")` takes
    pre_ping=False,
    psycopg_fallback=False,
    sqlite_pragmas=("PRAGMA busy_timeout=30000", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"),
    sqlite_begin_immediate=True,
    postgres_session=("SET synchronous_commit = off",),
)
#: url -> engine (tests and the bench dispose of the engines of a database they drop)
engines = _engine_cache.engines


def engine_for(url: str) -> Engine:
    """The engine for `url`, created once per process with the slots table in place."""
    return _engine_cache.get(url)


def opened(url: str) -> Engine:
    """`engine_for`, raising `ConfigError`; processes opening one new SQLite file together may find it locked, so
    that is tried again, as a booking is."""
    for pause in (*RETRY_PAUSES, None):
        try:
            return engine_for(url)
        except DBAPIError as exc:
            if pause is None or not transient(exc):
                raise ConfigError(f"cannot open the limiter database {failure(url, exc)}") from exc
            time.sleep(pause)
    raise AssertionError("unreachable")


def key_lock(url: str, key_id: str) -> threading.Lock:
    with _key_locks_lock:
        return _key_locks.setdefault((url, key_id), threading.Lock())


def redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as its scheme only
        return url.split(":", 1)[0] + "://..."


def failure(url: str, exc: DBAPIError) -> str:
    """`<url without password>: <driver error>`, for error messages."""
    return f"{redacted(url)}: {type(exc.orig).__name__}: {str(exc.orig).strip()[:200]}"


def transient(exc: DBAPIError) -> bool:
    """A dropped connection or a lock timeout may pass; a bad URL or schema will not."""
    return exc.connection_invalidated or "locked" in str(exc.orig).lower()


async def booked_in_thread(book: Callable[[], T | None], give_back: Callable[[T], None]) -> T | None:
    """`book()` in a worker thread. A waiter cancelled meanwhile (a task's timeout, say) cannot stop the thread: what
    it books once it ends is given back (`give_back`, in a thread of its own), not left booked with nobody to settle
    it, as long as the event loop still runs then (else the booking expires as before, in 2 minutes). The
    cancellation is not delayed."""
    job = asyncio.ensure_future(asyncio.to_thread(book))

    def orphaned(done: asyncio.Future[T | None]) -> None:
        if not done.cancelled() and done.exception() is None and (booked := done.result()) is not None:
            threading.Thread(target=give_back, args=(booked,), daemon=True, name="backdrop-give-back").start()

    try:
        return await asyncio.shield(job)
    except BaseException:
        job.add_done_callback(orphaned)
        raise
