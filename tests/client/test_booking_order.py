"""The order in which waiting requests of one process book (`cells.Waiting`), in the in-process and the database
limiter: creates first; an upload slot call (`acquire(defer=True)`) after the creates waiting (its pictures could not
create before them, and while it waits its batcher gathers more pictures for the call); a poll made before the gap
requires it (`due_in`) after all new work waiting, until it is due. With nobody more urgent waiting, each books at
once, and a due poll always does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backdrop.pacing.cells import Waiting
from backdrop.pacing.database import DatabaseLimiter
from backdrop.pacing.memory import SlidingWindowLimiter
from tests.client.helpers import FakeClock

LONG = [(250, 300.0)]
EVERY = 15.0


class YieldingClock(FakeClock):
    """A fake clock that stands still (the room changes only when the test pays a task) and whose `sleep` lets the
    other waiters run, as a real sleep would."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


Limiter = SlidingWindowLimiter | DatabaseLimiter
Make = Callable[[FakeClock], Limiter]


def _memory(clock: FakeClock) -> Limiter:
    return SlidingWindowLimiter(LONG, clock=clock, sleep=clock.sleep, poll_every=EVERY)


def _database(url: str) -> Make:
    def make(clock: FakeClock) -> Limiter:
        return DatabaseLimiter(url, "k", LONG, clock=clock, sleep=clock.sleep, poll_every=EVERY)
    return make


def _no_room(limiter: Limiter) -> None:
    """Twelve tasks owed and ten slots held: no room for the polls of one more task (13 x 20 rounds > 250 - 11)."""
    for i in range(12):
        limiter.owe_now(f"t{i}")
    for _ in range(10):
        if isinstance(limiter, SlidingWindowLimiter):
            limiter.reserve()
        else:
            limiter.take_slot()


async def _order_of_booking(make: Make, *, defer: bool) -> list[str]:
    clock = YieldingClock(1_795_000_000.0)
    limiter = make(clock)
    _no_room(limiter)
    booked: list[str] = []

    async def new_work(name: str, **kw: bool) -> None:
        ticket = await limiter.acquire(can_wait=True, starts_task=True, **kw)
        booked.append(name)
        await limiter.settle(ticket, owe=name)

    # the slot call starts waiting first: without `defer` it would be first to find the room
    slot_call = asyncio.create_task(new_work("slot call", defer=defer))
    await asyncio.sleep(0)
    create = asyncio.create_task(new_work("create"))
    for _ in range(20):  # both wait while there is no room
        await asyncio.sleep(0.005)
    assert booked == []
    for ref in ("t0", "t1"):  # room for one more task: then for the next
        limiter.paid_now(ref)
    for _ in range(1000):
        await asyncio.sleep(0.005)
        if len(booked) == 1:  # the first one's task and slot take room again: free enough for the second
            for ref in ("t2", "t3", "t4"):
                limiter.paid_now(ref)
        if len(booked) == 2:
            break
    await asyncio.wait_for(asyncio.gather(slot_call, create), 10)
    return booked


def _makers(tmp_path: Path) -> list[Make]:
    return [_memory, _database(f"sqlite:///{tmp_path / 'limiter.db'}")]


def _create_and_slot_call(limiter: Limiter) -> tuple[asyncio.Task[object], asyncio.Task[object]]:
    """A create and a deferred slot call, both waiting to book (started on the running loop)."""
    return (asyncio.create_task(limiter.acquire(can_wait=True, starts_task=True)),
            asyncio.create_task(limiter.acquire(can_wait=True, starts_task=True, defer=True)))


@pytest.fixture(params=[0, 1], ids=["in-process", "database"])
def still(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[YieldingClock, Limiter]:
    """A limiter of each kind on a clock that stands still."""
    clock = YieldingClock(1_795_000_000.0)
    return clock, _makers(tmp_path)[request.param](clock)


@pytest.mark.parametrize("which", [0, 1], ids=["in-process", "database"])
def test_a_slot_call_lets_the_waiting_creates_book_first(tmp_path: Path, which: int) -> None:
    make = _makers(tmp_path)[which]
    assert asyncio.run(_order_of_booking(make, defer=True)) == ["create", "slot call"]


def test_without_defer_the_first_waiter_takes_the_room() -> None:
    """The control: the same scene without `defer` books the slot call first, so the test above can fail (in
    process, where the order of two waiters is the event loop's; the database's threads may go either way)."""
    assert asyncio.run(_order_of_booking(_memory, defer=False)) == ["slot call", "create"]


def test_a_slot_call_with_no_create_waiting_books_at_once(still: tuple[YieldingClock, Limiter]) -> None:
    clock, limiter = still

    async def run() -> None:
        start = clock.now
        await asyncio.wait_for(limiter.acquire(can_wait=True, starts_task=True, defer=True), 10)
        assert clock.now == start

    asyncio.run(run())


def test_a_cancelled_create_stops_holding_back_the_slot_call(still: tuple[YieldingClock, Limiter]) -> None:
    _, limiter = still
    _no_room(limiter)

    async def run() -> None:
        create, slot_call = _create_and_slot_call(limiter)
        for _ in range(10):
            await asyncio.sleep(0.005)
        create.cancel()
        with pytest.raises(asyncio.CancelledError):
            await create
        for ref in ("t0", "t1"):
            limiter.paid_now(ref)
        await asyncio.wait_for(slot_call, 10)

    asyncio.run(run())


def _room_for_polls_only(limiter: Limiter) -> None:
    """Eleven tasks owed and ten slots held: their polls fit (11 x 20 rounds <= 250 - 11), a twelfth task's do not."""
    _no_room(limiter)
    limiter.paid_now("t11")


async def _early_poll_and_create(make: Make) -> list[str]:
    """The window is full: an early poll, then a create, wait for it; the window slides (the test moves the clock, not
    far enough for the poll to come due): who books first?"""
    clock = YieldingClock(1_795_000_000.0)
    limiter = make(clock)
    for _ in range(10):
        assert limiter.reserve() is not None if isinstance(limiter, SlidingWindowLimiter) else limiter.take_slot()
    booked: list[str] = []

    async def book(name: str, **kw: Any) -> None:
        await limiter.acquire(**kw)
        booked.append(name)

    poll = asyncio.create_task(book("early poll", due_in=1000.0))  # still early after the slide
    await asyncio.sleep(0.01)
    create = asyncio.create_task(book("create", can_wait=True, starts_task=True))
    for _ in range(10):
        await asyncio.sleep(0.005)
    assert booked == []
    clock.now += 13.0  # the window slides, well within the patience (30 s)
    await asyncio.wait_for(asyncio.gather(poll, create), 10)
    return booked


SHORT = [(10, 12.0)]  # 10 per 12 s: the pace of 250 per 300 s, in a window shorter than the patience


def _short(url: str | None) -> Make:
    def make(clock: FakeClock) -> Limiter:
        if url is None:
            return SlidingWindowLimiter(SHORT, clock=clock, sleep=clock.sleep, poll_every=EVERY)
        return DatabaseLimiter(url, "k", SHORT, clock=clock, sleep=clock.sleep, poll_every=EVERY)
    return make


@pytest.mark.parametrize("which", [0, 1], ids=["in-process", "database"])
def test_an_early_poll_lets_new_work_waiting_for_the_window_go_first(tmp_path: Path, which: int) -> None:
    make = _short(None if which == 0 else f"sqlite:///{tmp_path / 'limiter.db'}")
    assert asyncio.run(_early_poll_and_create(make)) == ["create", "early poll"]


def test_without_the_order_the_early_poll_waiting_first_books_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: with every request at one urgency, the scene above books the early poll first."""
    monkeypatch.setattr(Waiting, "holds", lambda self, level, waited, horizon: False)
    assert asyncio.run(_early_poll_and_create(_short(None))) == ["early poll", "create"]


def test_an_early_poll_waits_while_new_work_waits_for_room_too(still: tuple[YieldingClock, Limiter]) -> None:
    """A create waits for room for its task's polls; the clock stands still, so the early poll never comes due: it
    books once nobody more urgent waits, though the window and the room had a slot for it all along."""
    clock, limiter = still
    _room_for_polls_only(limiter)

    async def run() -> None:
        await asyncio.wait_for(limiter.acquire(due_in=5.0), 10)  # the control: nobody waits, it goes at once
        create = asyncio.create_task(limiter.acquire(can_wait=True, starts_task=True))  # no room for its task
        await asyncio.sleep(0.01)
        poll = asyncio.create_task(limiter.acquire(due_in=5.0))
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert not poll.done() and not create.done()
        create.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await create
        await asyncio.wait_for(poll, 10)

    asyncio.run(run())


def test_a_due_poll_books_at_once_whoever_waits(still: tuple[YieldingClock, Limiter]) -> None:
    _, limiter = still
    _no_room(limiter)

    async def run() -> None:
        create, slot_call = _create_and_slot_call(limiter)
        await asyncio.sleep(0.01)
        await asyncio.wait_for(limiter.acquire(), 10)  # the clock stands still: it went at once
        for waiter in (create, slot_call):
            assert not waiter.done()
            waiter.cancel()
        await asyncio.gather(create, slot_call, return_exceptions=True)

    asyncio.run(run())


class MovingClock(FakeClock):
    """A fake clock that every `sleep` moves forward, letting the other waiters run."""

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@pytest.mark.parametrize("which", [0, 1], ids=["in-process", "database"])
def test_nothing_waits_behind_the_more_urgent_for_ever(tmp_path: Path, which: int) -> None:
    """A create that cannot book (no room for its task's polls) holds a deferred request back for `PATIENCE_SLOTS`
    steady-state slots (30 s at the vendor's pace), then that request books: another batch's creates on the key in
    this process never starve this one's uploads. (Polls every 60 s: 49 tasks owed leave room for a request that
    starts none, not for a fiftieth task; they would expire only after 8 minutes.)"""
    clock = MovingClock(1_795_000_000.0)
    every = 60.0
    limiter: Limiter = (SlidingWindowLimiter(LONG, clock=clock, sleep=clock.sleep, poll_every=every) if which == 0
                        else DatabaseLimiter(f"sqlite:///{tmp_path / 'limiter.db'}", "k", LONG, clock=clock,
                                             sleep=clock.sleep, poll_every=every))
    for i in range(49):
        limiter.owe_now(f"t{i}")
    patience = Waiting.PATIENCE_SLOTS * 300.0 / 250

    async def run() -> None:
        create = asyncio.create_task(limiter.acquire(can_wait=True, starts_task=True))
        await asyncio.sleep(0)  # it counts as waiting from its first step
        start = clock.now
        await asyncio.wait_for(limiter.acquire(can_wait=True, defer=True), 10)
        assert clock.now - start >= patience - 1e-6
        assert not create.done()
        create.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await create

    asyncio.run(run())
