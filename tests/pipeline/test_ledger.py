"""The ledger: claim before create, one holder per attempt, latest attempt wins."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger, default_ledger_url
from backdrop.store.schema import LedgerStatus, work


def test_claim_is_exclusive_and_latest_follows_attempts(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    assert ledger.claim("k", 1, run_id="r1")
    assert not ledger.claim("k", 1, run_id="r2")  # a second run cannot create the same picture
    ledger.mark("k", 1, status="created", task_id="T1")
    assert (ledger.latest("k").status, ledger.latest("k").task_id) == ("created", "T1")
    ledger.mark("k", 1, status="failed", error_code="error_inference")
    assert ledger.claim("k", 2, run_id="r2")
    assert ledger.latest("k").attempt == 2 and ledger.latest("k").status == "creating"
    assert ledger.latest("other") is None


def test_ledger_survives_a_new_process_view(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    Ledger(url).claim("k", 1, run_id="r1", row_id="a")
    Ledger(url).mark("k", 1, status="succeeded", units=4, output_path="/x.jpg")
    entries = Ledger(url).entries(run_id="r1")
    assert [(e.row_id, e.status, e.units) for e in entries] == [("a", "succeeded", 4)]


def test_a_ledger_from_before_charged_at_gets_the_column_and_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sqlite3.connect(tmp_path / "old.db")
    columns = ", ".join(f"{c.name} {c.type.compile(dialect=sqlite_dialect())}" for c in work.columns
                        if c.name not in ("charged_at",))
    old.execute(f"CREATE TABLE backdrop_work ({columns})")
    old.execute("INSERT INTO backdrop_work (id, content_key, attempt, status, units, created_at, updated_at) "
                "VALUES (1, 'k', 1, 'created', 0, '2026-11-01 10:00:00', '2026-11-01 10:00:00')")
    old.commit()
    old.close()
    ledger = Ledger(url)
    entry = ledger.latest("k")
    assert entry is not None and (entry.status, entry.charged_at) == ("created", None)
    assert ledger.record_charge("k", 1, 4, "run-1")
    charged = ledger.latest("k")
    assert charged is not None and charged.charged_at is not None and charged.units == 4


def test_the_default_ledger_is_sqlite_in_backdrop_home_unless_a_url_is_set(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKDROP_LEDGER_URL", raising=False)
    monkeypatch.setenv("BACKDROP_HOME", str(tmp_path / "home"))
    expected = f"sqlite:///{tmp_path / 'home' / 'ledger.db'}"
    assert BackdropSettings().effective_ledger_url() == default_ledger_url() == expected
    assert (tmp_path / "home").is_dir()  # created on the way
    assert Ledger().url == expected
    monkeypatch.setenv("BACKDROP_LEDGER_URL", "sqlite:///elsewhere.db")
    assert BackdropSettings().effective_ledger_url() == default_ledger_url() == "sqlite:///elsewhere.db"
    assert BackdropSettings(ledger_url="sqlite:///given.db").effective_ledger_url() == "sqlite:///given.db"
    # the status names are stored: they keep their strings
    assert [s.value for s in LedgerStatus] == ["creating", "created", "ambiguous", "pending_reconcile",
                                               "succeeded", "failed"]


@pytest.mark.parametrize("meanwhile", ["nothing", "sent", "answered", "settled"])
def test_a_verdict_is_recorded_only_on_the_attempt_as_it_was_read(tmp_path: Path, meanwhile: str) -> None:
    """`mark_unchanged` is a compare-and-set on the read: another run touching the claim right before sending,
    recording its answer, or settling it first, makes the verdict drawn from the older read a no-op."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.claim("k", 1, run_id="r1")
    read = ledger.latest("k")
    assert read is not None
    if meanwhile == "sent":
        assert ledger.touch_claim("k", 1)
    elif meanwhile == "answered":
        ledger.mark("k", 1, touch=False, status="created", task_id="T1")
    elif meanwhile == "settled":
        ledger.mark("k", 1, touch=False, status="pending_reconcile")
    took = ledger.mark_unchanged(read, status="failed", error_code="ambiguous_not_created")
    assert took is (meanwhile == "nothing")
    after = ledger.latest("k")
    assert after is not None and (after.status == "failed") is took
    assert not ledger.mark_unchanged(read, status="failed")  # the verdict itself changed it: not twice


def test_a_report_of_many_charges_is_marked_in_chunks_and_only_what_it_carries(tmp_path: Path) -> None:
    """More task ids than one statement may name (PostgreSQL caps its parameters at 65,535): all are marked, and a
    charge of the run the report does not carry is not."""
    from backdrop.store.ledger import MARK_CHUNK

    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    n, at = 2 * MARK_CHUNK + 7, datetime.now(UTC)
    with ledger.engine.begin() as conn:
        conn.execute(work.insert(), [{"content_key": f"k{i}", "attempt": 1, "status": "succeeded", "units": 4,
                                      "task_id": f"T{i}", "charged_run_id": "r1", "created_at": at, "updated_at": at}
                                     for i in range(n)])
    carried = {f"T{i}" for i in range(n - 1)}  # the last charge came after the report was built
    assert ledger.mark_reported("r1", carried) == n - 1
    left = [e.task_id for e in ledger.entries() if e.reported_at is None]
    assert left == [f"T{n - 1}"]
    assert ledger.mark_reported("r1", carried) == 0 and ledger.mark_reported("r1", set()) == 0
