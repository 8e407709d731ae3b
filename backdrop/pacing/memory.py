"""Client-side pacing: stay inside the vendor's rolling windows (250 per 300 s and 5 per second).

The server counts a request when it arrives, which may be later than the slot it was given (a busy
event loop, a slow connection). So a slot counts from `now` while its request is in flight and is
settled when the answer comes back: its time moves to then, an upper bound on its arrival, and later
slots are counted from there. Without it, two processes sharing one limiter under load saw 429s at the
window's edge and in the first second. And a slot booked ahead is confirmed when its request leaves,
against the requests that have really left (`_confirm`): a stalled process sends late, never bunched.

The limiter is shared by every call in the process. Prefect may run async tasks in worker threads, each with its
own event loop, so the state is guarded by a `threading.Lock` (never an asyncio primitive, which belongs to one
loop). A caller computes its wait under the lock, reserves its slot there, and sleeps outside it on its own loop.

The vendor counts per key *and* per client address: a key's limiter may be given the budget of its egress
address (`also`), one `SlidingWindowLimiter` shared by every key of the process that leaves through that address.
A request then takes one slot that fits both budgets, under both locks (the egress budget's first, always, so
two keys never wait on each other's locks), and the slot counts in both until it is settled.

A running task must be polled within the vendor's polling window, and its polls share the budget with new pictures.
Given `poll_every`, the limiter counts the tasks it owes polls (the client says so as it settles a create's or a
poll's slot: `settle(owe=..., paid=...)`; `paid` alone for a task gone at the vendor) and books an upload slot call
or a create only if every such task and one more could still be polled that often, however long they ran, with the
slots left and those the window frees (`windows.polls_fit`). Without it a large batch spent the whole window on new
pictures in its first minute, and the tasks created last waited minutes for a poll.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from backdrop.identity import process_egress_key, process_limiter_key
from backdrop.pacing.cells import IN_FLIGHT_MAX_SECONDS, OWED_EXPIRY_ROUNDS, RECENT_EXTRA, Slot, Waiting
from backdrop.pacing.windows import checked_windows, key_windows, poll_every, polls_fit, vendor_windows, wait_horizon
from backdrop.settings import BackdropSettings

__all__ = ["IN_FLIGHT_MAX_SECONDS", "OWED_EXPIRY_ROUNDS", "RateLimiter", "SlidingWindowLimiter",
           "limiter_from_settings", "shared_limiter"]


@runtime_checkable
class RateLimiter(Protocol):
    async def acquire(self, *, can_wait: bool = False, starts_task: bool = False, due_in: float = 0.0,
                      defer: bool = False) -> object:
        """Wait for a slot; returns a ticket for `settle`. `can_wait`: new work (an upload or a create), which
        books only a short way ahead, and only if the polls of the running tasks still fit; `starts_task`: and
        those of one more, counted among them until the slot is settled (its answer names the task: `settle`'s
        `owe`). A poll books at once, unless it is early (`due_in` seconds before the poll gap requires it): then,
        until then, it books as new work does, so that it never takes the room kept for other tasks' polls.
        `defer` (new work only: an upload slot call): book only while no create of this process waits; and an
        early poll books only while no new work waits (`cells.Waiting`)."""

    async def settle(self, ticket: object, *, owe: str | None = None, paid: str | None = None) -> None:
        """The request sent in this slot has its answer (or failed): count the slot from now on. `owe`: the answer
        says task `owe` is running (keep room for its polls); `paid`: task `paid` needs no more polls."""

    async def owe(self, ref: str) -> None:
        """The vendor's task `ref` is running and will be polled: keep room for its polls (again, if already)."""

    async def paid(self, ref: str) -> None:
        """The task `ref` needs no more polls (it finished, or is gone)."""


class SlidingWindowLimiter:
    """At most `n` acquisitions in any rolling `seconds` window, for every `(n, seconds)` given.

    `SlidingWindowLimiter([(250, 300.0), (5, 1.0)])` paces to the vendor's documented limits.
    Slots are handed out in order; a cancelled waiter keeps its slot (errs on the slow side). A settled
    slot counts from its settling time, so the `count`-th latest slot is found among the recent ones.
    `also`: budgets every request of this limiter must fit as well (the egress address's, shared by other
    keys' limiters); they are plain limiters, locked before this one, and the clock is this limiter's.
    `poll_every`: keep room to poll every task it owes this often (see the module docstring); None: no such room.
    """

    def __init__(
        self,
        windows: Sequence[tuple[int, float]],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        also: Sequence[SlidingWindowLimiter] = (),
        poll_every: float | None = None,
    ) -> None:
        self.windows = checked_windows(windows)
        if poll_every is not None and poll_every <= 0:
            raise ValueError(f"poll_every must be positive, not {poll_every}")
        self.poll_every = poll_every
        self.also: tuple[SlidingWindowLimiter, ...] = tuple(also)
        if any(other.also for other in self.also):
            raise ValueError("a shared budget must be a plain limiter (one lock order: shared, then own)")
        self._budgets = (*self.also, self)  # the lock order
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # Granted slots in grant order. Only the recent ones matter to any window: a slot granted
        # max(n) + RECENT_EXTRA grants ago is long settled.
        self._slots: deque[Slot] = deque(maxlen=max(n for n, _ in self.windows) + RECENT_EXTRA)
        self._open: set[Slot] = set()  # granted and not yet answered
        self._owed: dict[str, float] = {}  # task ref -> when it was last said to be running
        self._waiting = Waiting()  # this limiter's waiters by urgency: creates, slot calls, early polls

    def reserve(self, horizon: float | None = None) -> float | None:
        """Take the next free slot and return how many seconds to wait until it; with a `horizon`,
        take it only if it is at most that far ahead (else None, and nothing is taken). The slot counts
        from its own time: nothing tracks its request (`acquire` and `settle` do)."""
        if (got := self._reserve(horizon)) is not None:
            self._close(got[1])
        return None if got is None else got[0]

    def _locked(self) -> contextlib.ExitStack:
        """Every budget's lock, shared budgets first."""
        stack = contextlib.ExitStack()
        for budget in self._budgets:
            stack.enter_context(budget._lock)
        return stack

    def _next_free(self, now: float, *, sent_only: bool = False, excluding: Slot | None = None
                   ) -> tuple[float, list[float] | None]:
        """The earliest slot from `now` that keeps this budget's windows (its lock held), counting every slot
        booked, with the requests in flight from now; or with `sent_only` those whose request has left (but
        `excluding`), each from when it left or was answered. And the sorted times it counted, if it sorted them
        (a window was full), for the room check."""
        for cell in list(self._open) if not sent_only else ():  # at most the requests in flight: a handful
            if not cell.still_open(now):
                self._open.discard(cell)
        slot = now
        ordered: list[float] | None = None
        for count, seconds in self.windows:
            if len(self._slots) >= count:  # only a full window needs its count-th latest slot
                # one sort in C of nearly ordered times (slots come in grant order): ~10x cheaper than
                # heapq.nlargest's Python loop, and this runs for every waiter, several times a slot
                if ordered is None:
                    ordered = sorted([c.at for c in self._slots if c.sent and c is not excluding] if sent_only
                                     else [c.at for c in self._slots])
                if len(ordered) >= count:
                    slot = max(slot, ordered[-count] + seconds)
        return slot, ordered

    def _owed_count(self, now: float, every: float) -> int:
        """The tasks this budget owes polls (its lock held): those said running lately, and the creates in flight."""
        expiry = OWED_EXPIRY_ROUNDS * every
        for ref in [r for r, seen in self._owed.items() if now - seen > expiry]:
            del self._owed[ref]  # a task nobody polled for rounds: its waiter stopped (cancelled, gave up)
        return len(self._owed) + sum(1 for cell in self._open if cell.starts_task)

    def _polls_fit(self, slot: float, now: float, every: float, starts_task: bool,
                   ordered: list[float] | None = None) -> bool:
        """Whether a new picture's request at `slot` leaves room for the polls this budget owes (its lock held);
        `ordered`: its slots' times, sorted, if `_next_free` just sorted them (`slot` is added to it)."""
        owed = self._owed_count(now, every) + int(starts_task)
        if owed == 0:
            return True
        times = ordered if ordered is not None else sorted([c.at for c in self._slots])
        bisect.insort(times, slot)
        return polls_fit(self.windows, times, slot, owed, every)

    def _reserve(self, horizon: float | None, starts_task: bool = False) -> tuple[float, Slot] | None:
        with self._locked():
            now = self._clock()
            # a later slot keeps a budget's windows too, so the latest of the earliest fits every budget
            found = [budget._next_free(now) for budget in self._budgets]
            slot = max(at for at, _ in found)
            if horizon is not None and slot - now > horizon:
                return None
            every = self.poll_every
            if horizon is not None and every is not None and not all(
                    budget._polls_fit(slot, now, every, starts_task, ordered)
                    for budget, (_, ordered) in zip(self._budgets, found, strict=True)):
                return None  # new work waits until the running tasks' polls leave it room
            cell = Slot(slot)
            cell.starts_task = starts_task
            for budget in self._budgets:
                budget._slots.append(cell)
                budget._open.add(cell)
            return slot - now, cell

    async def acquire(self, *, can_wait: bool = False, starts_task: bool = False, due_in: float = 0.0,
                      defer: bool = False) -> object:
        sleep = self._sleep or asyncio.sleep
        horizon = max(wait_horizon(b.windows) for b in self._budgets)
        start = self._clock()
        due = start + due_in
        level = Waiting.level(can_wait=can_wait, defer=defer, early=self.poll_every is not None and due_in > 0)
        with self._waiting.joined(level):
            while True:
                # an early poll books as new work until it is due (after the new work waiting); then at once
                early = not can_wait and self.poll_every is not None and self._clock() < due
                if not ((can_wait or early) and self._waiting.holds(level, self._clock() - start, horizon)):
                    got = self._reserve(horizon if can_wait or early else None, starts_task)
                    if got is not None:
                        break
                await sleep(horizon / 2 if can_wait else max(0.0, min(horizon / 2, due - self._clock())))
        wait, cell = got
        if wait > 0:
            with self._locked():
                cell.sent = False  # booked ahead: it counts as sent once `_confirm` says it may leave
        try:
            while wait > 0:
                await sleep(wait)
                wait = self._confirm(cell)
        except BaseException:
            self._close(cell)  # cancelled before sending: the slot keeps its time and nothing more
            raise
        return cell

    def _confirm(self, cell: Slot) -> float:
        """Right before `cell`'s request leaves: 0 (and the slot counts as sent, from now) if it keeps every
        window counted with the requests that have really left, else how much longer to wait.

        A slot is booked ahead, counted with slots that were booked too; when the process stalls (a busy
        machine: a loaded event loop, a descheduled process), requests booked apart leave together, late, while
        a later one may leave on time: the server then sees them closer than any window allows. Counting only
        what has left, at the moment it leaves, keeps the windows whatever the stall. A request in flight counts
        from when it left here, not from now as at booking: else a waiter would be pushed back for as long as any
        answer is slow, polls included (the booking already counted them from now).
        """
        with self._locked():
            now = self._clock()
            slot = max(budget._next_free(now, sent_only=True, excluding=cell)[0] for budget in self._budgets)
            if slot <= now:
                cell.at, cell.sent = max(cell.at, now), True
                return 0.0
            return slot - now

    async def settle(self, ticket: object, *, owe: str | None = None, paid: str | None = None) -> None:
        self.settle_now(ticket, owe=owe, paid=paid)

    def settle_now(self, ticket: object, *, owe: str | None = None, paid: str | None = None) -> None:
        """`settle`, from synchronous code."""
        if isinstance(ticket, Slot):
            with self._locked():
                now = self._clock()
                ticket.settle(now)
                for budget in self._budgets:
                    budget._open.discard(ticket)
                    if owe is not None:
                        budget._owed[owe] = now
                    if paid is not None:
                        budget._owed.pop(paid, None)

    async def owe(self, ref: str) -> None:
        self.owe_now(ref)

    def owe_now(self, ref: str) -> None:
        """`owe`, from synchronous code."""
        with self._locked():
            for budget in self._budgets:
                budget._owed[ref] = self._clock()

    async def paid(self, ref: str) -> None:
        self.paid_now(ref)

    def paid_now(self, ref: str) -> None:
        """`paid`, from synchronous code."""
        with self._locked():
            for budget in self._budgets:
                budget._owed.pop(ref, None)

    def _close(self, cell: Slot) -> None:  # never sent, it keeps its time all the same
        with self._locked():
            cell.open, cell.sent = False, True
            for budget in self._budgets:
                budget._open.discard(cell)

    def __repr__(self) -> str:
        shared = f", also={list(self.also)!r}" if self.also else ""
        return f"SlidingWindowLimiter({list(self.windows)!r}{shared})"


def limiter_from_settings(settings: BackdropSettings) -> SlidingWindowLimiter:
    """A new limiter with the settings' window and per-second limits (each window a little longer,
    by `JITTER_MARGIN_SECONDS`), keeping room for the polls of the tasks it owes."""
    return SlidingWindowLimiter(key_windows(settings), poll_every=poll_every(settings))


_shared: dict[tuple[object, ...], SlidingWindowLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(settings: BackdropSettings) -> SlidingWindowLimiter:
    """The process-wide limiter for this API URL, key and limits (the vendor counts per key), which also keeps
    the process-wide budget of the egress address (`BACKDROP_EGRESS_ID`) on that server, shared by every key."""
    shared, windows, every = vendor_windows(settings), key_windows(settings), poll_every(settings)
    egress_key = ("egress", *process_egress_key(settings), shared)
    key = (*process_limiter_key(settings), windows, egress_key, every)  # host aliases: one limit
    with _shared_lock:
        egress = _shared.get(egress_key)
        if egress is None:
            egress = _shared[egress_key] = SlidingWindowLimiter(shared)
        limiter = _shared.get(key)
        if limiter is None:
            limiter = _shared[key] = SlidingWindowLimiter(windows, also=(egress,), poll_every=every)
        return limiter
