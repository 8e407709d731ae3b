"""The ledger: claim before create, one holder per attempt, latest attempt wins."""

from __future__ import annotations

from pathlib import Path

from backdrop.ledger import Ledger


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
