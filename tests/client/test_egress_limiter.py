"""The second budget: the vendor limits per key *and* per client address, so every key leaving through one
address (`BACKDROP_EGRESS_ID`) shares one egress budget, in process and through the database limiter.

Properties under an injected clock: whatever the interleaving of requests from several keys on one egress, no
window of either budget (any key's, the address's) is ever overdrawn, and one key alone is paced exactly as
before."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backdrop.identity import egress_id, egress_limiter_key_id, limiter_key_id
from backdrop.pacing import limiter_for
from backdrop.pacing.database import DatabaseLimiter
from backdrop.pacing.memory import SlidingWindowLimiter, shared_limiter
from backdrop.pacing.windows import key_windows as _windows
from backdrop.pacing.windows import vendor_windows
from tests.client.helpers import FakeClock, make_settings, worst_window
from tests.client.test_db_limiter import run_together, stored_slots

KEY_WINDOWS = [(6, 3.0), (3, 0.5)]
EGRESS_WINDOWS = [(8, 3.0), (4, 0.5)]  # fewer than two keys together could take: the address binds

# one request: (which key, seconds the clock moves first, seconds until its answer, may it wait?)
requests = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from([0.0, 0.0, 0.01, 0.1, 0.3, 1.0, 2.5]),
              st.sampled_from([0.0, 0.05, 0.4, 2.0]), st.booleans()),
    min_size=1, max_size=60,
)


def assert_budgets_hold(granted: list[tuple[int, float]]) -> None:
    """Each key's windows and the address's windows over the granted slots (sent when granted)."""
    for key in {k for k, _ in granted}:
        for count, seconds in KEY_WINDOWS:
            assert worst_window([t for k, t in granted if k == key], seconds) <= count
    for count, seconds in EGRESS_WINDOWS:
        assert worst_window([t for _, t in granted], seconds) <= count


@given(requests)
@settings(max_examples=300, deadline=None)
def test_no_window_of_either_budget_is_overdrawn_in_process(plan: list[tuple[int, float, float, bool]]) -> None:
    clock = FakeClock(1_000.0)
    egress = SlidingWindowLimiter(EGRESS_WINDOWS, clock=clock)
    keys = [SlidingWindowLimiter(KEY_WINDOWS, clock=clock, also=(egress,)) for _ in range(3)]
    granted: list[tuple[int, float]] = []
    answers: list[tuple[float, int, object]] = []  # (answer time, key, ticket): settled as the clock passes it
    for key, step, latency, can_wait in plan:
        target = clock.now + step
        for at, k, ticket in sorted((a for a in answers if a[0] <= target), key=lambda a: a[0]):
            clock.now = max(clock.now, at)
            keys[k].settle_now(ticket)
        answers = [a for a in answers if a[0] > target]
        clock.now = target
        got = keys[key]._reserve(2 * 3.0 / 6 if can_wait else None)
        if got is None:
            continue  # a request that may wait came back later: nothing was taken
        wait, ticket = got
        granted.append((key, clock.now + wait))
        answers.append((clock.now + wait + latency, key, ticket))
    assert_budgets_hold(granted)


def test_one_key_alone_is_paced_as_without_the_egress_budget() -> None:
    clock = FakeClock(1_000.0)
    alone = SlidingWindowLimiter(KEY_WINDOWS, clock=clock)
    paired = SlidingWindowLimiter(KEY_WINDOWS, clock=clock, also=(SlidingWindowLimiter(KEY_WINDOWS, clock=clock),))
    for step in [0.0, 0.0, 0.1, 0.0, 0.7, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.1]:
        clock.now += step
        assert paired.reserve() == alone.reserve()


def test_two_keys_share_the_address_budget_and_each_keeps_its_own() -> None:
    clock = FakeClock(0.0)
    egress = SlidingWindowLimiter([(3, 10.0)], clock=clock)
    a = SlidingWindowLimiter([(2, 10.0)], clock=clock, also=(egress,))
    b = SlidingWindowLimiter([(2, 10.0)], clock=clock, also=(egress,))
    # a fills its own budget, b takes the address's last free slot; then both wait for the address's window
    assert [a.reserve(), a.reserve(), b.reserve(), b.reserve(), a.reserve()] == [0.0, 0.0, 0.0, 10.0, 10.0]
    lone = SlidingWindowLimiter([(2, 10.0)], clock=clock)
    assert [lone.reserve(), lone.reserve()] == [0.0, 0.0]  # a key on no address budget is not held back
    with pytest.raises(ValueError, match="plain limiter"):
        SlidingWindowLimiter([(1, 1.0)], also=(a,))


def test_shared_limiters_of_two_keys_share_one_egress_budget_per_server_and_egress_id() -> None:
    one, two = make_settings(api_key="sk-one"), make_settings(api_key="sk-two")
    assert shared_limiter(one) is not shared_limiter(two)
    assert shared_limiter(one).also == shared_limiter(two).also
    assert shared_limiter(one).also[0] is shared_limiter(two).also[0]
    assert shared_limiter(one).also[0].windows == vendor_windows(one)
    elsewhere = make_settings(api_key="sk-two", egress_id="proxy-b")
    assert shared_limiter(elsewhere).also[0] is not shared_limiter(one).also[0]
    other_server = make_settings(api_key="sk-two", api_url="http://127.0.0.1:9")
    assert shared_limiter(other_server).also[0] is not shared_limiter(one).also[0]
    # a burst is one key's choice: the address's budget keeps the vendor's windows only
    bursty = make_settings(api_key="sk-three", rate_limit_burst=10)
    assert shared_limiter(bursty).windows == _windows(bursty) != vendor_windows(bursty)
    assert shared_limiter(bursty).also[0] is shared_limiter(one).also[0]


def test_the_egress_id_is_the_setting_else_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.delenv("BACKDROP_EGRESS_ID")  # the suite gives each test its own (tests/conftest.py own_egress)
    assert egress_id(make_settings()) == socket.gethostname()
    assert egress_id(make_settings(egress_id="nat-gw-1")) == "nat-gw-1"
    one = egress_limiter_key_id(make_settings(api_key="sk-one", egress_id="nat-gw-1"))
    assert one == egress_limiter_key_id(make_settings(api_key="sk-two", egress_id="nat-gw-1"))
    assert one != egress_limiter_key_id(make_settings(api_key="sk-one", egress_id="nat-gw-2"))
    assert one.startswith("ip:") and "nat-gw-1" not in one


# ---- through the database --------------------------------------------------------------------


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('egress') / 'limiter.db'}"


@given(requests)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_window_of_either_budget_is_overdrawn_through_the_database(
    db_url: str, plan: list[tuple[int, float, float, bool]],
) -> None:
    run = uuid.uuid4().hex[:8]
    clock = FakeClock(1_000.0)
    keys = [DatabaseLimiter(db_url, f"key{i}-{run}", KEY_WINDOWS, clock=clock, egress_key_id=f"ip:{run}",
                            egress_windows=EGRESS_WINDOWS) for i in range(3)]
    memory_egress = SlidingWindowLimiter(EGRESS_WINDOWS, clock=clock)
    memory = [SlidingWindowLimiter(KEY_WINDOWS, clock=clock, also=(memory_egress,)) for _ in range(3)]
    granted: list[tuple[int, float]] = []
    answers: list[tuple[float, int, object, object]] = []
    for key, step, latency, can_wait in plan:
        target = clock.now + step
        for at, k, ticket, twin in sorted((a for a in answers if a[0] <= target), key=lambda a: a[0]):
            clock.now = max(clock.now, at)
            keys[k].settle_slot(ticket)  # type: ignore[arg-type]
            memory[k].settle_now(twin)
        answers = [a for a in answers if a[0] > target]
        clock.now = target
        horizon = 2 * 3.0 / 6 if can_wait else None
        taken, expected = keys[key].take(horizon), memory[key]._reserve(horizon)
        assert (taken is None) == (expected is None)
        if taken is None or expected is None:
            continue
        assert taken[0] == clock.now + expected[0]  # the same slot as in process
        granted.append((key, taken[0]))
        answers.append((taken[0] + latency, key, taken[1], expected[1]))
    assert_budgets_hold(granted)
    booked = stored_slots(db_url, f"ip:{run}", "booked_at")
    assert sorted(booked) == sorted(t for _, t in granted)  # one address slot per request, no more


def test_limiter_for_keeps_the_egress_budget_in_the_database(db_url: str) -> None:
    settings = make_settings(api_key="sk-one", limiter_url=db_url, egress_id="nat-gw-1")
    limiter = limiter_for(settings)
    assert isinstance(limiter, DatabaseLimiter)
    assert limiter.key_id == limiter_key_id(settings) and limiter.egress_key_id == egress_limiter_key_id(settings)
    other = limiter_for(make_settings(api_key="sk-two", limiter_url=db_url, egress_id="nat-gw-1"))
    assert isinstance(other, DatabaseLimiter) and other.egress_key_id == limiter.egress_key_id
    assert other.key_id != limiter.key_id
    assert limiter.take_slot() is not None and other.take_slot() is not None
    assert len(stored_slots(db_url, limiter.egress_key_id)) == 2  # type: ignore[arg-type]
    assert len(stored_slots(db_url, limiter.key_id)) == 1


WORKER = """
import asyncio, json, sys, time
from backdrop.pacing import database as module, slots as slots_db
url, key, egress, windows, egress_windows, n = sys.argv[1:6] + [int(sys.argv[6])]
limiter = module.DatabaseLimiter(url, key, [tuple(w) for w in json.loads(windows)], egress_key_id=egress,
                                 egress_windows=[tuple(w) for w in json.loads(egress_windows)])
slots_db.engine_for(url)  # the table exists before the start
print("ready", flush=True)
sys.stdin.readline()

async def run():
    for _ in range(n):
        await limiter.settle(await limiter.acquire())  # answered at once
        print(json.dumps({"slot": limiter.last_slot, "at": time.time()}), flush=True)

asyncio.run(run())
"""


def check_keys_on_one_egress(url: str) -> None:
    """Three processes, each with its own key, one egress: the address's windows hold over all of them, and
    nobody deadlocks (each takes both locks in one order)."""
    run = uuid.uuid4().hex[:8]
    key_windows, egress_windows = [(10, 1.0), (4, 0.25)], [(12, 1.0), (5, 0.25)]
    outputs = []
    for per_key in run_together_keys(url, run, key_windows, egress_windows):
        outputs.append([json.loads(line) for line in per_key.splitlines()])
    assert [len(o) for o in outputs] == [8, 8, 8]
    granted = [g["slot"] for per_process in outputs for g in per_process]
    assert sorted(granted) == stored_slots(url, f"ip:{run}", "booked_at")
    for count, seconds in egress_windows:
        assert worst_window(granted, seconds) <= count
    assert all(g["at"] >= g["slot"] - 0.005 for per_process in outputs for g in per_process)


def run_together_keys(url: str, run: str, key_windows: list[tuple[int, float]],
                      egress_windows: list[tuple[int, float]]) -> list[str]:
    """`run_together`, each process on a key of its own (its pid appended to the key), one egress."""
    code = WORKER.replace("limiter = module", "import os\nkey = key + '-' + str(os.getpid())\nlimiter = module")
    return run_together(code, [url, f"key-{run}", f"ip:{run}", json.dumps(key_windows), json.dumps(egress_windows),
                               "8"], processes=3)


def test_processes_with_their_own_keys_share_the_address_through_sqlite(tmp_path: Path) -> None:
    check_keys_on_one_egress(f"sqlite:///{tmp_path / 'limiter.db'}")
