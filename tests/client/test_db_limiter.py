"""The database limiter on SQLite: windows hold under a fake clock, across instances, threads and
processes, and through a real client against the sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from backdrop.errors import ConfigError
from backdrop.identity import limiter_key_id
from backdrop.pacing import limiter_for
from backdrop.pacing import slots as slots_db
from backdrop.pacing.database import SKEW_GRACE_SECONDS, DatabaseLimiter
from backdrop.pacing.memory import IN_FLIGHT_MAX_SECONDS, OWED_EXPIRY_ROUNDS, SlidingWindowLimiter, shared_limiter
from backdrop.pacing.slots import owed, slots
from backdrop.pacing.windows import key_windows as _windows
from tests.client.helpers import KEY, FakeClock, make_settings, worst_window

ROOT = Path(__file__).resolve().parents[2]


def stored_slots(url: str, key_id: str, column: str = "slot_at") -> list[float]:
    """The slots' times (`slot_at`: as counted, settled; `booked_at`: as given), in order."""
    with slots_db.engine_for(url).connect() as conn:
        stmt = select(slots.c[column]).where(slots.c.key_id == key_id).order_by(slots.c[column])
        return list(conn.scalars(stmt))


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'limiter.db'}"


def test_slots_respect_every_window_under_a_fake_clock(db_url: str) -> None:
    clock = FakeClock(1_000.0)
    limiter = DatabaseLimiter(db_url, "k", [(3, 10.0), (2, 1.0)], clock=clock)
    waits = [limiter.take_slot() - clock.now for _ in range(6)]
    # as SlidingWindowLimiter: two at once, the third 1 s later, then the 10 s window is full
    assert waits == [0.0, 0.0, 1.0, 10.0, 10.0, 11.0]
    assert stored_slots(db_url, "k") == [1_000.0 + w for w in waits]


def test_a_settled_slot_counts_from_its_answer(db_url: str) -> None:
    clock = FakeClock(1_000.0)
    limiter = DatabaseLimiter(db_url, "k", [(2, 10.0)], clock=clock, sleep=clock.sleep)

    async def run() -> None:
        tickets = [await limiter.acquire(), await limiter.acquire()]
        clock.now = 1_003.0  # the answers came back at t=1003
        for ticket in tickets:
            await limiter.settle(ticket)
        clock.now = 1_001.0
        await limiter.settle(tickets[0])  # never moved back

    asyncio.run(run())
    assert stored_slots(db_url, "k") == [1_003.0, 1_003.0]
    assert limiter.take_slot() == 1_013.0  # 10 s after the answers, not after the slots


def test_a_request_in_flight_counts_from_now_until_its_answer(db_url: str) -> None:
    clock = FakeClock(1_000.0)
    limiter = DatabaseLimiter(db_url, "k", [(1, 1.0)], clock=clock, sleep=clock.sleep)
    slot_id = limiter.take()[1]  # type: ignore[index]
    clock.now = 1_000.5  # sent at 1000, no answer yet: it may still arrive
    assert limiter.take_slot() == 1_001.5
    limiter.settle_slot(slot_id)
    assert stored_slots(db_url, "k") == [1_000.5, 1_001.5]
    clock.now = 1_000.0 + IN_FLIGHT_MAX_SECONDS + 10
    lost = limiter.take()[0]  # type: ignore[index]
    clock.now = lost + IN_FLIGHT_MAX_SECONDS + 1  # never answered: lost, it counts from its own time
    assert limiter.take_slot() == clock.now


def test_a_slots_table_of_the_old_shape_is_replaced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with create_engine(url).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE backdrop_rate_slots (id INTEGER PRIMARY KEY, key_id VARCHAR(200) "
                             "NOT NULL, slot_at FLOAT NOT NULL)")
        conn.exec_driver_sql("INSERT INTO backdrop_rate_slots (key_id, slot_at) VALUES ('k', 1.0)")
    clock = FakeClock(1_000.0)
    assert DatabaseLimiter(url, "k", [(1, 1.0)], clock=clock).take_slot() == 1_000.0
    assert stored_slots(url, "k") == [1_000.0]


def test_requests_that_can_wait_book_only_within_the_horizon(db_url: str) -> None:
    clock = FakeClock(1_000.0)
    limiter = DatabaseLimiter(db_url, "k", [(3, 10.0)], clock=clock)
    for _ in range(3):
        limiter.take_slot()
    assert limiter.take_slot(horizon=2.0) is None  # the next slot is 10 s away: not booked
    assert stored_slots(db_url, "k") == [1_000.0] * 3
    assert limiter.take_slot() == 1_010.0  # a poll books it


def test_acquire_sleeps_until_its_slot(db_url: str) -> None:
    clock = FakeClock(1_000.0)
    limiter = DatabaseLimiter(db_url, "k", [(5, 1.0)], clock=clock, sleep=clock.sleep)
    times: list[float] = []

    async def run() -> None:
        for _ in range(12):
            await limiter.settle(await limiter.acquire())  # answered at once
            assert limiter.last_slot == clock.now
            times.append(clock.now - 1_000.0)

    asyncio.run(run())
    assert times == [0.0] * 5 + [1.0] * 5 + [2.0] * 2


def test_the_same_slots_as_the_in_process_limiter_for_random_arrivals(db_url: str) -> None:
    rng = random.Random(11)
    windows = [(7, 2.0), (3, 0.5), (20, 9.0)]
    clock = FakeClock(1_000.0)
    in_process = SlidingWindowLimiter(windows, clock=clock)
    database = DatabaseLimiter(db_url, "k", windows, clock=clock)
    for _ in range(200):
        clock.now += rng.choice([0.0, 0.0, 0.01, 0.2, 1.5])
        expected = clock.now + in_process.reserve()
        assert database.take_slot() == expected
    for count, seconds in windows:
        assert worst_window(stored_slots(db_url, "k"), seconds) <= count


def test_uploads_creates_and_polls_get_the_same_slots_as_in_process(db_url: str) -> None:
    """Random arrivals of polls and of requests that can wait (uploads, creates: a horizon): the database limiter
    books exactly as the in-process one, or refuses exactly when it does."""
    rng = random.Random(5)
    windows = [(12, 10.0), (3, 0.5)]
    clock = FakeClock(1_000.0)
    in_process = SlidingWindowLimiter(windows, clock=clock)
    database = DatabaseLimiter(db_url, "k", windows, clock=clock)
    for _ in range(300):
        clock.now += rng.choice([0.0, 0.0, 0.05, 0.3, 1.0])
        horizon = rng.choice([None, 2.0, 2.0])
        got = in_process.reserve(horizon)
        expected = None if got is None else clock.now + got
        assert database.take_slot(horizon) == expected
    for count, seconds in windows:
        assert worst_window(stored_slots(db_url, "k"), seconds) <= count


def test_instances_on_one_key_share_the_windows_and_other_keys_do_not(db_url: str) -> None:
    clock = FakeClock(1_000.0)
    a = DatabaseLimiter(db_url, "shared", [(2, 1.0)], clock=clock)
    b = DatabaseLimiter(db_url, "shared", [(2, 1.0)], clock=clock)
    other = DatabaseLimiter(db_url, "other", [(2, 1.0)], clock=clock)
    granted = [a.take_slot(), b.take_slot(), a.take_slot(), b.take_slot()]
    assert [g - 1_000.0 for g in granted] == [0.0, 0.0, 1.0, 1.0]  # b sees a's future slots
    assert [other.take_slot() - 1_000.0 for _ in range(2)] == [0.0, 0.0]


def test_stale_slots_are_deleted_after_the_longest_window_and_the_grace(db_url: str) -> None:
    clock = FakeClock(1_000.0)
    limiter = DatabaseLimiter(db_url, "k", [(100, 10.0), (100, 1.0)], clock=clock)
    for _ in range(5):
        limiter.take_slot()
    clock.now += 10.0 + SKEW_GRACE_SECONDS - 1.0
    limiter.take_slot()
    assert len(stored_slots(db_url, "k")) == 6  # within the grace: kept for skewed hosts
    clock.now += 2.0
    limiter.take_slot()
    assert stored_slots(db_url, "k") == [1_000.0 + 69.0, 1_000.0 + 71.0]


def check_threads(url: str, key_id: str) -> None:
    """Four threads, each with its own event loop and its own instance, never exceed the windows together."""
    windows = [(4, 0.1), (6, 0.3)]
    start = threading.Barrier(4)
    loops: set[int] = set()
    granted: list[float] = []

    def thread_main() -> None:
        limiter = DatabaseLimiter(url, key_id, windows)

        async def run() -> None:
            loops.add(id(asyncio.get_running_loop()))
            for _ in range(5):
                await limiter.settle(await limiter.acquire())  # answered at once
                assert limiter.last_slot is not None
                granted.append(limiter.last_slot)

        start.wait()
        asyncio.run(run())

    threads = [threading.Thread(target=thread_main) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(loops) == 4 and len(granted) == 20
    assert sorted(granted) == stored_slots(url, key_id, "booked_at")
    for count, seconds in windows:
        assert worst_window(granted, seconds) <= count


def test_threads_with_their_own_event_loops_share_one_limit(db_url: str) -> None:
    check_threads(db_url, "threads")


# ---- several processes ---------------------------------------------------------------------

WORKER = """
import asyncio, json, sys, time
from backdrop.pacing import database as module, slots as slots_db
url, key, windows, n = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
limiter = module.DatabaseLimiter(url, key, [tuple(w) for w in windows])
slots_db.engine_for(url)  # the table exists before the start
print("ready", flush=True)
sys.stdin.readline()

async def run():
    for _ in range(n):
        await limiter.settle(await limiter.acquire())  # answered at once
        print(json.dumps({"slot": limiter.last_slot, "at": time.time()}), flush=True)

asyncio.run(run())
"""


def run_together(code: str, argv: list[str], processes: int) -> list[str]:
    """Start `processes` Pythons running `code`, release them together once each printed
    "ready", and return each one's remaining stdout (a failure shows its stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *argv], cwd=ROOT, env=env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(processes)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdin is not None
            line = p.stdout.readline()
            assert line.strip() == "ready", p.communicate(timeout=30)[1]
        for p in procs:
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        outputs = []
        for p in procs:
            out, err = p.communicate(timeout=60)  # no deadlock: everyone finishes
            assert p.returncode == 0, err
            outputs.append(out)
        return outputs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def check_processes(url: str, key_id: str) -> None:
    """3 processes x 10 acquisitions on one key: every window holds over the granted slots."""
    windows = [(10, 1.0), (4, 0.25)]
    outputs = run_together(WORKER, [url, key_id, json.dumps(windows), "10"], processes=3)
    grants = [[json.loads(line) for line in out.splitlines()] for out in outputs]
    assert [len(g) for g in grants] == [10, 10, 10]
    granted = [g["slot"] for per_process in grants for g in per_process]
    assert sorted(granted) == stored_slots(url, key_id, "booked_at")  # every slot stored is one a process used
    for count, seconds in windows:
        assert worst_window(granted, seconds) <= count
    # nobody went before its slot (5 ms for the loop's clock resolution and wall/monotonic drift)
    assert all(g["at"] >= g["slot"] - 0.005 for per_process in grants for g in per_process)


def test_processes_sharing_one_sqlite_file_never_exceed_the_windows(db_url: str) -> None:
    check_processes(db_url, "processes")


CLIENT_WORKER = """
import asyncio, sys
from backdrop.client import BackdropClient
from backdrop.pacing import limiter_for
from backdrop.pacing.database import DatabaseLimiter
from backdrop.settings import BackdropSettings
settings = BackdropSettings(api_url=sys.argv[1], api_key=sys.argv[2], limiter_url=sys.argv[3],
                            feature="bg-replace", rate_limit_per_second=2.5, max_retries=0)
limiter = limiter_for(settings)
assert isinstance(limiter, DatabaseLimiter)
print("ready", flush=True)
sys.stdin.readline()

async def run():
    async with BackdropClient(settings, limiter=limiter) as client:
        for _ in range(4):
            balance = await client.credit_balance()
            print(balance.total, flush=True)
        print("429s", client.stats.http_429, flush=True)

asyncio.run(run())
"""


def test_two_client_processes_stay_inside_the_sandbox_rate_limit(sandbox: Any, db_url: str) -> None:
    # 2.5/s is paced as 2 per ~0.85 s over both processes; the sandbox allows 5 per second, so
    # only ~0.7 s of scheduling delay could bunch 6 together. max_retries=0 turns any 429 into a
    # failed process. Two in-process limiters would let all 8 through within ~0.9 s.
    outputs = run_together(CLIENT_WORKER, [sandbox.base_url, sandbox.api_key, db_url], 2)
    for out in outputs:
        assert out.splitlines()[-1] == "429s 0"
        assert len(out.splitlines()) == 5
    settings = make_settings(api_url=sandbox.base_url, api_key=sandbox.api_key,
                             rate_limit_per_second=2.5)
    assert len(stored_slots(db_url, limiter_key_id(settings))) == 8
    credit_calls = [e for e in sandbox.journal() if e["path"] == "/s2s/v1.0/client/credit"]
    assert [e["status"] for e in credit_calls] == [200] * 8


# ---- settings ------------------------------------------------------------------------------


def test_limiter_for_uses_the_database_only_when_limiter_url_is_set(db_url: str) -> None:
    plain = make_settings()
    assert limiter_for(plain) is shared_limiter(plain)
    settings = make_settings(limiter_url=db_url)
    limiter = limiter_for(settings)
    assert isinstance(limiter, DatabaseLimiter)
    assert limiter.windows == _windows(settings) and limiter.url == db_url
    assert limiter_for(make_settings(limiter_url=db_url)) is limiter
    assert limiter_for(make_settings(limiter_url=db_url, api_url="https://api.test/")) is limiter
    other_key = limiter_for(make_settings(limiter_url=db_url, api_key="sk-other"))
    assert isinstance(other_key, DatabaseLimiter) and other_key.key_id != limiter.key_id
    slower = limiter_for(make_settings(limiter_url=db_url, rate_limit_per_second=1.0))
    # other limits, same vendor count
    assert isinstance(slower, DatabaseLimiter) and slower.key_id == limiter.key_id
    assert KEY not in limiter.key_id and KEY not in repr(limiter)


def test_an_unusable_database_is_a_config_error_without_the_password() -> None:
    # port 1 on loopback refuses at once
    limiter = DatabaseLimiter("postgresql://backdrop:hunter2@127.0.0.1:1/x", "k", [(1, 1.0)])
    with pytest.raises(ConfigError) as caught:
        asyncio.run(limiter.acquire())
    assert "127.0.0.1:1" in str(caught.value) and "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(limiter)


def test_a_missing_sqlite_directory_is_a_config_error(tmp_path: Path) -> None:
    limiter = DatabaseLimiter(f"sqlite:///{tmp_path / 'missing' / 'x.db'}", "k", [(1, 1.0)])
    with pytest.raises(ConfigError, match="cannot open the limiter database"):
        limiter.take_slot()


@pytest.mark.parametrize("windows", [[], [(0, 1.0)], [(5, 0.0)]])
def test_bad_windows_are_refused(windows: list[tuple[int, float]]) -> None:
    with pytest.raises(ValueError):
        DatabaseLimiter("sqlite://", "k", windows)



def check_room_for_polls(url: str, key_id: str) -> None:
    """The tasks owed polls are shared through the database: two instances (two processes) on one key and an
    egress budget keep the same room for polls as the in-process limiter, step by step."""
    clock = FakeClock(1_795_000_000.0)  # wall-clock sized
    windows, every = [(250, 300.0)], 15.0
    one = DatabaseLimiter(url, key_id, windows, clock=clock, egress_key_id=f"{key_id}-ip", poll_every=every)
    two = DatabaseLimiter(url, key_id, windows, clock=clock, egress_key_id=f"{key_id}-ip", poll_every=every)
    other_key = DatabaseLimiter(url, f"{key_id}-b", windows, clock=clock, egress_key_id=f"{key_id}-ip",
                                poll_every=every)
    in_process = SlidingWindowLimiter(windows, clock=clock, poll_every=every)
    for i in range(12):
        one.owe_now(f"task-{i}")
        in_process.owe_now(f"task-{i}")
    # twelve tasks owed: no room for a thirteenth (13 * 20 rounds > 250)
    assert (two.take(10.0, starts_task=True) is None) == (in_process._reserve(10.0, starts_task=True) is None)
    assert other_key.take(10.0, starts_task=True) is None  # the egress address owes them too
    taken = two.take(10.0)  # an upload still fits
    assert taken is not None and in_process.reserve(10.0) is not None
    one.owe_now("task-0")  # said running again: still one row
    two.paid_now("task-1")
    in_process.paid_now("task-1")
    create = other_key.take(10.0, starts_task=True)  # room for one task again: another key's create takes it
    assert create is not None
    assert one.take(10.0, starts_task=True) is None  # its task counts while the create is in flight
    other_key.settle_slot(create[1])  # refused: it made no task
    assert one.take(10.0, starts_task=True) is not None
    # a process that stopped without saying so: its tasks stop counting after a few rounds
    clock.now += OWED_EXPIRY_ROUNDS * every + 1
    assert two.take(10.0, starts_task=True) is not None
    with slots_db.engine_for(url).connect() as conn:
        left = conn.scalar(select(func.count()).select_from(owed).where(owed.c.key_id == key_id))
    assert left is not None and left <= 2  # expired rows are deleted, the fresh creates' remain


def test_room_for_polls_is_shared_through_the_database(db_url: str) -> None:
    check_room_for_polls(db_url, "k")


def test_a_long_task_id_is_kept_as_a_digest(db_url: str) -> None:
    clock = FakeClock(1_795_000_000.0)
    limiter = DatabaseLimiter(db_url, "k", [(250, 300.0)], clock=clock, poll_every=15.0)
    for i in range(13):
        limiter.owe_now("x" * 500 + str(i))
    assert limiter.take(10.0) is None
    for i in range(13):
        limiter.paid_now("x" * 500 + str(i))
    assert limiter.take(10.0) is not None


def test_an_early_poll_waits_for_spare_room_in_the_database_too(db_url: str) -> None:
    clock = FakeClock(1_795_000_000.0)
    limiter = DatabaseLimiter(db_url, "k", [(250, 300.0)], clock=clock, sleep=clock.sleep, poll_every=15.0)
    for i in range(12):
        limiter.owe_now(f"t{i}")
    for _ in range(10):
        limiter.take_slot()

    async def run() -> None:
        start = clock.now
        await limiter.settle(await limiter.acquire(due_in=5.0), owe="t1")
        assert clock.now - start == pytest.approx(5.0)  # no spare room: it went when it was due
        await limiter.settle(await limiter.acquire(due_in=5.0), paid="t0")
        assert clock.now - start == pytest.approx(10.0)
        await limiter.acquire(due_in=5.0)  # t0 paid in the same transaction as the settling: room again
        assert clock.now - start == pytest.approx(10.0)

    asyncio.run(run())


@pytest.mark.parametrize("booking", ["create", "poll"])
def test_a_waiter_cancelled_while_its_booking_runs_gives_the_slot_back(db_url: str, booking: str) -> None:
    """A booking runs in a thread that a cancelled waiter (a task's timeout) cannot stop. What the thread books after
    the cancellation is given back: it counts from its own time and is no longer in flight, and a create's room for its
    polls is freed at once rather than held until it expires (2 minutes). The cancellation is not held up."""
    limiter = DatabaseLimiter(db_url, "k", [(250, 300.0)], poll_every=15.0)
    entered, go, booked = threading.Event(), threading.Event(), threading.Event()
    take = limiter.take

    def slow_take(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert go.wait(10.0)
        try:
            return take(*args, **kwargs)
        finally:
            booked.set()

    limiter.take = slow_take  # type: ignore[method-assign]

    def in_flight_and_owed() -> tuple[list[bool], int]:
        with slots_db.engine_for(db_url).connect() as conn:
            flights = list(conn.scalars(select(slots.c.in_flight).where(slots.c.key_id == "k")))
            return flights, int(conn.scalar(select(func.count()).select_from(owed)) or 0)

    async def run() -> None:
        waiter = asyncio.create_task(limiter.acquire(can_wait=booking == "create", starts_task=booking == "create"))
        assert await asyncio.to_thread(entered.wait, 10.0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiter, 1.0)  # at once, while the booking still waits in its thread
        assert in_flight_and_owed() == ([], 0)  # nothing booked yet
        go.set()
        assert await asyncio.to_thread(booked.wait, 10.0)
        for _ in range(500):  # the give-back runs in a thread of its own
            if in_flight_and_owed() == ([False], 0):
                break
            await asyncio.sleep(0.02)

    asyncio.run(run())
    assert in_flight_and_owed() == ([False], 0)
