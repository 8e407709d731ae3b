"""The sliding-window limiter: windows hold under a fake clock, and across threads and loops."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from backdrop.client import BackdropClient
from backdrop.pacing import memory as limiter_module
from backdrop.pacing import windows as windows_module
from backdrop.pacing.memory import SlidingWindowLimiter, limiter_from_settings, shared_limiter
from tests.client.helpers import FakeClock, make_settings, worst_window


def test_reserve_hands_out_slots_that_respect_every_window() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter([(3, 10.0), (2, 1.0)], clock=clock)
    waits = [limiter.reserve() for _ in range(6)]
    # two at once, the third one second later (2/s), then the 10 s window is full until t=10
    assert waits == [0.0, 0.0, 1.0, 10.0, 10.0, 11.0]


def test_acquire_waits_with_the_fake_clock() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter([(250, 300.0), (5, 1.0)], clock=clock, sleep=clock.sleep)
    times = []

    async def run() -> None:
        for _ in range(260):
            await limiter.settle(await limiter.acquire())  # answered at once
            times.append(clock.now)

    asyncio.run(run())
    assert worst_window(times, 1.0) == 5
    assert worst_window(times, 300.0) == 250
    assert times[:6] == [0.0] * 5 + [1.0]
    assert times[250] == 300.0  # the 251st waits for the first to leave the 300 s window


def test_a_settled_slot_counts_from_its_answer() -> None:
    """The server counts a request when it arrives: answered at t=3, the window runs from t=3."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter([(2, 10.0)], clock=clock, sleep=clock.sleep)

    async def run() -> None:
        tickets = [await limiter.acquire(), await limiter.acquire()]
        clock.now = 3.0
        for ticket in tickets:
            await limiter.settle(ticket)
        clock.now = 1.0  # a clock read earlier than a slot never moves it back
        await limiter.settle(tickets[0])
        clock.now = 3.0

    asyncio.run(run())
    assert limiter.reserve() == 10.0  # at t=13, not t=10


def test_a_request_in_flight_counts_from_now_until_its_answer() -> None:
    """Sent at t=0 and unanswered at t=0.5, it may still arrive: the 1 s window counts from t=0.5."""
    clock = FakeClock()

    async def sleep(seconds: float) -> None:  # moves the clock, then really suspends (to be cancelled)
        clock.now += seconds
        await asyncio.sleep(0)

    limiter = SlidingWindowLimiter([(1, 1.0)], clock=clock, sleep=sleep)

    async def run() -> None:
        ticket = await limiter.acquire()
        clock.now = 0.5
        assert limiter.reserve() == 1.0  # at t=1.5, not t=1
        await limiter.settle(ticket)
        clock.now = 1.0
        cancelled = asyncio.ensure_future(limiter.acquire())  # waits for its slot at t=2.5 ...
        await asyncio.sleep(0)
        cancelled.cancel()  # ... and is cancelled before it sends anything
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        clock.now = 3.0
        assert limiter.reserve() == 0.5  # its slot (t=2.5) counts from its own time, not from now

    asyncio.run(run())


def test_windows_hold_for_random_arrivals() -> None:
    rng = random.Random(11)
    clock = FakeClock()
    windows = [(7, 2.0), (3, 0.5), (20, 9.0)]
    limiter = SlidingWindowLimiter(windows, clock=clock)
    slots = []
    for _ in range(500):
        clock.now += rng.choice([0.0, 0.0, 0.01, 0.2, 1.5])
        slots.append(clock.now + limiter.reserve())
    assert slots == sorted(slots)  # granted in order
    for count, seconds in windows:
        assert worst_window(slots, seconds) <= count


def test_threads_with_their_own_event_loops_share_one_limit() -> None:
    windows = [(4, 0.1), (10, 0.4)]
    local = threading.local()

    def clock() -> float:
        local.last = time.monotonic()
        return local.last

    granted: list[float] = []
    waits: list[float] = []
    record_lock = threading.Lock()

    class Recording(SlidingWindowLimiter):
        def _reserve(self, horizon: float | None, starts_task: bool = False) -> tuple[float, list[float]] | None:
            got = super()._reserve(horizon, starts_task)
            assert got is not None  # these callers never pass a horizon
            with record_lock:  # the slot is this thread's clock reading (under the lock) + its wait
                granted.append(local.last + got[0])
                waits.append(got[0])
            return got

    limiter = Recording(windows, clock=clock)
    start = threading.Barrier(5)
    loops: list[int] = []

    async def worker() -> None:
        loops.append(id(asyncio.get_running_loop()))
        for _ in range(6):
            await limiter.acquire()

    def thread_main() -> None:
        start.wait()
        asyncio.run(worker())

    threads = [threading.Thread(target=thread_main) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(loops)) == 5  # five event loops, one limiter
    assert len(granted) == 30
    assert any(w > 0 for w in waits)  # 30 acquisitions cannot all fit in the first window
    for count, seconds in windows:
        assert worst_window(granted, seconds) <= count


def test_settings_become_windows_with_a_jitter_margin() -> None:
    m = windows_module.JITTER_MARGIN_SECONDS  # for clock skew between hosts
    k = 1 + windows_module.SHORT_WINDOW_SLACK
    assert limiter_from_settings(make_settings()).windows == ((250, 300.0 + m), (5, pytest.approx(1.0 * k)))
    fractional = limiter_from_settings(
        make_settings(rate_limit_per_second=2.5, rate_limit_requests=10)
    )
    assert fractional.windows == ((10, 300.0 + m), (2, pytest.approx(0.8 * k)))
    slow = limiter_from_settings(make_settings(rate_limit_per_second=0.5))
    assert slow.windows[1] == (1, pytest.approx(2.0 * k))
    # a sandbox 20x faster than the vendor: 250 per 15 s and 5 per 0.05 s, not 100 per second
    scaled = limiter_from_settings(make_settings(rate_limit_window_seconds=15.0, rate_limit_per_second=100.0,
                                                 rate_limit_short_window_seconds=0.05))
    assert scaled.windows[0] == (250, pytest.approx(15.05)) and scaled.windows[1][0] == 5
    # a stalled event loop is as late at any time scale: at least 0.1 s of slack on the short window
    assert scaled.windows[1][1] == pytest.approx(0.05 + windows_module.SHORT_WINDOW_MIN_SLACK_SECONDS)


def test_a_burst_setting_spreads_requests_at_the_window_s_average_rate() -> None:
    windows = limiter_from_settings(make_settings(rate_limit_burst=10)).windows
    assert windows[2] == (10, pytest.approx(12.0))  # 10 at once, then one per 1.2 s on average
    clock = FakeClock()
    limiter = SlidingWindowLimiter(windows, clock=clock)
    slots = []
    for _ in range(260):
        slots.append(clock.now + limiter.reserve())  # type: ignore[operator]
    assert worst_window(slots, 12.0) == 10 and worst_window(slots, 300.0) <= 250
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert max(gaps) < 15.0  # never the 4-minute silence of a whole window spent at once
    unset = limiter_from_settings(make_settings()).windows
    assert len(unset) == 2  # by default the whole window may go at once


def test_shared_limiter_is_one_per_url_key_and_limits() -> None:
    a = shared_limiter(make_settings())
    assert shared_limiter(make_settings()) is a
    assert shared_limiter(make_settings(api_url="https://api.test/")) is a
    assert shared_limiter(make_settings(api_key="other-key")) is not a
    assert shared_limiter(make_settings(api_url="http://127.0.0.1:9")) is not a
    assert shared_limiter(make_settings(rate_limit_per_second=1.0)) is not a
    assert not any("sk-test" in repr(k) for k in limiter_module._shared)


def test_client_defaults_to_the_shared_limiter() -> None:
    settings = make_settings(api_url="https://shared.test")

    async def check() -> None:
        async with BackdropClient(settings) as one, BackdropClient(settings) as two:
            assert one._limiter is two._limiter is shared_limiter(settings)

    asyncio.run(check())


@pytest.mark.parametrize("windows", [[], [(0, 1.0)], [(5, 0.0)]])
def test_bad_windows_are_refused(windows: list[tuple[int, float]]) -> None:
    with pytest.raises(ValueError):
        SlidingWindowLimiter(windows)



def test_polls_go_first_creates_book_only_a_short_way_ahead() -> None:
    """Requests that can wait (uploads, creates) do not queue deep; a poll books behind at most two slots."""
    clock = [0.0]
    limiter = SlidingWindowLimiter([(10, 10.0)], clock=lambda: clock[0])  # steady state: 1 per second
    horizon = windows_module.wait_horizon(limiter.windows)
    assert horizon == 2.0
    for _ in range(10):
        assert limiter.reserve(horizon) == 0.0  # the burst allowance is free for everyone
    assert limiter.reserve(horizon) is None  # the next free slot is 10 s away: a create waits its turn
    clock[0] = 8.5
    assert limiter.reserve(horizon) == 1.5  # now it is near enough to book
    assert limiter.reserve() == 1.5  # a poll always books (after a burst, the window frees 10 at once)


@pytest.mark.anyio
async def test_a_waiting_create_yields_to_polls_until_the_queue_is_short() -> None:
    clock = [0.0]
    order: list[str] = []

    async def fake_sleep(seconds: float) -> None:
        clock[0] += seconds

    limiter = SlidingWindowLimiter([(1, 1.0)], clock=lambda: clock[0], sleep=fake_sleep)
    for _ in range(5):  # five polls book the next five seconds
        limiter.reserve()
    await limiter.acquire(can_wait=True)
    order.append(f"create at {clock[0]:.0f}")
    assert order == ["create at 5"]  # it booked the slot after the polls, and only once that was near


def test_a_stalled_process_sends_late_never_bunched() -> None:
    """Slots booked ahead are confirmed against what has really left: two requests that leave late (the process
    stalled past their slot) push the next one back a whole window, instead of leaving three within one."""
    clock = FakeClock()

    async def stalled(seconds: float) -> None:  # the clock is the test's: a sleep only lets the others run
        await asyncio.sleep(0)

    limiter = SlidingWindowLimiter([(2, 1.0)], clock=clock, sleep=stalled)
    sent: dict[str, float] = {}

    async def request(name: str) -> None:
        await limiter.settle(await limiter.acquire())
        sent[name] = clock.now

    async def run() -> None:
        await request("a1")
        await request("a2")  # two at t=0, answered at once
        waiting = [asyncio.create_task(request(name)) for name in ("a3", "a4", "a5")]
        for _ in range(5):
            await asyncio.sleep(0)  # booked: a3 and a4 at t=1, a5 at t=2
        assert not sent.keys() - {"a1", "a2"}
        clock.now = 2.0  # the process wakes only now: a3 and a4 leave at t=2, late
        for _ in range(20):
            await asyncio.sleep(0)
        assert "a5" not in sent  # booked for t=2, but two requests really left at t=2: it waits for t=3
        clock.now = 3.0
        await asyncio.gather(*waiting)

    asyncio.run(run())
    assert sent == {"a1": 0.0, "a2": 0.0, "a3": 2.0, "a4": 2.0, "a5": 3.0}
