"""Backdrop's durable ledger: what was created, for which picture, and how it ended.

It is the source of truth for "never pay twice": a row is written *before* the create call (`creating`), the
task id the moment it is known (`created`), and every terminal state after. A crash at any point leaves enough
to resume: `created` rows are polled by task id, `creating`/`ambiguous` rows are reconciled, never re-created
blindly. SQLite by default; any SQLAlchemy URL (PostgreSQL included) works the same.

This module owns the reads and writes (`Ledger`) and who holds a claim (`OWNER`, `owner_alive`); the table,
its status names and its row type are `backdrop.store.schema`'s, its engine set-up `backdrop.store.engine`'s.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from backdrop.settings import BackdropSettings
from backdrop.store.engine import EngineCache
from backdrop.store.schema import FIELDS, LedgerEntry, LedgerStatus, create_tables, work

__all__ = ["Ledger", "LedgerEntry", "OWNER", "default_ledger_url", "owner_alive"]

#: task ids a statement of `mark_reported` names at most
MARK_CHUNK = 1000


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
    """`BACKDROP_LEDGER_URL`, else SQLite in `BACKDROP_HOME` (default ~/.backdrop): the settings' own default."""
    return BackdropSettings().effective_ledger_url()


def _now() -> datetime:
    return datetime.now(UTC)


#: Key of the advisory lock that serialises table creation on PostgreSQL (distinct from the limiter's).
_CREATE_LOCK = 0x0BAC_D40E

#: Pre-pinged (a connection dropped between two rare calls must not fail a write), psycopg when installed, and
#: a lost CREATE TABLE race on SQLite tried once more: see `backdrop.store.engine`.
_engine_cache = EngineCache(
    create_tables,
    create_lock=(_CREATE_LOCK,),
    pre_ping=True,
    psycopg_fallback=True,
    sqlite_pragmas=("PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=30000"),
    create_tries=2,
)
_engines = _engine_cache.engines  # tests dispose of the engines of a database they drop
_engine = _engine_cache.get


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
        values = {"content_key": content_key, "attempt": attempt, "status": LedgerStatus.CREATING.value, "units": 0,
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
            .where(work.c.content_key == content_key, work.c.attempt == attempt,
                   work.c.status == LedgerStatus.CREATING.value, work.c.task_id.is_(None))
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

    def mark_reported(self, run_id: str, task_ids: Collection[str]) -> int:
        """This run's report is written and carries the charges of `task_ids`: those of them this run recorded are
        reported. A charge of the run that the report does not carry (a stop caught its picture after the charge)
        stays unreported, for a later run to take over, rather than be marked reported and be in no report."""
        ids, marked, at = sorted(task_ids), 0, _now()
        with self.engine.begin() as conn:  # in chunks: a statement's parameters are capped (65,535 on PostgreSQL)
            for start in range(0, len(ids), MARK_CHUNK):
                stmt = update(work).where(work.c.charged_run_id == run_id, work.c.reported_at.is_(None),
                                          work.c.task_id.in_(ids[start:start + MARK_CHUNK])).values(reported_at=at)
                marked += conn.execute(stmt).rowcount
        return marked

    def mark(self, content_key: str, attempt: int, *, touch: bool = True, **fields: Any) -> None:
        """Update one attempt (status, task_id, units, output, error...). `touch=False` keeps `updated_at`, which
        for a lost create is when it was last sent or answered: the start of its settling window."""
        self._update(content_key, attempt, [], touch, fields)

    def mark_unchanged(self, entry: LedgerEntry, *, touch: bool = True, **fields: Any) -> bool:
        """`mark`, only while the attempt is as `entry` was read (same status and `updated_at`, no task id); False if
        another run changed it since. A verdict drawn from that read (a lost create settled from the vendor's
        records) must not overwrite a create another run has sent since, or the answer it got."""
        same = [work.c.status == entry.status, work.c.updated_at == entry.updated_at, work.c.task_id.is_(None)]
        return self._update(entry.content_key, entry.attempt, same, touch, fields) == 1

    def _update(self, content_key: str, attempt: int, where: list[Any], touch: bool, fields: dict[str, Any]) -> int:
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown ledger fields: {sorted(unknown)}")
        if touch:
            fields["updated_at"] = _now()
        stmt = (
            update(work)
            .where(work.c.content_key == content_key, work.c.attempt == attempt, *where)
            .values(**fields)
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount

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
