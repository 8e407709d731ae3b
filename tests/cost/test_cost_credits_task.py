"""The read-credits task against the real sandbox, over loopback HTTP (no Prefect run needed: `.fn`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.logging import disable_run_logger

from tasks.credits import CreditSnapshot, read_credits
from tests.support.sandbox import spend


async def _read(since: datetime) -> CreditSnapshot:
    with disable_run_logger():  # outside a flow the task opens and closes a client of its own
        return await read_credits.fn(since)


def test_read_credits_returns_balance_and_charges(
    sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKDROP_API_URL", sandbox.base_url)
    monkeypatch.setenv("BACKDROP_API_KEY", sandbox.api_key)
    start = datetime.now(UTC) - timedelta(seconds=5)
    made = asyncio.run(spend(sandbox, tmp_path, n=3))
    snap = asyncio.run(_read(start))
    ledger = sandbox.ledger()
    assert snap.balance == ledger["balance"] == ledger["starting_balance"] - 12
    assert sorted(e.target_id for e in snap.history) == sorted(made)
    assert {e.units for e in snap.history} == {-4}
    assert asyncio.run(_read(datetime.now(UTC) + timedelta(minutes=1))).history == []
