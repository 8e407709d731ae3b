"""The ledger's table, `backdrop_work`: its columns, its status names, its row type and its upgrades.

`backdrop.store.ledger` reads and writes the rows; this module owns their shape. Times are stored as UTC and
always read back aware (`UTCDateTime`), whatever the database's or the session's time zone. Columns added after
the first release are added to an older table in place, its rows kept (`create_tables`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

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
    inspect,
)
from sqlalchemy.engine import Connection

__all__ = ["FIELDS", "IN_FLIGHT", "TERMINAL", "LedgerEntry", "LedgerStatus", "UTCDateTime", "as_utc",
           "create_tables", "metadata", "work"]


class LedgerStatus(StrEnum):
    """The states of one attempt, as stored in `backdrop_work.status`."""

    CREATING = "creating"  # claimed before the create is sent
    CREATED = "created"  # the vendor's task id is known
    AMBIGUOUS = "ambiguous"  # a create whose outcome is not known
    PENDING_RECONCILE = "pending_reconcile"  # left for a later run or `backdrop reconcile`
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TERMINAL = frozenset({LedgerStatus.SUCCEEDED.value, LedgerStatus.FAILED.value})
#: states where a vendor task may exist that we must not duplicate
IN_FLIGHT = frozenset({LedgerStatus.CREATING.value, LedgerStatus.CREATED.value, LedgerStatus.AMBIGUOUS.value,
                       LedgerStatus.PENDING_RECONCILE.value})


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
    Column("key_id", String(32)),  # which API key made the create (backdrop.identity.key_id: a hash, not the key)
    Column("charged_owner", String(200)),  # the process that recorded the charge (host:pid)
    Column("reported_at", UTCDateTime),  # when the charging run's report was written
    Column("feature", String(32)),  # the slug the create was sent under (polled under it); None: bg-replace-v2
    UniqueConstraint("content_key", "attempt", name="uq_backdrop_work_key_attempt"),
)

FIELDS = [c.name for c in work.columns]


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
    feature: str | None = None

    def __post_init__(self) -> None:
        # aware UTC whoever built the entry (rows read back already are: see `UTCDateTime`)
        for name in ("created_at", "updated_at", "charged_at"):
            object.__setattr__(self, name, as_utc(getattr(self, name)))


#: Columns added after the first release, each nullable: an older ledger gets them, its rows kept.
_ADDED_COLUMNS = ("charged_at", "key_id", "charged_owner", "reported_at", "feature")


def _add_new_columns(conn: Connection) -> None:
    present = {c["name"] for c in inspect(conn).get_columns(work.name)}
    for name in (n for n in _ADDED_COLUMNS if n not in present):
        kind = work.c[name].type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {work.name} ADD COLUMN {name} {kind}")


def create_tables(conn: Connection) -> None:
    """Create the table, then add the newer columns an older one lacks (see `backdrop.store.engine` for the
    lock that serialises this across processes)."""
    metadata.create_all(conn)
    _add_new_columns(conn)
