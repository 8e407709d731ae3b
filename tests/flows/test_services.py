"""The pipeline on a real service: its ledger on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.flows.helpers import run_flow, write_csv
from tests.support.images import draw_product


@pytest.mark.postgres
def test_a_batch_on_a_postgres_ledger_pays_once_across_runs(
    pipeline_env: Any, postgres_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKDROP_LEDGER_URL", postgres_db)
    draw_product(tmp_path / "a.jpg", (200, 30, 30))
    csv = write_csv(tmp_path, [{"id": "a", "image_url": "a.jpg", "prompt": "beach"}])
    run_flow(csv=str(csv), out=str(tmp_path / "o1"))
    _, df = run_flow(csv=str(csv), out=str(tmp_path / "o2"))
    assert (df.loc[0, "status"], bool(df.loc[0, "reused"])) == ("succeeded", True)
    assert pipeline_env.ledger()["starting_balance"] - pipeline_env.ledger()["balance"] == 4
    from backdrop.store.ledger import Ledger

    assert [e.status for e in Ledger(postgres_db).entries()] == ["succeeded"]

