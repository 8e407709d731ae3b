"""Settling what the ledger cannot know alone, from the vendor's credit history.

Two questions, both answered from `GET /s2s/v1.0/client/credit/history` (`target_id` = task id):

1. A create whose answer was lost (`ambiguous`, or `creating` left by a crash): did the vendor make a task?
   Charges in the history that no ledger row knows ("orphans") are the candidates. Once the ambiguous creates
   are old enough that any task they made has finished (`settle_after`):
   - no orphans at all: nothing was charged, so nothing succeeded; the create may be made again;
   - as many orphans as ambiguous creates: they are paired in time order and each row gets its task id back
     (it is then polled and downloaded like any other, and paid for once);
   - otherwise (someone else spends on the key, or counts differ): unresolved, left `pending_reconcile`,
     unless the policy allows one re-create, which the report flags as a possible duplicate charge.
2. After a run: how many units did the vendor charge for this run's tasks, against what the report claims?
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from backdrop.client import BackdropClient
from backdrop.ledger import Ledger, LedgerEntry

__all__ = ["AmbiguousPolicy", "Settlement", "reconcile_ambiguous", "vendor_units"]

AmbiguousPolicy = Literal["wait", "recreate_once"]
#: a charge can be recorded a little before the ledger row's time (clocks differ)
_CLOCK_SLACK = timedelta(minutes=5)


@dataclass
class Settlement:
    matched: dict[str, str] = field(default_factory=dict)  # content_key -> task id found
    not_created: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    recreate: list[str] = field(default_factory=list)  # unresolved, re-created under recreate_once
    orphans: list[str] = field(default_factory=list)  # charged task ids no row could claim


def _ambiguous(ledger: Ledger, environment: str, settle_after: float, now: datetime) -> list[LedgerEntry]:
    cutoff = now - timedelta(seconds=settle_after)
    rows = ledger.entries(environment=environment, statuses=("ambiguous", "creating"))
    return [e for e in rows if not e.task_id and e.updated_at.replace(tzinfo=e.updated_at.tzinfo or UTC) <= cutoff]


async def reconcile_ambiguous(
    client: BackdropClient,
    ledger: Ledger,
    *,
    environment: str,
    settle_after: float,
    policy: AmbiguousPolicy = "wait",
    now: datetime | None = None,
) -> Settlement:
    """Settle every ambiguous create of `environment` that is older than `settle_after` seconds."""
    now = now or datetime.now(UTC)
    pending = sorted(_ambiguous(ledger, environment, settle_after, now), key=lambda e: e.created_at)
    result = Settlement()
    if not pending:
        return result
    since = min(e.created_at for e in pending).replace(tzinfo=UTC) - _CLOCK_SLACK
    history = await client.credit_history(since=since)
    known = ledger.known_task_ids()
    orphans = sorted(
        (e for e in history if e.target_id and e.units < 0 and e.target_id not in known),
        key=lambda e: e.timestamp,
    )
    result.orphans = [e.target_id for e in orphans if e.target_id]
    if not orphans:
        for entry in pending:
            ledger.mark(entry.content_key, entry.attempt, status="failed", error_code="ambiguous_not_created",
                        error_message="no charge appeared for the lost create: no task succeeded")
            result.not_created.append(entry.content_key)
    elif len(orphans) == len(pending):
        for entry, charge in zip(pending, orphans, strict=True):
            ledger.mark(entry.content_key, entry.attempt, status="created", task_id=charge.target_id,
                        error_code=None, error_message="task id recovered from the credit history")
            result.matched[entry.content_key] = charge.target_id or ""
        result.orphans = []
    else:
        for entry in pending:
            recreated_before = any(a.error_code == "ambiguous_recreated"
                                   for a in ledger.attempts(entry.content_key))
            if policy == "recreate_once" and not recreated_before:
                ledger.mark(entry.content_key, entry.attempt, status="failed",
                            error_code="ambiguous_recreated",
                            error_message="could not tell whether the lost create was charged; re-created "
                                          "once under ambiguous_policy=recreate_once")
                result.recreate.append(entry.content_key)
            else:
                result.unresolved.append(entry.content_key)
    return result


async def vendor_units(client: BackdropClient, task_ids: set[str], since: datetime) -> float:
    """Units the vendor's credit history charged for `task_ids` since `since`."""
    if not task_ids:
        return 0.0
    history = await client.credit_history(since=since - _CLOCK_SLACK)
    return float(sum(-e.units for e in history if e.target_id in task_ids and e.units < 0))
