"""The vendor's credit history as settling reads it: paging it back to a moment whatever its order, calibrating
the vendor's clock against ours (the skew), and the units it charged for a set of tasks.

The history is `GET /s2s/v1.0/client/credit/history`: charges with a time stamp and the task id (`target_id`),
nothing about the input. How these bounds decide a lost create is `backdrop.pipeline.reconcile`'s.

The vendor's time stamps are compared with ours only through a **calibrated skew**: the known tasks in the
same history pages (created and seen done by Backdrop) bound how far the vendor's clock or zone is from ours.
With nothing to calibrate against, any zone (±14 h) is allowed, which makes windows wide and decisions rare.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from backdrop.client.models import CreditHistoryEntry
from backdrop.store.ledger import LedgerEntry

__all__ = [
    "CLOCK_SLACK",
    "MAX_ZONE_ERROR",
    "RIPE_SLACK",
    "UNTARGETED",
    "History",
    "candidate_action",
    "read_history",
    "skew_bounds",
    "vendor_units",
]

#: the candidate id of a history entry that names no task
UNTARGETED = "untargeted:"
#: what the calibration cannot see: the hosts sharing a ledger keep their clocks this close (NTP keeps them within
#: milliseconds). Each window is widened by it on both sides, twice over. Wider windows only make decisions rarer:
#: two minutes here left every lost create of a busy batch pending behind one unattributable charge
CLOCK_SLACK = timedelta(seconds=15)
#: our own clock against itself (and other hosts' NTP clocks): the history is read after this much more
RIPE_SLACK = timedelta(seconds=1)
#: known tasks created this close to a lost create calibrate the vendor's clock for it
_NEAR = timedelta(hours=2)
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)
#: the widest a time zone mistake can be (UTC-12 to UTC+14)
MAX_ZONE_ERROR = timedelta(hours=14)
#: documented credit-history actions of *other* features (unit system bundle); anything else may be ours
_OTHER_ACTIONS = frozenset({
    "photo_enhance", "api_photo_enhance", "object_removal", "api_object_removal", "background_removal",
    "api_background_removal", "colorize", "api_colorize", "text_to_image", "api_text_to_image", "hair_style",
    "api_hair_style", "blur_background", "wig", "trial_gift_text_to_image", "sign_up_gift",
    "subscription_credits", "subscriber_gift", "permanent_credits", "compensation_from_customer_service",
    "renew", "expire",
})


def candidate_action(action: str) -> bool:
    """A charge whose action names another feature is never ours; `change_background` or unknown may be."""
    return action.strip().lower() not in _OTHER_ACTIONS


@dataclass(frozen=True)
class History:
    entries: list[CreditHistoryEntry]
    complete_since: datetime | None  # every entry at or after this was read (None: not even that)


async def read_history(
    page: Callable[[str | None], Awaitable[tuple[list[CreditHistoryEntry], str | None]]],
    since: datetime,
    *,
    max_pages: int,
) -> History:
    """Every entry at or after `since`, whatever the order the vendor lists them in.

    Paging stops early only when the entries read so far prove a newest-first order (time stamps that fell, never
    rose, and none missing) and the last page reached back past `since`; otherwise it reads to the end. If
    `max_pages` runs out first, the history is incomplete and `complete_since` says how far back it is complete
    (None when the order gives no such bound).
    """
    entries: list[CreditHistoryEntry] = []
    token: str | None = None
    rose = fell = stampless = False
    seen: set[str] = set()
    for _ in range(max_pages):
        items, token = await page(token)
        for e in items:
            stampless = stampless or e.timestamp.timestamp() <= 0
            if entries:
                rose = rose or e.timestamp > entries[-1].timestamp
                fell = fell or e.timestamp < entries[-1].timestamp
            entries.append(e)
        if not token:
            return History(entries, complete_since=_BEGINNING)
        proven = fell and not rose and not stampless
        if proven and entries[-1].timestamp < since:
            return History(entries, complete_since=entries[-1].timestamp)
        if token in seen:
            break  # a vendor repeating its token: what we have is all we will get
        seen.add(token)
    proven = fell and not rose and not stampless
    return History(entries, complete_since=entries[-1].timestamp if entries and proven else None)


def skew_bounds(
    history: list[CreditHistoryEntry], known: dict[str, LedgerEntry], around: tuple[datetime, datetime],
    now: datetime,
) -> tuple[timedelta, timedelta]:
    """Bounds on (vendor time - our time), from the known tasks in the history created near the lost creates
    (`around`, ±2 h: a zone's summer-time change further away does not count): each was charged after its
    create's claim and before Backdrop saw it done. A contradiction, or a charge stamped in the vendor's future,
    means the vendor's clock cannot be trusted: then any zone is allowed."""
    lo, hi = -MAX_ZONE_ERROR, MAX_ZONE_ERROR
    near = (around[0] - _NEAR, around[1] + _NEAR)
    for h in history:
        row = known.get(h.target_id or "")
        if row is None or row.charged_at is None or h.units >= 0 or not near[0] <= row.created_at <= near[1]:
            continue
        lo = max(lo, h.timestamp - row.charged_at)
        hi = min(hi, h.timestamp - row.created_at)
    latest = max((h.timestamp for h in history), default=None)
    if lo > hi or (latest is not None and latest > now + hi + CLOCK_SLACK):
        return -MAX_ZONE_ERROR, MAX_ZONE_ERROR
    return lo - CLOCK_SLACK, hi + CLOCK_SLACK


async def vendor_units(
    page: Callable[[str | None], Awaitable[tuple[list[CreditHistoryEntry], str | None]]],
    task_ids: set[str],
    since: datetime,
    *,
    max_pages: int = 200,
) -> float | None:
    """Units the vendor's credit history charged for `task_ids`; None when the history could not be read back
    to `since` (minus any zone error)."""
    if not task_ids:
        return 0.0
    history = await read_history(page, since - MAX_ZONE_ERROR - CLOCK_SLACK, max_pages=max_pages)
    if history.complete_since is None:
        return None
    return float(sum(-e.units for e in history.entries if e.target_id in task_ids and e.units < 0))
