"""A SQLite ledger the cost tests fill directly (rows on chosen days), and spending on the sandbox."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import insert

from backdrop.client import BackdropClient, CreditHistoryEntry
from backdrop.settings import BackdropSettings
from backdrop.store.ledger import Ledger, work


@dataclass
class LedgerFiller:
    ledger: Ledger
    _ids: Any = field(default_factory=count)

    def add(self, when: datetime, status: str, *, units: int = 0, run_id: str | None = "run-a",
            charged_run_id: str | None = None, deployment: str | None = None, task_id: str | None = None,
            environment: str = "env-1", charged_at: datetime | None = None) -> str:
        """One attempt created at `when`; a charged one gets units, charged_run_id (default run_id) and
        charged_at (default `when`)."""
        n = next(self._ids)
        task_id = task_id if task_id is not None else f"task-{n}"
        if units and charged_run_id is None:
            charged_run_id = run_id
        if units and charged_at is None:
            charged_at = when
        with self.ledger.engine.begin() as conn:
            conn.execute(insert(work).values(
                content_key=f"key-{n}", attempt=1, status=status, run_id=run_id, deployment=deployment,
                environment=environment, row_id=f"row-{n}", task_id=task_id, units=units,
                charged_run_id=charged_run_id, charged_at=charged_at, created_at=when, updated_at=when))
        return task_id


@pytest.fixture
def filler(tmp_path: Path) -> LedgerFiller:
    return LedgerFiller(Ledger(f"sqlite:///{tmp_path / 'ledger.db'}"))


def at(day: int, hour: int = 12, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def charge(task_id: str | None, when: datetime, units: float = 4,
           history_id: str | None = None) -> CreditHistoryEntry:
    """A vendor credit-history charge (negative units, as the vendor reports them)."""
    return CreditHistoryEntry(id=history_id or f"h-{task_id}", timestamp=when, action="change_background",
                              target_id=task_id, units=-units)


async def spend(sandbox: Any, folder: Path, n: int = 1) -> list[str]:
    """Make `n` tasks on the sandbox key directly (each charged 4 units), as another program would."""
    Image.new("RGB", (50, 50), (250, 250, 250)).save(folder / "x.jpg")
    settings = BackdropSettings(api_url=sandbox.base_url, api_key=sandbox.api_key, feature="bg-replace")
    made: list[str] = []
    async with BackdropClient(settings) as client:
        for _ in range(n):
            file_id = await client.upload_file(folder / "x.jpg", content_type="image/jpeg")
            task_id = (await client.create_task(src_file_id=file_id, prompt="x")).task_id
            while (await client.get_task(task_id)).status == "running":  # noqa: ASYNC110 - polls over HTTP
                await asyncio.sleep(0.02)
            made.append(task_id)
    return made
