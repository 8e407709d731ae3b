"""Reading the account's credits: the balance now and the credit history since a moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prefect import get_run_logger, task

from backdrop.client import CreditHistoryEntry
from tasks.policies import ACCOUNT_READ
from tasks.resources import task_resources

__all__ = ["CreditSnapshot", "read_credits"]


@dataclass(frozen=True)
class CreditSnapshot:
    """The balance (units) and the history entries (newest first) read by one task run."""

    balance: float
    history: list[CreditHistoryEntry]


@task(name="read-credits", **ACCOUNT_READ)
async def read_credits(since: datetime) -> CreditSnapshot:
    """Read the balance and the credit history from `since` on (both GETs, safe to retry).

    Args:
        since: Oldest moment of history wanted (timezone-aware); paging stops once entries are older.

    Returns:
        The balance now and every history entry since `since` (charges have negative units).
    """
    logger = get_run_logger()
    async with task_resources() as res:
        client = res.client(res.settings())
        balance = await client.credit_balance()
        history = await client.credit_history(since=since)
    logger.info("balance %g units; %d credit history entries since %s", balance.total, len(history),
                since.isoformat())
    return CreditSnapshot(balance=balance.total, history=history)
