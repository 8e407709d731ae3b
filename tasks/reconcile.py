"""Reconciliation tasks: settle lost creates, and compare a run's units with the vendor's ledger."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

from prefect import task

from backdrop.pipeline import history, reconcile
from backdrop.pipeline.candidates import ClientVendor
from backdrop.store.ledger import Ledger
from tasks.policies import ACCOUNT_READ
from tasks.resources import task_resources


@task(name="settle-lost-creates", **ACCOUNT_READ)
async def settle_lost_creates(
    feature: str, ledger_url: str, environment: str, key_id: str, inputs: dict[str, str], create_window: float,
    candidates_dir: str | None = None,
) -> reconcile.Settlement:
    """Settle this account's lost creates that the vendor's credit history can tell (backdrop.pipeline.reconcile)."""
    async with task_resources() as res:
        settings = res.settings(feature)
        with tempfile.TemporaryDirectory(prefix="backdrop-reconcile-") as tmp:
            vendor = ClientVendor(res.client(settings), inputs, Path(tmp),
                                  Path(candidates_dir) if candidates_dir else None)
            return await reconcile.settle_lost_creates(
                vendor, Ledger(ledger_url), environment=environment, key_id=key_id,
                settle_after=settings.reconcile_after_seconds, create_window=create_window)


@task(name="vendor-units", **ACCOUNT_READ)
async def vendor_units_for(feature: str, task_ids: list[str], since: datetime) -> float | None:
    """Units the vendor charged for these task ids (credit history, `target_id` = task id)."""
    async with task_resources() as res:
        client = res.client(res.settings(feature))
        return await history.vendor_units(client.credit_history_page, set(task_ids), since)
