"""Reconciliation tasks: settle lost creates, and compare a run's units with the vendor's ledger."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from backdrop.pipeline import history, reconcile
from backdrop.pipeline.candidates import ClientVendor
from backdrop.store.ledger import Ledger
from tasks.policies import retry_if_transient
from tasks.runtime import client_for, settings_for


@task(name="settle-lost-creates", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30],
      retry_condition_fn=retry_if_transient)
async def settle_lost_creates(
    feature: str, ledger_url: str, environment: str, key_id: str, inputs: dict[str, str], create_window: float,
    candidates_dir: str | None = None,
) -> reconcile.Settlement:
    """Settle this account's lost creates that the vendor's credit history can tell (backdrop.pipeline.reconcile)."""
    settings = settings_for(feature)
    with tempfile.TemporaryDirectory(prefix="backdrop-reconcile-") as tmp:
        vendor = ClientVendor(client_for(settings), inputs, Path(tmp),
                              Path(candidates_dir) if candidates_dir else None)
        return await reconcile.settle_lost_creates(
            vendor, Ledger(ledger_url), environment=environment, key_id=key_id,
            settle_after=settings.reconcile_after_seconds, create_window=create_window)


@task(name="vendor-units", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30],
      retry_condition_fn=retry_if_transient)
async def vendor_units_for(feature: str, task_ids: list[str], since: datetime) -> float | None:
    """Units the vendor charged for these task ids (credit history, `target_id` = task id)."""
    client = client_for(settings_for(feature))
    return await history.vendor_units(client.credit_history_page, set(task_ids), since)
