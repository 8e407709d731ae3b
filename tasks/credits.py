"""Reading the account's credits: the balance now and the credit history since a moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from backdrop.client import CreditHistoryEntry
from tasks.policies import retry_if_transient
from tasks.runtime import client_for, settings_for

__all__ = ["CreditSnapshot", "read_credits"]


@dataclass(frozen=True)
class CreditSnapshot:
    """The balance (units) and the history entries (newest first) read by one task run."""

    balance: float
    history: list[CreditHistoryEntry]


@task(name="read-credits", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30],
      retry_condition_fn=retry_if_transient)
async def read_credits(since: datetime) -> CreditSnapshot:
    """Read the balance and the credit history from `since` on (both GETs, safe to retry).

    Args:
        since: Oldest moment of history wanted (timezone-aware); paging stops once entries are older.

    Returns:
        The balance now and every history entry since `since` (charges have negative units).
    """
    logger = get_run_logger()
    client = client_for(settings_for())
    balance = await client.credit_balance()
    history = await client.credit_history(since=since)
    logger.info("balance %g units; %d credit history entries since %s", balance.total, len(history),
                since.isoformat())
    return CreditSnapshot(balance=balance.total, history=history)
