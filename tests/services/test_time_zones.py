"""Times read back from the ledger, the cost queries and the DB limiter are the instants written, as aware UTC,
whatever the process's TZ and the database session's time zone (security review, finding 2).

Each check runs in a fresh process with TZ=America/Los_Angeles and, for PostgreSQL, a session zone east of UTC
(PGTZ=Asia/Tokyo, which libpq sends at connect; or the database's own `timezone` setting): psycopg then hands
`timestamptz` back as +09:00, which a relabel (`.replace(tzinfo=UTC)`) would put 9 hours late.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import fresh_postgres_database

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys, time, uuid
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import text

from backdrop.cost.rollup import load_attempts
from backdrop.pacing.database import DatabaseLimiter
from backdrop.pacing.slots import opened
from backdrop.store.ledger import Ledger

url = sys.argv[1]
out = {"local_offset_hours": time.localtime().tm_gmtoff / 3600}
ledger = Ledger(url)
if ledger.engine.dialect.name == "postgresql":
    with ledger.engine.connect() as conn:
        out["session_zone"] = conn.scalar(text("SHOW TimeZone"))
        raw = conn.connection.driver_connection.execute("SELECT now()").fetchone()[0]
        out["raw_offset_hours"] = raw.utcoffset().total_seconds() / 3600

key, env = "tz-" + uuid.uuid4().hex, uuid.uuid4().hex[:16]
before = datetime.now(UTC)
ledger.claim(key, 1, run_id="tz", environment=env)
after_claim = datetime.now(UTC)
time.sleep(0.05)
# a known instant, handed over in two other zones: stored and read back as that instant
instant = datetime(2026, 11, 30, 3, 36, 11, 123456, tzinfo=UTC)
ledger.mark(key, 1, status="created", charged_at=instant.astimezone(ZoneInfo("Asia/Tokyo")))
after_mark = datetime.now(UTC)
entry = ledger.latest(key)
entries = ledger.entries(run_id="tz")
out["types"] = sorted({str(t.tzinfo) for e in [entry, *entries] for t in (e.created_at, e.updated_at, e.charged_at)})
out["created_in_claim"] = before <= entry.created_at <= after_claim
out["updated_in_mark"] = after_claim < entry.updated_at <= after_mark
out["updated_after_created"] = entry.updated_at > entry.created_at
out["charged_at"] = entry.charged_at.isoformat()
out["age_seconds"] = (datetime.now(UTC) - entry.updated_at).total_seconds()
# `since`, given in any zone, is the instant it names
la = ZoneInfo("America/Los_Angeles")
out["since_before_update"] = [e.content_key for e in ledger.entries(environment=env, since=after_claim.astimezone(la))]
out["since_after_update"] = [e.content_key for e in ledger.entries(environment=env, since=after_mark.astimezone(la))]
# the database itself holds the real instant
with ledger.engine.connect() as conn:
    if ledger.engine.dialect.name == "postgresql":
        epoch = conn.scalar(text("SELECT extract(epoch FROM charged_at) FROM backdrop_work WHERE content_key = :k"),
                            {"k": key})
        out["stored_charged_at"] = datetime.fromtimestamp(float(epoch), UTC).isoformat()
    else:
        stored = conn.scalar(text("SELECT charged_at FROM backdrop_work WHERE content_key = :k"), {"k": key})
        out["stored_charged_at"] = datetime.fromisoformat(stored).isoformat() + "+00:00"
# the cost queries: the attempt counts on its charge's UTC day (03:36 UTC is 12:36 in Tokyo, 19:36 the day
# before in Los Angeles)
day = datetime(2026, 11, 30, tzinfo=UTC)
found = load_attempts(ledger, day, day + timedelta(days=1), [env])
out["cost_rows"] = len(found)
out["cost_day"] = str(found["day"].iloc[0]) if len(found) else None
out["cost_created_at"] = [t.isoformat() for t in found["created_at"]]
out["cost_before_day"] = len(load_attempts(ledger, day - timedelta(days=1), day, [env]))
# the DB limiter's slots are the wall-clock instants it granted
limiter = DatabaseLimiter(url, "tz-" + uuid.uuid4().hex[:8], [(2, 5.0)])
t0 = time.time()
slots = [limiter.take_slot() for _ in range(3)]
t1 = time.time()
with opened(url).connect() as conn:
    stored = sorted(conn.scalars(text("SELECT slot_at FROM backdrop_rate_slots WHERE key_id = :k"),
                                 {"k": limiter.key_id}))
out["slots_now"] = [t0 <= s <= t1 for s in slots[:2]]
out["third_slot_wait"] = slots[2] - slots[0]
out["slots_stored"] = stored == sorted(slots)
print(json.dumps(out))
"""


def _run(url: str, **env: str) -> dict:
    environ = {**os.environ, "TZ": "America/Los_Angeles", **env}
    done = subprocess.run([sys.executable, "-c", SCRIPT, url], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check(out: dict) -> None:
    assert out["local_offset_hours"] in (-8.0, -7.0)  # the process really is in Los Angeles
    assert out["types"] == ["UTC"]
    assert out["created_in_claim"] and out["updated_in_mark"] and out["updated_after_created"]
    assert 0 <= out["age_seconds"] < 30
    assert out["charged_at"] == "2026-11-30T03:36:11.123456+00:00"
    assert out["stored_charged_at"] == "2026-11-30T03:36:11.123456+00:00"
    assert len(out["since_before_update"]) == 1 and out["since_after_update"] == []
    assert (out["cost_rows"], out["cost_day"], out["cost_before_day"]) == (1, "2026-11-30", 0)
    assert all(t.endswith("+00:00") for t in out["cost_created_at"])
    assert out["slots_now"] == [True, True] and out["slots_stored"]
    assert out["third_slot_wait"] >= 5.0  # a third request in a 2-per-5 s window waits for the first


def test_sqlite_in_los_angeles(tmp_path: Path) -> None:
    _check(_run(f"sqlite:///{tmp_path / 'ledger.db'}"))


@pytest.mark.postgres
def test_postgres_with_pgtz_tokyo() -> None:
    with fresh_postgres_database("backdrop_tz") as url:
        out = _run(url, PGTZ="Asia/Tokyo")
    assert (out["session_zone"], out["raw_offset_hours"]) == ("Asia/Tokyo", 9.0)  # the trap is armed
    _check(out)


@pytest.mark.postgres
def test_postgres_database_zone_and_url_option() -> None:
    """The server's own zone (ALTER DATABASE ... SET timezone), then the URL's `options=-c timezone=...`."""
    import psycopg

    with fresh_postgres_database("backdrop_tz") as url:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'Pacific/Chatham'")
        out = _run(url)
        assert (out["session_zone"], out["raw_offset_hours"] > 12) == ("Pacific/Chatham", True)
        _check(out)
        out = _run(url + "?options=-c%20timezone%3DAsia/Tokyo")
        assert out["session_zone"] == "Asia/Tokyo"
        _check(out)
