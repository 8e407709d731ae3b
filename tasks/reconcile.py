"""Reconciliation tasks: settle lost creates, and compare a run's units with the vendor's ledger."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from backdrop import reconcile
from backdrop.ledger import Ledger
from tasks.policies import retry_if_transient
from tasks.runtime import client_for, settings_for


@task(name="reconcile-lost-creates", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30],
      retry_condition_fn=retry_if_transient)
async def reconcile_lost_creates(
    feature: str, ledger_url: str, environment: str, inputs: dict[str, str]
) -> reconcile.Settlement:
    """Settle this batch's ambiguous creates old enough to be settled, from the vendor's credit history."""
    settings = settings_for(feature)
    return await reconcile.reconcile_ambiguous(
        client_for(settings), Ledger(ledger_url), environment=environment, inputs=inputs,
        settle_after=settings.reconcile_after_seconds, policy=settings.ambiguous_policy)


@task(name="vendor-units", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30],
      retry_condition_fn=retry_if_transient)
async def vendor_units_for(feature: str, task_ids: list[str], since: datetime) -> float:
    """Units the vendor charged for these task ids (credit history, `target_id` = task id)."""
    return await reconcile.vendor_units(client_for(settings_for(feature)), set(task_ids), since)
