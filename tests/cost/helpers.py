"""A SQLite ledger the cost tests fill directly (rows on chosen days), and vendor credit-history charges."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from typing import Any

from sqlalchemy import insert

from backdrop.client import CreditHistoryEntry
from backdrop.store.ledger import Ledger, work

__all__ = ["LedgerFiller", "at", "charge"]


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


def at(day: int, hour: int = 12, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def charge(task_id: str | None, when: datetime, units: float = 4,
           history_id: str | None = None) -> CreditHistoryEntry:
    """A vendor credit-history charge (negative units, as the vendor reports them)."""
    return CreditHistoryEntry(id=history_id or f"h-{task_id}", timestamp=when, action="change_background",
                              target_id=task_id, units=-units)
