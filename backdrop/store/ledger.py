"""Backdrop's durable ledger: what was created, for which picture, and how it ended.

It is the source of truth for "never pay twice": a row is written *before* the create call (`creating`), the
task id the moment it is known (`created`), and every terminal state after. A crash at any point leaves enough
to resume: `created` rows are polled by task id, `creating`/`ambiguous` rows are reconciled, never re-created
blindly. SQLite by default; any SQLAlchemy URL (PostgreSQL included) works the same.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

__all__ = ["Ledger", "LedgerEntry", "OWNER", "UTCDateTime", "as_utc", "default_ledger_url", "owner_alive", "TERMINAL",
           "IN_FLIGHT"]

TERMINAL = frozenset({"succeeded", "failed"})
#: states where a vendor task may exist that we must not duplicate
IN_FLIGHT = frozenset({"creating", "created", "ambiguous", "pending_reconcile"})


def as_utc(value: datetime | None) -> datetime | None:
    """The same instant as an aware UTC datetime. Aware values are converted (`astimezone`, never a relabel:
    PostgreSQL hands `timestamptz` back in the session's TimeZone, e.g. +09:00 under PGTZ=Asia/Tokyo);
    naive values are taken as UTC, because Backdrop only ever writes UTC and SQLite keeps no zone."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        return datetime.combine(value.date(), value.time(), UTC)
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that stores UTC and always reads back aware UTC, whatever the database's
    or the session's time zone (and SQLite's naive strings)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)


metadata = MetaData()
work = Table(
    "backdrop_work",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("content_key", String(128), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("run_id", String(64)),
    Column("owner", String(200)),
    Column("deployment", String(200)),
    Column("environment", String(32)),
    Column("row_id", Text),
    Column("image_sha256", String(64)),
    Column("prompt", Text),
    Column("template_id", String(200)),
    Column("file_id", String(200)),
    Column("task_id", String(200)),
    Column("request_id", String(64)),
    Column("units", Integer, nullable=False, default=0),
    Column("charged_run_id", String(64)),
    Column("error_code", String(100)),
    Column("error_message", Text),
    Column("output_path", Text),
    Column("output_sha256", String(64)),
    Column("width", Integer),
    Column("height", Integer),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("charged_at", UTCDateTime),  # when this run saw the success the vendor charged
    Column("key_id", String(32)),  # which API key made the create (tasks.runtime.key_id: a hash, not the key)
    Column("charged_owner", String(200)),  # the process that recorded the charge (host:pid)
    Column("reported_at", UTCDateTime),  # when the charging run's report was written
    UniqueConstraint("content_key", "attempt", name="uq_backdrop_work_key_attempt"),
)

_FIELDS = [c.name for c in work.columns]


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    content_key: str
    attempt: int
    status: str
    run_id: str | None
    owner: str | None
    deployment: str | None
    environment: str | None
    row_id: str | None
    image_sha256: str | None
    prompt: str | None
    template_id: str | None
    file_id: str | None
    task_id: str | None
    request_id: str | None
    units: int
    charged_run_id: str | None
    error_code: str | None
    error_message: str | None
    output_path: str | None
    output_sha256: str | None
    width: int | None
    height: int | None
    created_at: datetime
    updated_at: datetime
    charged_at: datetime | None = None
    key_id: str | None = None
    charged_owner: str | None = None
    reported_at: datetime | None = None

    def __post_init__(self) -> None:
        # aware UTC whoever built the entry (rows read back already are: see `UTCDateTime`)
        for name in ("created_at", "updated_at", "charged_at"):
            object.__setattr__(self, name, as_utc(getattr(self, name)))


#: who holds a `creating` row: a run on this host whose process is gone holds nothing any more
OWNER = f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None) -> bool | None:
    """True/False for an owner on this host (is its process alive?), None for another host."""
    if not owner or ":" not in owner:
        return None
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def default_ledger_url() -> str:
    """`BACKDROP_LEDGER_URL`, else SQLite in `BACKDROP_HOME` (default ~/.backdrop)."""
    if url := os.environ.get("BACKDROP_LEDGER_URL"):
        return url
    home = Path(os.environ.get("BACKDROP_HOME", "~/.backdrop")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'ledger.db'}"


def _now() -> datetime:
    return datetime.now(UTC)


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _engine(url: str) -> Engine:
    with _engines_lock:
        if url not in _engines:
            if url.startswith("postgresql://"):
                url_driver = "postgresql+psycopg://" + url[len("postgresql://") :]
                try:
                    import psycopg  # noqa: F401
                except ImportError:
                    url_driver = url
            else:
                url_driver = url
            engine = create_engine(url_driver, pool_pre_ping=True)
            if engine.dialect.name == "sqlite":

                @event.listens_for(engine, "connect")
                def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                    cur = dbapi_conn.cursor()
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA busy_timeout=30000")
                    cur.close()

            _create_tables(engine)
            _engines[url] = engine
        return _engines[url]


#: Key of the advisory lock that serialises table creation on PostgreSQL (distinct from the limiter's).
_CREATE_LOCK = 0x0BAC_D40E


def _create_tables(engine: Engine) -> None:
    """Create the table, then add newer columns. Workers starting together on a fresh PostgreSQL would
    race on CREATE TABLE (checked, then created): there it runs under an advisory lock; SQLite's file lock
    serialises it, and a lost race there is tried once more."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(_CREATE_LOCK)))
            metadata.create_all(conn)
            _add_new_columns(conn)
        return
    for last in (False, True):
        try:
            with engine.begin() as conn:
                metadata.create_all(conn)
                _add_new_columns(conn)
            return
        except DBAPIError:
            if last:
                raise


#: Columns added after the first release, each nullable: an older ledger gets them, its rows kept.
_ADDED_COLUMNS = ("charged_at", "key_id", "charged_owner", "reported_at")


def _add_new_columns(conn: Connection) -> None:
    present = {c["name"] for c in inspect(conn).get_columns(work.name)}
    for name in (n for n in _ADDED_COLUMNS if n not in present):
        kind = work.c[name].type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {work.name} ADD COLUMN {name} {kind}")


class Ledger:
    """Thin, synchronous access to the work table (each call is one short transaction)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_ledger_url()
        self.engine = _engine(self.url)

    def latest(self, content_key: str) -> LedgerEntry | None:
        """The newest attempt for a picture+prompt, or None if it was never tried."""
        stmt = (
            select(work)
            .where(work.c.content_key == content_key)
            .order_by(work.c.attempt.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
        return LedgerEntry(**row) if row else None

    def claim(self, content_key: str, attempt: int, **fields: Any) -> bool:
        """Insert attempt `attempt` in state `creating`. False if another run already holds it."""
        now = _now()
        values = {"content_key": content_key, "attempt": attempt, "status": "creating", "units": 0,
                  "owner": OWNER}
        values.update(fields, created_at=now, updated_at=now)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(work).values(**values))
        except IntegrityError:
            return False
        return True

    def attempts(self, content_key: str) -> list[LedgerEntry]:
        stmt = select(work).where(work.c.content_key == content_key).order_by(work.c.attempt)
        with self.engine.connect() as conn:
            return [LedgerEntry(**r) for r in conn.execute(stmt).mappings()]

    def known_task_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(work.c.task_id).where(work.c.task_id.is_not(None)))}

    def record_charge(self, content_key: str, attempt: int, units: int, run_id: str) -> bool:
        """Record the vendor's charge for one attempt, once: True for the one run that records it."""
        stmt = (
            update(work)
            .where(work.c.content_key == content_key, work.c.attempt == attempt,
                   work.c.charged_run_id.is_(None))
            .values(units=units, charged_run_id=run_id, charged_owner=OWNER, charged_at=_now(), updated_at=_now())
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def touch_claim(self, content_key: str, attempt: int) -> bool:
        """Right before a create is sent: True if the claim is still `creating` (then stamped now, the moment
        it left), False if another run has settled it since (then it must not be sent)."""
        stmt = (
            update(work)
            .where(work.c.content_key == content_key, work.c.attempt == attempt, work.c.status == "creating",
                   work.c.task_id.is_(None))
            .values(updated_at=_now(), owner=OWNER)
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def take_over_charge(self, entry: LedgerEntry, run_id: str, *, stale_after: float = 86400.0) -> bool:
        """A charge recorded by a run that died before writing its report is in no report: this run reports it.

        Only when the charging process is known to be gone (this host, its pid is dead) or, on another host,
        when its charge is older than `stale_after` and still unreported. True for the one run that takes it."""
        if entry.charged_run_id in (None, run_id) or entry.reported_at is not None:
            return False
        alive = owner_alive(entry.charged_owner)
        if alive is True or (alive is None and entry.charged_at is not None
                             and (_now() - entry.charged_at).total_seconds() < stale_after):
            return False
        stmt = (
            update(work)
            .where(work.c.content_key == entry.content_key, work.c.attempt == entry.attempt,
                   work.c.charged_run_id == entry.charged_run_id, work.c.reported_at.is_(None))
            .values(charged_run_id=run_id, charged_owner=OWNER, updated_at=_now())
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def mark_reported(self, run_id: str) -> int:
        """This run's report is written: the charges it recorded are in it."""
        stmt = update(work).where(work.c.charged_run_id == run_id, work.c.reported_at.is_(None)).values(
            reported_at=_now())
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount

    def mark(self, content_key: str, attempt: int, *, touch: bool = True, **fields: Any) -> None:
        """Update one attempt (status, task_id, units, output, error...). `touch=False` keeps `updated_at`, which
        for a lost create is when it was last sent or answered: the start of its settling window."""
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown ledger fields: {sorted(unknown)}")
        if touch:
            fields["updated_at"] = _now()
        stmt = (
            update(work)
            .where(work.c.content_key == content_key, work.c.attempt == attempt)
            .values(**fields)
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def entries(
        self,
        *,
        run_id: str | None = None,
        since: datetime | None = None,
        environment: str | None = None,
        statuses: tuple[str, ...] | None = None,
    ) -> list[LedgerEntry]:
        stmt = select(work).order_by(work.c.id)
        if run_id is not None:
            stmt = stmt.where(work.c.run_id == run_id)
        if environment is not None:
            stmt = stmt.where(work.c.environment == environment)
        if statuses is not None:
            stmt = stmt.where(work.c.status.in_(statuses))
        if since is not None:
            stmt = stmt.where(work.c.updated_at >= since)
        with self.engine.connect() as conn:
            return [LedgerEntry(**r) for r in conn.execute(stmt).mappings()]

    #: the fields of each row `attempts_between` returns
    ATTEMPT_FIELDS: ClassVar[tuple[str, ...]] = ("task_id", "run_id", "charged_run_id", "deployment", "row_id",
                                                 "status", "units", "created_at", "charged_at")

    def attempts_between(self, since: datetime, until: datetime,
                         environments: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Attempts charged (or, never charged, created) in `[since, until)`, in that order, as plain rows of
        `ATTEMPT_FIELDS`; only those of `environments` when given (the cost report's query)."""
        when = func.coalesce(work.c.charged_at, work.c.created_at)
        stmt = select(*(work.c[f] for f in self.ATTEMPT_FIELDS)).where(when >= since, when < until)
        if environments is not None:
            stmt = stmt.where(work.c.environment.in_(list(environments)))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt.order_by(when, work.c.id)).mappings()]
