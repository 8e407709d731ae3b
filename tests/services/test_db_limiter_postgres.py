"""The database limiter on a real PostgreSQL: the same slots as in process, and several processes
on one key never exceeding a window (advisory locks, not SQLite's write lock, serialise them)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from backdrop.pacing import slots as slots_db
from backdrop.pacing.database import DatabaseLimiter
from backdrop.pacing.memory import SlidingWindowLimiter
from tests.client.helpers import FakeClock, worst_window
from tests.client.test_db_limiter import check_processes, check_room_for_polls, check_threads, stored_slots
from tests.client.test_egress_limiter import check_keys_on_one_egress

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_url(postgres_db: str) -> Iterator[str]:
    yield postgres_db
    for url in [u for u in slots_db.engines if u == postgres_db]:
        slots_db.engines.pop(url).dispose()


def test_the_same_slots_as_the_in_process_limiter(pg_url: str) -> None:
    rng = random.Random(5)
    windows = [(7, 2.0), (3, 0.5), (20, 9.0)]
    clock = FakeClock(start=1_795_000_000.0)  # wall-clock sized: floats must survive the trip
    in_process = SlidingWindowLimiter(windows, clock=clock)
    key = f"fake-{uuid.uuid4().hex[:8]}"
    database = DatabaseLimiter(pg_url, key, windows, clock=clock)
    for _ in range(120):
        clock.now += rng.choice([0.0, 0.0, 0.01, 0.2, 1.5])
        assert database.take_slot() == clock.now + in_process.reserve()
    for count, seconds in windows:
        assert worst_window(stored_slots(pg_url, key), seconds) <= count


def test_threads_of_one_process_share_the_limit(pg_url: str) -> None:
    check_threads(pg_url, f"threads-{uuid.uuid4().hex[:8]}")


def test_processes_sharing_one_database_never_exceed_the_windows(pg_url: str) -> None:
    check_processes(pg_url, f"processes-{uuid.uuid4().hex[:8]}")


def test_processes_with_their_own_keys_share_the_address_budget(pg_url: str) -> None:
    check_keys_on_one_egress(pg_url)  # both advisory locks in one order: no deadlock, no overdrawn window


def test_the_table_has_its_index_and_commits_asynchronously(pg_url: str) -> None:
    DatabaseLimiter(pg_url, "schema", [(1, 1.0)]).take_slot()
    with slots_db.engine_for(pg_url).connect() as conn:
        indexes = conn.scalars(text(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'backdrop_rate_slots'"
        )).all()
        # a lost slot after a server crash costs at worst one 429; a flush per slot costs ~1 ms
        assert conn.scalar(text("SHOW synchronous_commit")) == "off"
    assert any("(key_id, slot_at)" in d for d in indexes)


def test_room_for_polls_is_shared_through_postgres(pg_url: str) -> None:
    check_room_for_polls(pg_url, f"room-{uuid.uuid4().hex[:8]}")
