"""Pacing shared by every process and host that uses one API key, through a database.

`DatabaseLimiter` keeps the granted slots in a table, `backdrop_rate_slots(key_id, slot_at)`. One acquisition is one
short transaction, serialised per key: PostgreSQL takes `pg_advisory_xact_lock(<namespace>, hashtext(key_id))`,
SQLite opens with `BEGIN IMMEDIATE`. Inside it the limiter drops slots too old to matter, finds the earliest time at
which every window has room (others' slots may lie in the future: reserve-ahead, as in `SlidingWindowLimiter`),
inserts that slot and commits; it then sleeps until the slot outside the transaction, so nothing polls and nobody
holds a lock while waiting. When the answer comes back, `settle` moves its slot to that time (one more short
transaction), as `SlidingWindowLimiter` does: the server counts arrivals, and under load a request leaves late.

The vendor counts per key *and* per client address. A limiter given an `egress_key_id` (`ip:<digest of server and
egress id>`, shared by every key leaving through that address) takes one slot that fits both budgets and inserts
it under both keys in the same transaction. It takes the egress budget's lock first, then the key's, in the
database and in the process alike, so two processes never hold one each while waiting for the other, and no
process sees one budget's slot without the other's.

Slots are wall-clock times (`time.time()`), compared across hosts: keep hosts on NTP (the windows carry
`JITTER_MARGIN_SECONDS` of slack). Old slots are kept `SKEW_GRACE_SECONDS` beyond the longest window so that a host
whose clock runs ahead does not delete slots a host running behind still counts. Durability is traded for speed
(SQLite `synchronous=NORMAL`, PostgreSQL `synchronous_commit=off`): a crash of the database host may forget the last
few slots (at worst a 429, retried); visibility between transactions, which the windows rely on, is unchanged.

Room for polls is kept as in `SlidingWindowLimiter`, from rows every process on the key counts (`queries.OwedRows`).
Tables, engines, locks: `slots`; `database_limiter`: one limiter per URL, key and limits in the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, cast

from sqlalchemy import BindParameter, Row, bindparam, case, delete, insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from backdrop.errors import ConfigError
from backdrop.identity import egress_limiter_key_id, limiter_key_id
from backdrop.pacing.cells import Waiting
from backdrop.pacing.memory import IN_FLIGHT_MAX_SECONDS
from backdrop.pacing.queries import OwedRows, kth_query
from backdrop.pacing.slots import (
    RETRY_PAUSES,
    booked_in_thread,
    failure,
    key_lock,
    opened,
    redacted,
    serialise,
    slots,
    transient,
)
from backdrop.pacing.windows import checked_windows, key_windows, poll_every, vendor_windows, wait_horizon
from backdrop.settings import BackdropSettings

__all__ = ["DatabaseLimiter", "SKEW_GRACE_SECONDS", "Ticket", "database_limiter"]

#: A granted slot's row id, or (egress row id, key row id) when the limiter keeps an egress budget.
Ticket = int | tuple[int, int]

#: Slots are deleted only once this much older than the longest window (see the module docstring).
SKEW_GRACE_SECONDS = 60.0


class DatabaseLimiter:
    """At most `n` acquisitions in any rolling `seconds` window, for every `(n, seconds)` given,
    counted over every process and host using the same database `url` and `key_id`; with an `egress_key_id`,
    each slot also keeps `egress_windows` (default `windows`) counted over every limiter on that egress key.

    `last_slot` is the wall-clock time of the slot this instance granted last (for tests and
    logs). A cancelled waiter keeps its slot, as with `SlidingWindowLimiter`. Raises `ConfigError`
    when the database cannot be used.
    """

    def __init__(
        self,
        url: str,
        key_id: str,
        windows: Sequence[tuple[int, float]],
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        egress_key_id: str | None = None,
        egress_windows: Sequence[tuple[int, float]] | None = None,
        poll_every: float | None = None,
    ) -> None:
        if poll_every is not None and poll_every <= 0:
            raise ValueError(f"poll_every must be positive, not {poll_every}")
        self.poll_every = poll_every
        #: key slot row ids of this instance's creates in flight, whose settling pays their `slot:` rows
        self._provisional: set[int] = set()
        self._provisional_lock = threading.Lock()
        checked = checked_windows(windows)
        if not key_id or egress_key_id == "":
            raise ValueError("key_id must not be empty")
        if egress_key_id == key_id:
            raise ValueError("the egress budget needs a key of its own")
        self.url, self.key_id, self.windows, self.egress_key_id = url, key_id, checked, egress_key_id
        self._clock, self._sleep = clock, sleep
        self.last_slot: float | None = None
        # (key, windows) of every budget a slot must fit, in the one lock order: the egress address's first
        budgets = [(key_id, checked)]
        if egress_key_id is not None:
            budgets.insert(0, (egress_key_id, checked_windows(egress_windows or checked)))
        self._budgets = [(key, wins, kth_query(wins)) for key, wins in budgets]
        self._horizon = max(wait_horizon(wins) for _, wins in budgets)
        self._longest = max(s for _, wins in budgets for _, s in wins)
        key: BindParameter[str] = bindparam("key")
        self._delete = delete(slots).where(slots.c.key_id == key, slots.c.slot_at < bindparam("stale"))
        self._insert = insert(slots)
        # a request in flight may arrive any moment: it counts from now (until IN_FLIGHT_MAX_SECONDS)
        self._in_flight = update(slots).where(
            slots.c.key_id == key, slots.c.in_flight.is_(True), slots.c.slot_at < bindparam("now"),
            slots.c.booked_at > bindparam("fresh"),
        ).values(slot_at=bindparam("now"))
        at: BindParameter[float] = bindparam("at")
        ids = slots.c.id.in_(bindparam("slot_ids", expanding=True))
        self._settle = update(slots).where(ids).values(
            in_flight=False, slot_at=case((slots.c.slot_at < at, at), else_=slots.c.slot_at))
        self._release = update(slots).where(ids).values(in_flight=False)
        self._owed = OwedRows()
        self._waiting = Waiting()

    def take_slot(self, horizon: float | None = None) -> float | None:
        """Take the next free slot in the database; returns its wall-clock time (blocking I/O). With a `horizon`, take
        it only if it is at most that far ahead (else None, nothing taken). The slot counts from its own time."""
        taken = self.take(horizon, in_flight=False)
        return None if taken is None else taken[0]

    def take(self, horizon: float | None = None, *, in_flight: bool = True,
             starts_task: bool = False) -> tuple[float, Ticket] | None:
        """`take_slot`, returning (slot time, ticket) for `settle_slot`; the slot is in flight until then. The
        ticket is the slot's row id, or (egress row id, key row id) with an egress budget. With a `horizon` (new
        work) only if the polls owed still fit; `starts_task`: a create, owed polls until settled."""
        engine = opened(self.url)
        with self._key_locks():
            tries = 0
            while True:
                try:
                    return self._take_slot_once(engine, horizon, in_flight, starts_task)
                except DBAPIError as exc:
                    if tries == len(RETRY_PAUSES) or not transient(exc):
                        message = f"the limiter database {failure(self.url, exc)}"
                        raise ConfigError(message) from exc
                    time.sleep(RETRY_PAUSES[tries])
                    tries += 1

    def _key_locks(self) -> contextlib.ExitStack:
        """This process's lock of every budget, egress first (the same order as the database's locks)."""
        stack = contextlib.ExitStack()
        for key, _, _ in self._budgets:
            stack.enter_context(key_lock(self.url, key))
        return stack

    def _take_slot_once(self, engine: Engine, horizon: float | None, in_flight: bool,
                        starts_task: bool = False) -> tuple[float, Ticket] | None:
        with engine.begin() as conn:
            # every budget's lock before anything is read, always in one order (egress, then key): two
            # processes cannot each hold one and wait for the other, and both slots land in one transaction
            for key, _, _ in self._budgets:
                serialise(conn, key)
            now = self._clock()
            slot = now
            for key, windows, kth_query in self._budgets:
                params: dict[str, Any] = {"key": key, "stale": now - self._longest - SKEW_GRACE_SECONDS,
                                          "now": now, "fresh": now - IN_FLIGHT_MAX_SECONDS}
                params.update({f"since{i}": now - s for i, (_, s) in enumerate(windows)})
                conn.execute(self._in_flight, params)
                conn.execute(self._delete, params)
                found = conn.execute(kth_query, params).one()
                for (_, seconds), kth in zip(windows, found, strict=True):
                    # at most count-1 slots lie after (slot - seconds): the window ending at any
                    # later slot holds at most count, even when other hosts' slots are out of order
                    if kth is not None:
                        slot = max(slot, kth + seconds)
            if horizon is not None and slot - now > horizon:
                return None
            if horizon is not None and self.poll_every is not None and not self._owed.room(
                    conn, [(k, w) for k, w, _ in self._budgets], slot, now, self.poll_every, starts_task):
                return None  # new work waits until the running tasks' polls leave it room
            row_ids = []
            for key, _, _ in self._budgets:
                inserted = conn.execute(self._insert, {"key_id": key, "slot_at": slot, "booked_at": slot,
                                                       "in_flight": in_flight})
                # an INSERT's result always has its primary key; SQLAlchemy types it Optional for other statements
                row_ids.append(int(cast("Row[Any]", inserted.inserted_primary_key)[0]))
            if starts_task and self.poll_every is not None:
                for key, _, _ in self._budgets:  # the create's task is owed polls until the create is settled
                    self._owed.book(conn, key, row_ids[-1], now)
                with self._provisional_lock:
                    self._provisional.add(row_ids[-1])
        return slot, (row_ids[0] if len(row_ids) == 1 else (row_ids[0], row_ids[1]))

    def settle_slot(self, slot_id: Ticket, *, sent: bool = True, owe: str | None = None,
                    paid: str | None = None) -> None:
        """The slot's request has its answer: it counts from now, if later (blocking I/O). `sent=False`:
        it was never sent, and counts from its own time. `owe`/`paid`: what the answer says of a task, in the same
        transaction (see `RateLimiter.settle`). A database that fails here costs only the precision this adds: the
        slot counts as in flight until IN_FLIGHT_MAX_SECONDS, and a task's room expires."""
        slot_ids = [slot_id] if isinstance(slot_id, int) else list(slot_id)
        track = self.poll_every is not None
        with self._provisional_lock:
            provisional = slot_ids[-1] in self._provisional
            self._provisional.discard(slot_ids[-1])
        try:
            engine = opened(self.url)
            with self._key_locks(), engine.begin() as conn:
                at = self._clock()
                conn.execute(self._settle if sent else self._release, {"slot_ids": slot_ids, "at": at})
                for key, _, _ in self._budgets if track else ():
                    if provisional:  # a create's (or slot call's) task counted while it was in flight
                        self._owed.unbook(conn, key, slot_ids[-1])
                    self._owed.note(conn, key, at, owe=owe, paid=paid)
        except (ConfigError, DBAPIError):
            pass

    def owe_now(self, ref: str) -> None:
        """`owe` (blocking I/O). A database that fails here costs only the room kept for this task's polls."""
        self._note_now(owe=ref, paid=None)

    def paid_now(self, ref: str) -> None:
        """`paid` (blocking I/O); a failure leaves the row to expire."""
        self._note_now(owe=None, paid=ref)

    def _note_now(self, *, owe: str | None, paid: str | None) -> None:
        if self.poll_every is not None:
            with contextlib.suppress(ConfigError, DBAPIError), self._key_locks(), opened(self.url).begin() as c:
                for key, _, _ in self._budgets:
                    self._owed.note(c, key, self._clock(), owe=owe, paid=paid)

    async def owe(self, ref: str) -> None:
        await asyncio.to_thread(self.owe_now, ref)

    async def paid(self, ref: str) -> None:
        await asyncio.to_thread(self.paid_now, ref)

    async def acquire(self, *, can_wait: bool = False, starts_task: bool = False, due_in: float = 0.0,
                      defer: bool = False) -> object:
        start = self._clock()
        due = start + due_in
        level = Waiting.level(can_wait=can_wait, defer=defer, early=self.poll_every is not None and due_in > 0)
        with self._waiting.joined(level):  # after more urgent waiters of the process (`cells.Waiting`)
            while True:
                # an early poll books as new work until it is due (after the new work waiting); then at once
                early = not can_wait and self.poll_every is not None and self._clock() < due
                horizon = self._horizon if can_wait or early else None
                if not ((can_wait or early) and self._waiting.holds(level, self._clock() - start, self._horizon)):
                    book = partial(self.take, horizon, starts_task=starts_task)
                    taken = await booked_in_thread(book, lambda t: self.settle_slot(t[1], sent=False))
                    if taken is not None:
                        break
                await self._sleep(self._horizon / 2 if can_wait
                                  else max(0.0, min(self._horizon / 2, due - self._clock())))
        slot, slot_id = taken
        self.last_slot = slot
        wait = slot - self._clock()
        try:
            if wait > 0:
                await self._sleep(wait)
        except BaseException:  # cancelled before sending: the slot keeps its own time
            await asyncio.shield(asyncio.to_thread(self.settle_slot, slot_id, sent=False))
            raise
        return slot_id

    async def settle(self, ticket: object, *, owe: str | None = None, paid: str | None = None) -> None:
        if isinstance(ticket, int | tuple):
            await asyncio.to_thread(self.settle_slot, ticket, owe=owe, paid=paid)

    def __repr__(self) -> str:
        egress = f", egress_key_id={self.egress_key_id!r}" if self.egress_key_id else ""
        return (
            f"DatabaseLimiter({redacted(self.url)!r}, key_id={self.key_id!r}, "
            f"windows={list(self.windows)!r}{egress})"
        )


_shared: dict[tuple[object, ...], DatabaseLimiter] = {}
_shared_lock = threading.Lock()


def database_limiter(settings: BackdropSettings) -> DatabaseLimiter:
    """The `DatabaseLimiter` on `settings.limiter_url`, one per URL, key and limits in the process, keeping the
    egress address's budget too (`egress_limiter_key_id`: shared by every key leaving through it)."""
    if not settings.limiter_url:
        raise ValueError("no limiter_url: the in-process limiter paces this process")
    key = (settings.limiter_url, limiter_key_id(settings), key_windows(settings), egress_limiter_key_id(settings),
           vendor_windows(settings), poll_every(settings))
    with _shared_lock:
        limiter = _shared.get(key)
        if limiter is None:
            limiter = _shared[key] = DatabaseLimiter(settings.limiter_url, key[1], key[2], egress_key_id=key[3],
                                                     egress_windows=key[4], poll_every=key[5])
        return limiter
