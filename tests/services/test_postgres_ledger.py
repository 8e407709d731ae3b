"""The ledger on a real PostgreSQL: the same guarantees as on SQLite, across threads."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backdrop.store.ledger import Ledger
from tests.support.services import fresh_postgres_database

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.postgres


@pytest.fixture
def ledger(postgres_db: str) -> Ledger:
    return Ledger(postgres_db)


def test_only_one_of_many_concurrent_claims_wins(ledger: Ledger) -> None:
    key = f"test-{uuid.uuid4().hex}"
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda i: ledger.claim(key, 1, run_id=f"run-{i}"), range(16)))
    assert wins.count(True) == 1
    assert ledger.latest(key).status == "creating"


def test_a_charge_is_recorded_by_exactly_one_run(ledger: Ledger) -> None:
    key = f"test-{uuid.uuid4().hex}"
    ledger.claim(key, 1, run_id="a")
    ledger.mark(key, 1, status="created", task_id=f"T-{key}")
    with ThreadPoolExecutor(4) as pool:
        recorded = list(pool.map(lambda r: ledger.record_charge(key, 1, 4, r), ["a", "b", "c", "d"]))
    assert recorded.count(True) == 1
    entry = ledger.latest(key)
    assert entry.units == 4 and entry.charged_run_id in {"a", "b", "c", "d"}
    assert f"T-{key}" in ledger.known_task_ids()


def test_attempts_and_filters_work_on_postgres(ledger: Ledger) -> None:
    key, env = f"test-{uuid.uuid4().hex}", uuid.uuid4().hex[:16]
    ledger.claim(key, 1, run_id="r", environment=env)
    ledger.mark(key, 1, status="ambiguous")
    ledger.claim(key, 2, run_id="r", environment=env)
    assert [a.attempt for a in ledger.attempts(key)] == [1, 2]
    found = ledger.entries(environment=env, statuses=("ambiguous",))
    assert [(e.content_key, e.attempt) for e in found] == [(key, 1)]


OPEN_LEDGER = """
import sys, time
from backdrop.store.ledger import Ledger
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all start at the same instant
print(Ledger(sys.argv[1]).latest("nothing"))
"""


def test_workers_opening_a_fresh_ledger_at_once_all_get_it() -> None:
    """Workers starting together on a new database must not race on CREATE TABLE (two did, in CI)."""
    with fresh_postgres_database("backdrop_fresh") as url:
        start = time.time() + 3.0
        procs = [subprocess.Popen([sys.executable, "-c", OPEN_LEDGER, url, str(start)], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        outputs = [p.communicate(timeout=60) for p in procs]
    assert [(p.returncode, out.strip()) for p, (out, _) in zip(procs, outputs, strict=True)] == [(0, "None")] * 6, \
        [err[-800:] for _, err in outputs]


def test_a_verdict_on_an_unchanged_read_is_recorded_once_and_a_stale_one_never(ledger: Ledger) -> None:
    """The compare-and-set on `updated_at` holds on PostgreSQL's timestamptz too (microseconds, a time zone)."""
    key = f"test-{uuid.uuid4().hex}"
    ledger.claim(key, 1, run_id="a")
    read = ledger.latest(key)
    assert read is not None
    assert ledger.mark_unchanged(read, touch=False, status="pending_reconcile")
    assert not ledger.mark_unchanged(read, status="failed")  # the status changed since the read
    fresh = ledger.latest(key)
    assert fresh is not None and fresh.status == "pending_reconcile"
    with ThreadPoolExecutor(4) as pool:  # four runs holding one read: one verdict
        took = list(pool.map(lambda _: ledger.mark_unchanged(fresh, status="failed"), range(4)))
    assert took.count(True) == 1
